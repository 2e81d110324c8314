"""Opens a run's `report.html` in headless Chromium, as a person's browser shows it: checks that every figure
decodes, and takes a screenshot.

    python -m utils.report.browser outputs/<run> [--screenshot docs/figures/report.png] [--height 1800]

Prints one JSON line: {"figures": ..., "broken": [...], "missing": [...], "screenshot": ...}; exits 1 when a figure is
missing or does not decode. Needs a Chromium (Debian's `chromium` package, or set `CHROMIUM`).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from utils import config

MARKER = "report-check"
# Run in the page once it has loaded: every <img> with its decoded width, and the notes the report writes in place
# of a figure whose file is missing.
CHECK_SCRIPT = f"""
<script>
window.addEventListener("load", () => {{
  const images = Array.from(document.images).map((image) => ({{alt: image.alt, width: image.naturalWidth, complete: image.complete}}));
  const notes = Array.from(document.querySelectorAll("p.note")).map((note) => note.textContent);
  const missing = notes.filter((text) => text.includes(" is missing)"));
  const element = document.createElement("pre");
  element.id = "{MARKER}";
  element.textContent = JSON.stringify({{images, missing}});
  document.body.appendChild(element);
}});
</script>
"""


class BrowserError(RuntimeError):
    """Chromium is missing or could not open the page."""


def chromium_path() -> str:
    """The Chromium to run: `CHROMIUM` if set, else the first of chromium, chromium-browser, google-chrome on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise BrowserError("No Chromium found: install Debian's `chromium` package (apt-get install chromium) or set CHROMIUM.")


def _run_chromium(arguments: list[str], timeout: int) -> str:
    command = [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *arguments]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BrowserError(f"Chromium did not finish within {timeout} s ({' '.join(command)}).") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise BrowserError(f"Chromium exited with {result.returncode}: {last}")
    return result.stdout


def check_report(
    run_dir: str | os.PathLike, *, screenshot: str | os.PathLike | None = None, height: int = 1800, timeout: int = 120
) -> dict:
    """Loads the run's report.html in headless Chromium and returns {"figures", "broken", "missing", "screenshot"}:
    the figures shown, those that did not decode (by caption) and the notes of figures whose files were missing.
    With `screenshot`, also writes a PNG of the page's top `height` pixels at 1200 px wide."""
    page = config.run_paths(run_dir).root / "report.html"
    if not page.exists():
        raise BrowserError(f"{page} does not exist; run the notebooks (the runner writes it after the last one).")
    with tempfile.TemporaryDirectory(prefix="report_check_") as folder:
        checked = Path(folder) / "report.html"
        checked.write_text(page.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
        dom = _run_chromium(["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()], timeout)
    found = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', dom, re.S)
    if found is None:
        raise BrowserError(f"Chromium loaded {page} but its check did not run (no #{MARKER} in the page).")
    result = json.loads(html.unescape(found.group(1)))
    report = {
        "figures": len(result["images"]),
        "broken": [image["alt"] for image in result["images"] if not image["complete"] or image["width"] == 0],
        "missing": result["missing"],
        "screenshot": None,
    }
    if screenshot is not None:
        target = Path(screenshot).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        _run_chromium(
            [f"--screenshot={target}", f"--window-size=1200,{int(height)}", "--virtual-time-budget=10000", page.resolve().as_uri()], timeout
        )
        report["screenshot"] = str(target)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder holding report.html")
    parser.add_argument("--screenshot", help="PNG to write of the page's top")
    parser.add_argument("--height", type=int, default=1800, help="height of the screenshot in pixels (width 1200)")
    arguments = parser.parse_args(argv)
    try:
        report = check_report(arguments.run, screenshot=arguments.screenshot, height=arguments.height)
    except BrowserError as error:
        raise SystemExit(str(error)) from None
    print(json.dumps(report), flush=True)
    if report["broken"] or report["missing"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
