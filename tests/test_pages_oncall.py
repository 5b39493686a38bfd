"""The On-call page (dashboard/pages/oncall.py), run headless with AppTest.

Values shown are checked against the analysis functions' own results on the same view, never
against numbers copied from a run; the sample database's planted incidents
(sample_data/_manifest.json) must each appear as a finding with its start time and a link to
the Debug page on that slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lossboard.dashboard import charts, monitoring_config
from lossboard.dashboard.analysis import loss, report
from lossboard.dashboard.pages._common import LABELS_ANCHOR, LABELS_LINK
from lossboard.dashboard.cli import ensure_sample_database
from lossboard.db import read_connection
from pages_support import links, run_app, small_db, texts, view_of

SAMPLE_QUERY = {"model": "fraud", "from": "2026-10-01T00:00:00Z", "to": "2026-10-31T00:00:00Z",
                "ref_from": "2026-10-01T00:00:00Z", "ref_to": "2026-10-08T00:00:00Z"}
# The manifest's incidents and the start the page must show for each (README, "Sample data";
# the label stall is seen once its hours are mature, from 08:00, docs/report-json.md).
INCIDENT_STARTS = {
    "NaN / inf scores": "2026-10-13 08:00 UTC",
    "Scores of exactly 0 or 1": "2026-10-15 13:00 UTC",
    "Log loss regression": "2026-10-19 00:00 UTC",
    "Feature drift": "2026-10-19 00:00 UTC",
    "Canary worse than baseline": "2026-10-21 00:00 UTC",
    "Activation saturation": "2026-10-23 00:00 UTC",
    "Label delivery stalled": "2026-10-28 12:00 UTC",
}


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    ensure_sample_database(db)
    return db


@pytest.fixture(scope="module")
def sample_page(sample_db: Path):
    mp = pytest.MonkeyPatch()
    try:
        yield run_app(sample_db, mp, SAMPLE_QUERY)
    finally:
        mp.undo()


def test_sample_canary_verdict_fail(sample_page) -> None:
    errors = texts(sample_page.error)
    assert any("Verdict **fail** for v2 vs v1" in e for e in errors), errors


def test_sample_findings_with_start_times_and_debug_links(sample_page, sample_db: Path) -> None:
    markdown = " ".join(texts(sample_page.markdown))
    for title, start in INCIDENT_STARTS.items():
        assert f"**{title}**" in markdown and f"since **{start}**" in markdown, title
    # The same findings as the report of the same view.
    with read_connection(str(sample_db)) as con:
        expected = report.build_report(con, view_of(sample_db, SAMPLE_QUERY))["findings"]
    debug = [q for label, q in links(sample_page) if label == "Open in Debug"]
    assert len(debug) >= len(expected)
    by_focus = {q["dbg_focus"][0] for q in debug if "dbg_focus" in q}
    assert {"drift", "calibration", "scores", "errors"} <= by_focus
    # The eu incident's link narrows Debug to region=eu from its start, with the reference kept.
    eu = [q for q in debug if q.get("segment") == ["region=eu"] and q.get("dbg_feature") == ["amount"]]
    assert eu and eu[0]["from"] == ["2026-10-19T00:00:00Z"] and eu[0]["ref_to"] == ["2026-10-08T00:00:00Z"]
    # NaN scores: a short incident opens a 6-hour window from its start.
    nan = [q for q in debug if q["from"] == ["2026-10-13T08:00:00Z"]]
    assert nan and nan[0]["to"] == ["2026-10-13T14:00:00Z"]


def test_sample_firing_alerts_are_the_alert_rules(sample_page, sample_db: Path) -> None:
    # The alerts section shows what `lossboard alerts` finds at the window's end.
    from lossboard.dashboard import monitoring_config
    from lossboard.dashboard.analysis import alerts

    view = view_of(sample_db, SAMPLE_QUERY)
    with read_connection(str(sample_db)) as con:
        firing = alerts.evaluate(con, monitoring_config.load(), model="fraud", as_of=view.end)
    assert firing
    markdown = " ".join(texts(sample_page.markdown))
    assert "Firing alerts" in " ".join(texts(sample_page.subheader))
    for alert in firing:
        assert f"**{alert.rule}**" in markdown, alert.rule


def test_sample_label_stall_is_not_a_quality_drop(sample_page) -> None:
    warnings = " ".join(texts(sample_page.warning))
    assert "Label delivery stalled since 2026-10-28" in warnings
    assert "not a quality signal" in warnings


def test_rolling_metric_equals_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    query = {"model": "fraud", "from": "2024-03-01T00:00:00Z", "to": "2024-03-03T00:00:00Z"}
    at = run_app(db, monkeypatch, query)
    metrics = {m.label: m.value for m in at.metric}
    with read_connection(str(db)) as con:
        last = loss.rolling(con, view_of(db, query), window="6h").iloc[-1]
    assert metrics["log loss, last 6 h"] == f"{last['log_loss']:.4f}"
    assert any(f"n = {int(last['n']):,}" in c for c in texts(at.caption))
    assert len(at.get("plotly_chart")) >= 4


def test_segment_filter_changes_what_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    base = {"model": "fraud", "from": "2024-03-01T00:00:00Z", "to": "2024-03-03T00:00:00Z"}
    shown = {}
    for name, query in (("all", base), ("eu", {**base, "segment": "region=eu"})):
        at = run_app(db, monkeypatch, query)
        shown[name] = ({m.label: m.value for m in at.metric}["log loss, last 6 h"],
                       texts(at.caption)[0])
        with read_connection(str(db)) as con:
            expected = loss.rolling(con, view_of(db, query), window="6h").iloc[-1]["log_loss"]
        assert shown[name][0] == f"{expected:.4f}"
    assert shown["all"] != shown["eu"]
    assert "region=eu" in shown["eu"][1]


def test_no_labels_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path, labels="none")
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2024-03-01T00:00:00Z",
                                   "to": "2024-03-03T00:00:00Z"})
    infos = " ".join(texts(at.info))
    assert "No labels yet for this window: label lag p90 is" in infos


def test_window_without_data_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2025-01-01T00:00:00Z",
                                   "to": "2025-01-02T00:00:00Z"})
    assert any("No predictions in" in i for i in texts(at.info)), texts(at.info)


def test_analysis_error_ends_its_section_not_the_page(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lossboard.dashboard.analysis import segments
    from lossboard.errors import QueryError

    def excess_loss_all(con, flt, **params):  # state.query finds it by module and name
        raise QueryError("segment ranking broke on purpose")

    excess_loss_all.__module__ = segments.__name__
    monkeypatch.setattr(segments, "excess_loss_all", excess_loss_all)
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2024-03-01T00:00:00Z",
                                   "to": "2024-03-03T00:00:00Z"})
    assert any("The segment ranking could not be computed: segment ranking broke on purpose" in e
               for e in texts(at.error))
    # The sections after it still render.
    assert any("Labels: coverage and lag" in h for h in texts(at.subheader))


def test_look_back_link_when_the_window_starts_after_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2024-03-02T00:00:00Z",
                                   "to": "2024-03-03T00:00:00Z"})
    back = [q for label, q in links(at) if label.startswith("Older incidents")]
    assert back == [{"model": ["fraud"], "range": ["all"]}]
    at = run_app(db, monkeypatch, {"model": "fraud", "range": "all"})
    assert not [label for label, _ in links(at) if label.startswith("Older incidents")]


def test_a_bad_alert_config_is_a_warning_not_a_crash(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lossboard.dashboard import monitoring_config

    bad = tmp_path / "lossboard.toml"
    bad.write_text("[alerts.rules.nope]\nthreshold = 'x'\n")
    monkeypatch.setenv(monitoring_config.CONFIG_ENV, str(bad))
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2024-03-01T00:00:00Z",
                                   "to": "2024-03-03T00:00:00Z"})
    assert not at.exception
    assert any("Alerts could not be evaluated" in w for w in texts(at.warning))
    assert "log loss, last 6 h" in {m.label for m in at.metric}  # the rest of the page is there


# --------------------------------------------------------------------------- audit of the views
SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "sample_data" / "lossboard.toml"


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _trace_names(figure: dict) -> list[str]:
    return [t.get("name") for t in figure["data"]]


def test_sample_label_stall_links_to_labels_not_to_debug(sample_page) -> None:
    # Debug has no label view: the stall's link used to open its Scores tab.
    debug = [q for label, q in links(sample_page) if label == "Open in Debug"]
    assert not [q for q in debug if q.get("dbg_focus") == ["scores"]
                and q["from"][0].startswith("2026-10-28")]
    assert LABELS_LINK in texts(sample_page.markdown)
    (heading,) = [h for h in sample_page.subheader if h.value == "Labels: coverage and lag"]
    assert heading.proto.anchor == LABELS_ANCHOR


def test_sample_stall_young_buckets_are_not_called_expected(sample_page) -> None:
    (coverage,) = [f for f in _figures(sample_page) if "label coverage" in _trace_names(f)]
    assert charts.STALLED_NAME in _trace_names(coverage)
    assert charts.NOT_MATURE_NAME not in _trace_names(coverage)
    captions = " ".join(texts(sample_page.caption))
    assert "low coverage there is expected, not a stall" not in captions
    assert "during the label stall" in captions


def test_sample_rolling_loss_axis_ignores_the_stall_windows(sample_page) -> None:
    (rolling,) = [f for f in _figures(sample_page) if "log loss, 6h window" in _trace_names(f)]
    low, high = rolling["layout"]["yaxis"]["range"]
    assert low == 0 and high < 1.5  # the stall's few-row windows reach 3-4 nats
    band = next(t for t in rolling["data"] if t["name"].startswith(charts.CI_BAND_NAME))
    assert min(y for y in band["y"] if y is not None) >= 0


@pytest.fixture(scope="module")
def sample_24h(sample_db: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv(monitoring_config.CONFIG_ENV, str(SAMPLE_CONFIG))
    try:
        yield run_app(sample_db, mp, {"model": "fraud", "range": "24h"})
    finally:
        mp.undo()


def test_no_finding_while_alerts_fire_is_not_an_all_clear(sample_24h) -> None:
    markdown = " ".join(texts(sample_24h.markdown))
    assert "**drift**" in markdown and "**canary**" in markdown  # alerts fire (7d lookback)
    successes = " ".join(texts(sample_24h.success))
    assert "they all look like the reference window" not in successes
    assert "No feature drift finding" not in successes
    warnings = " ".join(texts(sample_24h.warning))
    assert "alerts fire over the alert lookback (7d up to" in warnings
    assert "but the drift alert fires (region=eu)" in warnings


def test_one_hour_range_labels_tiles_by_their_window_and_draws_no_empty_chart(
        sample_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_app(sample_db, monkeypatch, {"model": "fraud", "range": "1h"})
    labels = [m.label for m in at.metric]
    assert "NaN / inf scores, last 1 h" in labels and "extreme scores, last 1 h" in labels
    assert not [label for label in labels if "24 h" in label or "6 h" in label]
    captions = " ".join(texts(at.caption))
    assert "Score counters: one hour in this window" in captions
    assert "A coverage chart needs two buckets or more" in captions
    assert not [f for f in _figures(at) if "scores per hour" in json.dumps(f["layout"])]


def test_segment_fixed_by_the_filter_is_not_ranked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2024-03-01T00:00:00Z",
                                   "to": "2024-03-03T00:00:00Z", "segment": "region=eu"})
    assert any("The filter fixes region=eu: no other segment column to rank within it" in i
               for i in texts(at.info)), texts(at.info)
    assert not [f for f in _figures(at) if "segment value" in json.dumps(f["layout"])]


def test_an_incident_begun_before_the_window_says_so_and_marks_no_line(sample_db: Path) -> None:
    # The 7-day view starts 2026-10-24; the tanh saturation began 10-23 (findings look back
    # before the window). The card says so; no dashed line stretches the charts to 10-23.
    mp = pytest.MonkeyPatch()
    try:
        at = run_app(sample_db, mp, {"model": "fraud", "range": "7d"})
    finally:
        mp.undo()
    markdown = " ".join(texts(at.markdown))
    # The canary began 10-21, before the window: found by looking back.
    assert "**Canary worse than baseline** · model_version v2 · since **2026-10-21 00:00 UTC**, " \
           "before this window" in markdown, markdown
    # The saturation began 10-23, inside the reference window (the previous 7 days), which
    # is not looked back on: it says "or earlier" rather than dating it at the window start.
    assert "**Activation saturation** · activation h1_tanh · since **2026-10-24 00:00 UTC** or " \
           "earlier" in markdown, markdown
    # So do the alerts that were on throughout their look-back.
    assert "**canary** · version v2 · since **2026-10-24 00:00 UTC** or earlier" in markdown
    (rolling,) = [f for f in _figures(at) if "log loss, 6h window" in _trace_names(f)]
    starts = [s["x0"] for s in rolling["layout"].get("shapes", []) if s.get("x0")]
    assert all(str(x) >= "2026-10-24" for x in starts), starts
