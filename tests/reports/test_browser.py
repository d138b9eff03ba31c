"""The rendered index and a report open in headless Chromium: every image loads, no errors logged."""

import shutil

import pytest

from medgan.reports.runner import render_notebook
from tests.reports.test_runner import GOOD, _notebook, project  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _open(page, url):
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(url, wait_until="load")
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    return problems, images


@pytest.mark.slow
def test_index_and_report_render_in_chromium(project):  # noqa: F811
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; .ci/run installs it as root)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    nb = project / "notebooks" / "tiny.ipynb"
    _notebook(nb, GOOD)
    assert render_notebook(nb, progress=False).status == "ok"
    reports = project / "reports"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            problems, images = _open(page, (reports / "index.html").as_uri())
            assert problems == []
            assert page.locator("a", has_text="tiny").count() == 1
            page = browser.new_page()
            problems, images = _open(page, (reports / "tiny.html").as_uri())
            assert problems == []
            assert images and all(done and width > 0 for done, width in images), images
            assert page.locator("text=Run card").count() >= 1
            # Code is folded: the summary toggles open.
            assert page.locator("details.medgan-code").count() >= 3
            page.screenshot(path=str(reports / "tiny.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_a_study_report_renders_in_chromium(tmp_path, monkeypatch):
    """The quickstart's smoke report, figures and all, as a reader opens it."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; .ci/run installs it as root)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    from medgan.reports.runner import find_notebooks

    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    record = render_notebook(find_notebooks(["00_quickstart"])[0], profile="smoke", reports_dir=reports, progress=False)
    assert record.status == "ok", record.error
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            for page_name in ("index.html", "00_quickstart.html"):
                page = browser.new_page()
                problems, images = _open(page, (reports / page_name).as_uri())
                assert problems == [], (page_name, problems)
                assert all(done and width > 0 for done, width in images), (page_name, images)
            assert len(images) >= 5  # data grid, curves, samples, phantom previews
        finally:
            browser.close()
