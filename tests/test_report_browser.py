"""The report as a browser shows it (utils/report/browser.py): a smoke run's report.html opened in headless Chromium."""

from __future__ import annotations

import base64
import shutil

import pytest

from utils.report import browser

needs_chromium = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium installed; apt-get install chromium",
)

# The smallest PNG: one transparent pixel.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def write_report(run_dir, body: str):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "report.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")


@needs_chromium
def test_a_figure_that_is_missing_or_does_not_decode_is_found(tmp_path):
    good = f'<figure><img src="data:image/png;base64,{PIXEL}" alt="good"></figure>'
    write_report(tmp_path / "good", good)
    assert browser.check_report(tmp_path / "good") == {"figures": 1, "broken": [], "missing": [], "screenshot": None}
    write_report(tmp_path / "broken", good + '<figure><img src="data:image/png;base64,AAAA" alt="broken one"></figure>')
    assert browser.check_report(tmp_path / "broken")["broken"] == ["broken one"]
    write_report(tmp_path / "missing", good + '<p class="note">Curves (figure <code>figures/02_curves.png</code> is missing)</p>')
    assert browser.check_report(tmp_path / "missing")["missing"] == ["Curves (figure figures/02_curves.png is missing)"]
    with pytest.raises(SystemExit):
        browser.main([str(tmp_path / "broken")])
    with pytest.raises(browser.BrowserError, match="report.html does not exist"):
        browser.check_report(tmp_path / "no run")


@needs_chromium
@pytest.mark.slow
def test_the_smoke_runs_report_shows_every_figure_in_chromium(launched_smoke_run, tmp_path):
    out_dir, _ = launched_smoke_run
    page = (out_dir / "report.html").read_text()
    shot = tmp_path / "report.png"
    report = browser.check_report(out_dir, screenshot=shot, height=900)
    assert report["broken"] == [] and report["missing"] == []
    # Every figure the page embeds decoded in the browser, and the run drew more than a few.
    assert report["figures"] == page.count("<img ") and report["figures"] >= 10
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
