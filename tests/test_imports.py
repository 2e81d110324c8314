"""The house's import rules: no circle between the suite's modules (function-level imports included), every
package says what it holds, and nothing edits `sys.path`."""

from __future__ import annotations

import ast
from pathlib import Path

from utils import config

UTILS = config.REPO_ROOT / "utils"


def module_name(path: Path) -> str:
    parts = path.relative_to(config.REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def suite_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(UTILS.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path], name: str | None = None) -> set[str]:
    """The suite's modules that `path` (module `name`) imports anywhere in its body, function bodies included
    (`from package import module` names the module)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = suite_modules()
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (circle := visit(target, path + [target])):
                return circle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (circle := visit(start, [start])):
            return circle
    return None


def test_the_suite_has_no_import_circle():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_circle(graph) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from utils import config\n    return config\n")
    assert imported_modules(module, {"utils.config": UTILS / "config.py"}, name="utils.late") == {"utils.config"}


def test_every_package_names_what_it_holds():
    for init in sorted(UTILS.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init.relative_to(config.REPO_ROOT)} needs a docstring that names the package's job and public API"


# The platform check imports a zip's model.py from the unpacked folder, as the platform does: that one edit is the job.
IMPORTS_AS_THE_PLATFORM = "utils/submission/platform_check.py"


def test_no_code_edits_the_import_path():
    offenders = []
    for folder in ("utils", "tests", "benchmarks", "notebooks"):
        for path in sorted((config.REPO_ROOT / folder).rglob("*.py")):
            if path.name == "test_imports.py" or str(path.relative_to(config.REPO_ROOT)) == IMPORTS_AS_THE_PLATFORM:
                continue
            if "sys.path.insert" in path.read_text() or "sys.path.append" in path.read_text():
                offenders.append(str(path.relative_to(config.REPO_ROOT)))
    assert offenders == [], f"these files edit sys.path; import the installed suite instead: {offenders}"


def test_nothing_beside_the_platform_check_shadows_an_installed_module():
    """The check runs as a script, so its folder leads the import path: a sibling named like an installed module
    (PyPI's `packaging`, which TensorFlow imports) would be imported in its place."""
    import importlib.util

    folder = UTILS / "submission"
    siblings = sorted(path.stem for path in folder.glob("*.py") if not path.stem.startswith("__"))
    assert "platform_check" in siblings
    shadowing = [name for name in siblings if importlib.util.find_spec(name) is not None]
    assert shadowing == [], f"rename {shadowing} in {folder}: installed modules of that name would be shadowed"


def test_shared_constants_are_defined_once_in_config():
    """The agreement a submission check needs and the FINAL_RECIPE.policy value that takes 04's policy are set in
    utils/config.py alone; every other module reads them from there, so the copies cannot disagree."""
    import re

    from utils import config

    patterns = {"MIN_AGREEMENT": r"=\s*0\.995\b", "POLICY_FROM_STUDY": r"=\s*[\"']from_04[\"']"}
    for name, pattern in patterns.items():
        defined = [path for path in (config.REPO_ROOT / "utils").rglob("*.py") if re.search(pattern, path.read_text())]
        assert defined == [config.REPO_ROOT / "utils" / "config.py"], (name, defined)


def test_no_public_function_of_utils_takes_more_than_four_positional_parameters():
    """Past the fourth, a public module-level function's parameters are keyword-only, so that a call names what it
    sets (methods keep the signatures Keras gives them)."""
    import ast

    from utils import config

    too_long = []
    for path in sorted((config.REPO_ROOT / "utils").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                positional = len(node.args.posonlyargs) + len(node.args.args)
                if positional > 4:
                    too_long.append(f"{path.relative_to(config.REPO_ROOT)}:{node.lineno} {node.name} ({positional})")
    assert not too_long, too_long
