"""The self-contained HTML report (dashboard/html_report.py) and `lossboard export-report`.

The report must open offline: plotly.js inline, no URL the browser would fetch. Checked twice:
statically (every src/href of the document), and in headless Chromium (every request the page
makes, and the charts drawn as SVG).
"""

from __future__ import annotations

import html
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.cli import app
from lossboard.dashboard.html_report import build_html, top_drift_rows
from lossboard.db import read_connection
from test_executive import exec_db  # noqa: F401 - a fixture, used by report_db

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
# A filter with every kind of key, as a user would pass it on the command line.
CLI_FILTER = ["--model", "fraud", "--from", "2024-03-02", "--to", "2024-03-09",
              "--reference-from", "2024-03-01", "--reference-to", "2024-03-02",
              "--version", "v1", "--version", "v2", "--maturity-hours", "2"]
FILTER = Filter(model="fraud", start="2024-03-02", end="2024-03-09", reference_start="2024-03-01",
                reference_end="2024-03-02", versions=("v1", "v2"), maturity_hours=2)


@pytest.fixture(scope="module")
def report_db(exec_db: Path) -> Path:  # noqa: F811 - the imported fixture, by name
    """The Executive page tests' database (8 days, 2 versions, 2 regions, a KPI)."""
    return exec_db


@pytest.fixture(scope="module")
def report_html(report_db: Path) -> str:
    with read_connection(report_db) as con:
        return build_html(con, FILTER, slo_target=0.7)


class _Links(HTMLParser):
    """Every src/href attribute and every <script src> of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_report_is_self_contained(report_html: str) -> None:
    links = _Links()
    links.feed(report_html)
    assert links.urls == [], f"the report points outside itself: {links.urls[:5]}"
    # plotly.js is inline (its licence banner), once, and every figure is drawn by it.
    assert report_html.count("plotly.js v") == 1
    assert report_html.count('class="plotly-graph-div"') >= 4  # trend, segments, versions, KPI


def test_report_sections_and_figures(report_html: str) -> None:
    for heading in ("Executive summary", "On-call state: what broke, where, since when",
                    "Top segment findings", "Top drift findings", "Model versions",
                    "Business KPIs"):
        assert f"<h2>{heading}</h2>" in report_html
    assert "Drawn target: daily log loss at or below 0.7" in report_html
    assert "version=v1&amp;version=v2&amp;maturity_h=2" in report_html  # the dashboard's URL keys


def test_report_is_the_same_bytes_every_time(report_db: Path, report_html: str) -> None:
    with read_connection(report_db) as con:
        assert build_html(con, FILTER, slo_target=0.7) == report_html


def _row(feature: str, psi: float | None, status: str) -> dict:
    return {"feature": feature, "kind": "numeric", "psi": psi, "ks_statistic": None,
            "ks_pvalue": None, "status": status, "n_reference": 0 if psi is None else 900,
            "n_current": 1000}


def test_top_drift_rows_are_most_drifted_first_without_no_data() -> None:
    # The audit's sample report listed the score (PSI 0.0756) last, after amount (0.0083),
    # under "most drifted first"; and listed no_data rows as top findings.
    rows = [_row("amount", 0.0083, "ok"), _row("device_os", None, "no_data"),
            _row("account_age_days", 0.0003, "ok"), _row("score", 0.0756, "ok")]
    assert [r["feature"] for r in top_drift_rows(rows)] == ["score", "amount", "account_age_days"]
    assert [r["feature"] for r in top_drift_rows(rows, top=1)] == ["score"]
    assert top_drift_rows([_row("amount", None, "no_data")]) == []


def test_drift_section_without_reference_data(report_db: Path) -> None:
    # A reference window before the data: every drift row is no_data. The section says so
    # instead of listing five "top drift findings" that compare with nothing.
    empty_reference = Filter(model="fraud", start="2024-03-02", end="2024-03-09",
                             reference_start="2024-01-01", reference_end="2024-01-02")
    with read_connection(report_db) as con:
        page = build_html(con, empty_reference)
    section = page.split("<h2>Top drift findings</h2>")[1].split("<h2>")[0]
    assert "No reference data to compare with" in section
    assert "no_data" in section and "<table>" not in section
    with read_connection(report_db) as con:
        normal = build_html(con, FILTER)
    section = normal.split("<h2>Top drift findings</h2>")[1].split("<h2>")[0]
    assert "<table>" in section and "<td>score</td>" in section


def test_export_report_writes_the_download_buttons_file(report_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["export-report", "--db", str(report_db), "--out", str(out),
                                      *CLI_FILTER])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    with read_connection(report_db) as con:
        # What the Executive page's button gives for the same Filter (the page passes its
        # trend length, 30 days by default, and no SLO target unless one is set).
        assert out.read_text(encoding="utf-8") == build_html(con, FILTER)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope"], "no model 'nope'"),
    (["--from", "last tuesday"], "not an ISO-8601 time"),
    (["--segment", "region"], "--segment"),
])
def test_export_report_errors_are_one_line(report_db: Path, tmp_path: Path, args: list[str],
                                           message: str) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["export-report", "--db", str(report_db), "--out", str(out),
                                      *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.browser
@pytest.mark.slow
def test_report_opens_offline_in_chromium(report_html: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        message = "needs Debian's chromium and the playwright package; never `playwright install`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path / "report.html"
    path.write_text(report_html, encoding="utf-8")
    requests: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1300, "height": 1000})
        try:
            context.on("request", lambda r: requests.append(r.url))
            context.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page = context.pages[0] if context.pages else context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            figures = page.locator(".plotly-graph-div")
            n_figures = figures.count()
            assert n_figures >= 4
            # Every figure drawn: Plotly renders each into SVG with at least one trace.
            page.wait_for_function(
                f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n_figures}")
            assert page.locator(".plotly-graph-div .scatterlayer .trace, "
                                ".plotly-graph-div .barlayer .trace").count() >= n_figures
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "html-report.png"), full_page=True)
        finally:
            context.close()
    assert not errors, errors
    assert not failed, failed
    outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:"))]
    assert not outside, f"the report made requests: {outside[:5]}"


def test_slo_table_is_the_pages(report_db: Path) -> None:
    # The report's SLO table is the Executive page's (html_report.slo_status_row): the
    # current log loss with its n, the burn rates in one column, a note for a missing one.
    from lossboard.dashboard.html_report import BURN_COLUMN, slo_status_row
    from lossboard.dashboard.analysis import slo
    from lossboard.dashboard.monitoring_config import Slo

    spec = Slo(name="loss-target", model="fraud", sli="windows", target_log_loss=0.7,
               objective=0.9, period_days=7)
    with read_connection(report_db) as con:
        page = build_html(con, FILTER, slos=(spec,))
        status = slo.status(con, spec, FILTER)
    row = slo_status_row(spec, status)
    assert f"<th>{BURN_COLUMN}</th>" in page and "<th>current log loss</th>" in page
    assert f"(n = {status.current_n:,}" in row["current log loss"]
    assert html.escape(row["current log loss"], quote=False) in page
