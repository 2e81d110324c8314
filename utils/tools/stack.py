"""Names the stack an environment runs the suite with, and checks it against a requirements file's pins.

    python -m utils.tools.stack                                   # Python and the key packages' versions
    python -m utils.tools.stack --expect requirements-colab.txt   # exits 1 when an installed version differs from a pin

`make test-compat` prints the first before each tier, and uses the second to prove that `pip install -e .` kept a
hosted runtime's TensorFlow, Keras, NumPy and pandas."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

# The packages whose versions decide whether the suite runs: the runtime's stack first, then the rest of the notebooks'.
KEY_PACKAGES = ["tensorflow", "keras", "numpy", "pandas", "keras-cv", "papermill", "scipy", "scikit-image", "scikit-learn", "opencv-python"]


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe(names: list[str] = KEY_PACKAGES) -> str:
    """One line: this Python's version and path, then each package's installed version (or "absent")."""
    versions = ", ".join(f"{name} {installed_version(name) or 'absent'}" for name in names)
    return f"Python {sys.version.split()[0]} ({sys.executable}): {versions}"


def pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements file by canonical name (comments, blank lines and options such as
    `-r` skipped); a line that is not an exact pin raises ValueError."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{path}: {line!r} is not an exact pin (name==version).")
        found[canonicalize_name(requirement.name)] = specifiers[0].version
    return found


def differences(expected: dict[str, str]) -> list[str]:
    """The pins whose installed version differs, each as "name version (expected pin)"."""
    found = {name: installed_version(name) for name in expected}
    return [f"{name} {found[name] or 'absent'} (pinned {version})" for name, version in expected.items() if found[name] != version]


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.tools.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--expect", type=Path, help="a requirements file of exact pins that the installed versions must equal")
    options = parser.parse_args(arguments)
    print(describe())
    if options.expect is None:
        return 0
    try:
        changed = differences(pins(options.expect))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if changed:
        print(f"error: this environment no longer holds the versions of {options.expect}: {', '.join(changed)}.", file=sys.stderr)
        return 1
    print(f"Every pin of {options.expect} is installed as pinned.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
