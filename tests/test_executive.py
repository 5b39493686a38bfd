"""The Executive page, the sidebar's URL round trip (AppTest) and analysis/executive.py.

The fixture database is built with the real ingest from seeded random logs: 8 days of a
binary model (v1, then a canary v2 from day 5), two regions, labels 2 hours after the
prediction, and one business KPI per day. Every figure the page shows is compared with the
analysis function that defines it, computed here on the same database and Filter.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from lossboard.dashboard import html_report, monitoring_config, sidebar
from lossboard.dashboard.analysis import base, calibration, executive, loss, report, rollup, slo
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

APP_PATH = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
EXECUTIVE = "pages/executive.py"
TIMEOUT_S = 60
START = datetime(2024, 3, 1, tzinfo=UTC)
N_ROWS = 2400  # 300 a day over 8 days: every day below the default 1,000 (low confidence)


def _write_logs(folder: Path, seed: int = 11) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, 8 * 86400, N_ROWS))
    ts = [START + timedelta(seconds=float(s)) for s in offsets]
    region = rng.choice(["eu", "us"], N_ROWS)
    version = np.where(offsets > 4 * 86400, rng.choice(["v1", "v2"], N_ROWS), "v1")
    p = rng.uniform(0.02, 0.98, N_ROWS)
    # eu is worse calibrated: its labels follow p less closely.
    y = np.where(region == "eu", rng.uniform(size=N_ROWS) < 0.5, rng.uniform(size=N_ROWS) < p)
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(N_ROWS)],
                          "ts": [t.isoformat() for t in ts], "score": p, "region": region,
                          "model_version": version})
    labelled = rng.uniform(size=N_ROWS) < 0.9
    labels = pd.DataFrame({"request_id": preds["request_id"][labelled],
                           "label": y[labelled].astype(int),
                           "label_ts": [(t + timedelta(hours=2)).isoformat()
                                        for t, k in zip(ts, labelled) if k]})
    kpi = pd.DataFrame({"ts": [(START + timedelta(days=d)).date().isoformat() for d in range(8)],
                        "kpi": "chargebacks", "value": rng.uniform(100, 200, 8).round(2)})
    paths = folder / "predictions.csv", folder / "labels.csv", folder / "kpi.csv"
    for frame, path in zip((preds, labels, kpi), paths):
        frame.to_csv(path, index=False)
    return paths


def _ingest(db: Path, path: Path, **flags: object) -> None:
    rep = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(**flags)))
    assert rep.ok, [f.message for f in rep.files]


@pytest.fixture(scope="module")
def exec_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("executive")
    db = folder / "lossboard.duckdb"
    preds, labels, kpi = _write_logs(folder)
    _ingest(db, preds, model="fraud", segments=("region",))
    _ingest(db, labels, model="fraud")
    _ingest(db, kpi, kind="kpi")
    # A second model (after "fraud" by name, so "fraud" stays the default), other versions.
    other = pd.read_csv(preds).head(300).assign(model_version="z1")
    other.to_csv(folder / "zeta.csv", index=False)
    _ingest(db, folder / "zeta.csv", model="zeta", segments=("region",))
    return db


@pytest.fixture(autouse=True)
def _navigation_like_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run app.py on every AppTest run, as a server does.

    A folder named ``pages/`` next to app.py makes Streamlit assume the old pages-directory
    mode until ``st.navigation`` runs; a server process keeps the flag that st.navigation
    clears, but AppTest resets it before each run, so its reruns after a page switch or a
    widget change would run the page without app.py (and without the sidebar)."""
    original = PagesManager.__init__

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def _open(db: Path, monkeypatch: pytest.MonkeyPatch, query: dict[str, str | list[str]] | None = None,
          page: str | None = EXECUTIVE) -> AppTest:
    """The app with ``query`` in the URL: a first run on the default page (app.py reads the
    URL into the sidebar), then ``page`` (AppTest switches pages only after a first run)."""
    monkeypatch.setenv("LOSSBOARD_DB", str(db))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    at.query_params.update(query or {})
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _url(at: AppTest) -> dict[str, list[str]]:
    """The app's URL query parameters, every value as a list (AppTest gives single ones bare)."""
    return {k: [v] if isinstance(v, str) else list(v) for k, v in at.query_params.items()}


def _filter(at: AppTest) -> Filter:
    return at.session_state["lossboard_filter"]


# --------------------------------------------------------------------------- tiles
def test_tiles_equal_the_analysis(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all"})
    flt = _filter(at)
    assert flt.model == "fraud" and flt.start is None
    with read_connection(exec_db) as con:
        window = report.resolve_windows(con, flt)
        summary = loss.overall(con, window)
        ref = loss.overall(con, window.reference())
        ece = calibration.calibration_errors(con, window).ece
    tiles = _metrics(at)
    assert tiles["Log loss"] == f"{summary.log_loss:.4f}"
    assert tiles["Calibration ECE"] == f"{ece:.4f}"
    assert tiles["Label coverage"] == f"{summary.n_labelled / summary.n_predictions:.1%}"
    change = (summary.log_loss - ref.log_loss) / ref.log_loss
    (label,) = [k for k in tiles if k.startswith("Change vs")]
    assert tiles[label] == f"{change:+.1%}"
    # 2400 rows, ~90% labelled: above the 1,000 minimum overall, so no low-confidence warning.
    assert not at.warning


def test_filters_change_the_tiles(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _metrics(_open(exec_db, monkeypatch, {"range": "all"}))["Log loss"]
    at = _open(exec_db, monkeypatch, {"range": "all", "segment": "region=eu", "version": "v1"})
    flt = _filter(at)
    assert flt.segments == (("region", "eu"),) and flt.versions == ("v1",)
    with read_connection(exec_db) as con:
        expected = loss.overall(con, report.resolve_windows(con, flt)).log_loss
    assert _metrics(at)["Log loss"] == f"{expected:.4f}" != whole


def test_preset_is_relative_to_the_newest_prediction(exec_db: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "24h"})
    flt = _filter(at)
    with read_connection(exec_db) as con:
        newest = con.execute("SELECT max(ts) FROM predictions").fetchone()[0]
    end = newest.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert (flt.start, flt.end) == (end - timedelta(hours=24), end)
    # Default reference: the previous period of equal length.
    assert (flt.reference_start, flt.reference_end) == (end - timedelta(hours=48), flt.start)
    assert _url(at)["range"] == ["24h"] and _url(at)["ref"] == ["previous"]


# --------------------------------------------------------------------------- URL round trip
def test_widget_changes_go_to_the_url_and_the_url_reopens_them(
        exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, page=None)
    at.sidebar.multiselect(key="lb_seg_region").select("us").run()
    at.sidebar.selectbox(key="lb_range").select("7d").run()
    at.sidebar.number_input(key="lb_maturity_h").set_value(6.0).run()
    at.sidebar.selectbox(key="lb_ref").select("version").run()
    assert not at.exception, [e.value for e in at.exception]
    flt = _filter(at)
    assert flt.segments == (("region", "us"),) and flt.maturity_hours == 6
    assert flt.reference_version == "v1" and flt.reference_start is None
    url = _url(at)
    assert Filter.from_query(url) == flt  # the URL holds the Filter, in its own keys
    assert url["range"] == ["7d"] and url["ref"] == ["version"]

    reopened = _open(exec_db, monkeypatch, url)
    assert _filter(reopened) == flt
    assert _url(reopened) == url
    assert _metrics(reopened) == _metrics(_open(exec_db, monkeypatch, url))


def test_custom_window_with_microseconds_round_trips(exec_db: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A link from `lossboard report --json` (its `filter` field) or from an alert.
    query = {"model": "fraud", "from": "2024-03-02T03:04:05.123456Z", "to": "2024-03-06T00:00:00Z",
             "ref_from": "2024-03-01T00:00:00Z", "ref_to": "2024-03-02T00:00:00Z"}
    at = _open(exec_db, monkeypatch, query)
    flt = _filter(at)
    assert flt == Filter.from_query(query)
    assert _url(at)["range"] == ["custom"] and _url(at)["ref"] == ["custom"]
    with read_connection(exec_db) as con:
        expected = loss.overall(con, flt).log_loss
    assert _metrics(at)["Log loss"] == f"{expected:.4f}"


def test_an_outdated_preset_link_reopens_its_own_window(exec_db: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # range=24h with times that are not the last 24 h any more (newer data arrived since).
    query = {"range": "24h", "from": "2024-03-03T00:00:00Z", "to": "2024-03-04T00:00:00Z"}
    flt = _filter(_open(exec_db, monkeypatch, query))
    assert (flt.start, flt.end) == (datetime(2024, 3, 3, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC))


@pytest.mark.parametrize(("query", "message"), [
    ({"model": "nope"}, "no model 'nope'"),
    ({"from": "yesterday-ish"}, "not an ISO-8601 time"),
    ({"version": "v9"}, "has no version 'v9'"),
    ({"segment": "planet=mars"}, "'planet' is not a segment column"),
    ({"segment": "region=mars"}, "region='mars'"),
    ({"range": "3weeks"}, "Unknown time range"),
    ({"maturity_h": "soon"}, "maturity_h must be a number"),
    ({"from": "2024-03-05T00:00:00Z", "to": "2024-03-02T00:00:00Z"}, "empty time range"),
])
def test_bad_url_values_are_explained(exec_db: Path, monkeypatch: pytest.MonkeyPatch,
                                      query: dict[str, str], message: str) -> None:
    at = _open(exec_db, monkeypatch, query)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert at.metric, "the page still shows the view without the bad value"


def test_switching_model_drops_the_old_models_choices(exec_db: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"version": "v2", "ref": "version", "ref_version": "v1",
                                      "segment": "region=eu"})
    assert _filter(at).reference_version == "v1" and _filter(at).versions == ("v2",)
    at.sidebar.selectbox(key="lb_model").select("zeta").run()
    assert not at.exception, [e.value for e in at.exception]
    flt = _filter(at)
    # zeta has no v1/v2: the versions are dropped, the reference is zeta's own version; the
    # segment value exists for zeta too, so it stays.
    assert (flt.model, flt.versions, flt.reference_version) == ("zeta", (), "z1")
    assert flt.segments == (("region", "eu"),)
    assert _url(at)["model"] == ["zeta"] and "version" not in _url(at)


def test_slo_target_is_a_page_parameter(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all", "slo_target": "0.5"})
    assert at.number_input(key="lb_slo_target").value == 0.5
    assert any("Drawn target: daily log loss at or below 0.5" in c.value for c in at.caption)
    at.number_input(key="lb_slo_target").set_value(0.0).run()
    assert "slo_target" not in at.query_params
    assert any("No SLO configured" in c.value for c in at.caption)


SLO_TOML = """\
[[slo]]
name = "confident-mistakes"
model = "fraud"
sli = "predictions"
max_row_loss = 4.6
objective = 0.99
period = "30d"
"""


def test_configured_slo_shows_budget_and_burn_rates(exec_db: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lossboard.toml"
    config.write_text(SLO_TOML)
    monkeypatch.setenv("LOSSBOARD_CONFIG", str(config))
    at = _open(exec_db, monkeypatch, {"range": "all"})
    (spec,) = monitoring_config.load(config).slos
    with read_connection(exec_db) as con:
        window = report.resolve_windows(con, _filter(at))
        status = slo.status(con, spec, window)
    (table,) = [t.value for t in at.table if "SLO" in t.value.columns]
    # The row as the page shows it: budget remaining in %, burn rates, both from slo.status.
    row = table.iloc[0].to_dict()
    assert row == html_report.slo_status_row(spec, status)
    assert row["SLO"] == "confident-mistakes" and row["state"] == status.state
    assert row["budget remaining"] == f"{status.budget_remaining:.1%}"
    assert row[html_report.BURN_COLUMN] == " · ".join(
        "—" if b.burn_rate is None else f"{b.burn_rate:.2f}" for b in status.burn_rates)
    assert not any("No SLO configured" in c.value for c in at.caption)


# A windows SLO on region=eu whose windows can never hold min_samples labelled rows (300 rows
# a day in all): no event, so no burn rate, and its current log loss is over too few rows.
EU_SLO_TOML = """\
[[slo]]
name = "eu-windows"
model = "fraud"
segment = { region = "eu" }
sli = "windows"
window = "6h"
target_log_loss = 0.3
min_samples = 5000
objective = 0.99
period = "30d"
"""


@pytest.fixture
def eu_slo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> monitoring_config.Slo:
    config = tmp_path / "lossboard.toml"
    config.write_text(EU_SLO_TOML)
    monkeypatch.setenv("LOSSBOARD_CONFIG", str(config))
    (spec,) = monitoring_config.load(config).slos
    return spec


def test_slo_table_shows_n_and_why_a_figure_is_missing(exec_db: Path, eu_slo: monitoring_config.Slo,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all"})
    with read_connection(exec_db) as con:
        status = slo.status(con, eu_slo, report.resolve_windows(con, _filter(at)))
    assert 0 < status.current_n < eu_slo.min_samples  # the case the audit found (n = 4)
    (table,) = [t.value for t in at.table if "SLO" in t.value.columns]
    row = table.iloc[0]
    assert row["current log loss"] == (f"{status.current_log_loss:.4f} (n = {status.current_n:,} "
                                       "< 5,000, too few)")
    assert row[html_report.BURN_COLUMN] == "— · — · —"
    assert row["note"].startswith("No burn rate over 1 h, 6 h, 3 d: no 6h window held 5,000 "
                                  "labelled rows, so no event to count")
    assert row["target log loss"] == "0.3000" and row["covers"] == "region=eu"
    assert not at.dataframe or all("SLO" not in d.value.columns for d in at.dataframe)


def test_slo_row_names_a_label_stall_as_the_cause() -> None:
    spec = monitoring_config.Slo(name="eu", model="fraud", sli="windows", target_log_loss=0.32,
                                 window_minutes=360, min_samples=150)
    rates = tuple(slo.BurnRate(m, e, b, r) for m, e, b, r in
                  ((60, 0, 0, None), (360, 0, 0, None), (4320, 197, 197, 100.0)))
    status = SimpleNamespace(burn_rates=rates, current_log_loss=0.00026, current_n=4,
                             target_log_loss=0.32, budget_remaining=-98.99, state="budget_exhausted")
    row = html_report.slo_status_row(spec, status, stalled_since=datetime(2026, 10, 28, 8, tzinfo=UTC))
    assert row[html_report.BURN_COLUMN] == "— · — · 100.00"
    assert row["current log loss"] == "0.0003 (n = 4 < 150, too few)"
    assert row["note"] == ("No burn rate over 1 h, 6 h: no 6h window held 150 labelled rows, so "
                           "no event to count; labels stalled since 2026-10-28 08:00 UTC "
                           "(On-call, Labels).")
    assert html_report.slo_status_row(spec, None, "no model 'fraud'")["note"] == "no model 'fraud'"


def _trend(at: AppTest) -> dict:
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (trend,) = [f for f in figures if any(t.get("name") == "daily log loss" for t in f["data"])
                and "yaxis2" not in f["layout"]]
    return trend


def test_slo_target_drawn_when_the_slo_covers_the_filter(
        exec_db: Path, eu_slo: monitoring_config.Slo, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all", "segment": "region=eu"})
    trend = _trend(at)
    lines = [t["name"] for t in trend["data"] if t.get("name", "").startswith("SLO eu-windows")]
    assert lines == ["SLO eu-windows: 0.3 nats (6h windows)"]
    assert [s["y0"] for s in trend["layout"]["shapes"] if s.get("type") == "line"] == [0.3]
    assert any("the target of each configured SLO that covers exactly this filter" in c.value
               for c in at.caption)
    # The whole model: the eu SLO does not cover it, and the page says why no line is drawn.
    at = _open(exec_db, monkeypatch, {"range": "all"})
    assert not [t for t in _trend(at)["data"] if t.get("name", "").startswith("SLO ")]
    assert any("no configured SLO with a log loss target covers exactly this filter "
               "(eu-windows: region=eu)" in c.value for c in at.caption)


def test_a_trend_length_not_offered_is_reported(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all", "trend_days": "13"})
    assert any("trend_days='13' (not one of 7, 14, 30, 60, 90); showing the default, 30"
               in e.value for e in at.error), [e.value for e in at.error]
    assert at.selectbox(key="lb_trend_days").value == 30
    assert "trend_days" not in at.query_params
    at = _open(exec_db, monkeypatch, {"range": "all", "trend_days": "14"})
    assert at.selectbox(key="lb_trend_days").value == 14 and not at.error


# --------------------------------------------------------------------------- versions, KPIs
def test_versions_table_and_kpi_correlation(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"range": "all"})
    flt = _filter(at)
    with read_connection(exec_db) as con:
        window = report.resolve_windows(con, flt)
        versions = loss.by_version(con, window, auc=False)
        kpis = executive.kpi_vs_loss(con, replace(window, start=window.end - timedelta(days=30)))
    (shown,) = [d for d in at.dataframe if "model_version" in d.value.columns]
    table = shown.value
    assert list(table["model_version"]) == ["v1", "v2"]
    assert np.allclose(table["log_loss"].astype(float), versions["log_loss"].astype(float))
    # Fits a 1440 px window: ten short columns, the interval in one.
    assert list(shown.proto.column_order) == ["model_version", "first_ts", "last_ts",
                                              "n_predictions", "n_labelled", "log_loss",
                                              "interval", "brier", "accuracy", "confidence"]
    low, high = versions.iloc[0][["log_loss_ci_low", "log_loss_ci_high"]]
    assert table["interval"].iloc[0] == f"{low:.4f} – {high:.4f}"
    (corr,) = kpis.correlations
    # Every day has fewer than 1,000 labelled rows: no confident day to correlate, and said so.
    assert corr.r is None and corr.n_days == 0
    assert any(html_report.correlation_sentence(corr) in c.value for c in at.caption)
    (download,) = at.get("download_button")
    # A Material icon: headless Chromium has no emoji font and drew 📥 as an empty box.
    assert download.proto.icon == ":material/download:"


# --------------------------------------------------------------------------- empty states
def test_no_labels_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lossboard.duckdb"
    preds, _, _ = _write_logs(tmp_path)
    _ingest(db, preds, model="fraud", segments=("region",))
    at = _open(db, monkeypatch, {"range": "all"})
    assert any("No labels yet for this window: label lag p90 is unknown" in i.value for i in at.info)
    assert _metrics(at)["Log loss"] == "—"


def test_labels_that_land_later_show_without_a_restart(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lossboard.duckdb"
    preds, labels, _ = _write_logs(tmp_path)
    _ingest(db, preds, model="fraud", segments=("region",))
    at = _open(db, monkeypatch, {"range": "all"})
    assert _metrics(at)["Log loss"] == "—"

    _ingest(db, labels, model="fraud")  # while the session is open
    at.run()  # the next interaction of the same session
    assert not at.exception, [e.value for e in at.exception]
    with read_connection(db) as con:
        expected = loss.overall(con, report.resolve_windows(con, _filter(at))).log_loss
    assert _metrics(at)["Log loss"] == f"{expected:.4f}"


def test_empty_window_says_where_the_data_is(exec_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(exec_db, monkeypatch, {"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"})
    assert any("No predictions of model `fraud` in this window" in i.value for i in at.info)


@pytest.mark.parametrize("page", [EXECUTIVE, "pages/data_health.py"])
def test_labels_and_kpis_without_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             page: str) -> None:
    # The database is not empty (labels came first) but there is no model to show yet.
    db = tmp_path / "lossboard.duckdb"
    _, labels, kpi = _write_logs(tmp_path)
    _ingest(db, labels, model="fraud")
    _ingest(db, kpi, kind="kpi")
    at = _open(db, monkeypatch, {"range": "7d"}, page=page)
    assert _filter(at).model is None
    if page == EXECUTIVE:
        assert any("No predictions in the database yet" in i.value for i in at.info)
    else:
        assert _metrics(at)["Predictions"] == "0"


def test_no_database_shows_onboarding_not_the_sidebar(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(tmp_path / "missing.duckdb", monkeypatch, {"range": "7d"}, page=None)
    assert [t.value for t in at.title] == ["Welcome to lossboard"]
    assert not at.sidebar.selectbox


# --------------------------------------------------------------------------- analysis
def test_filter_options(exec_db: Path) -> None:
    with read_connection(exec_db) as con:
        opts = executive.filter_options(con)
        with pytest.raises(Exception, match="no model 'nope'"):
            executive.filter_options(con, "nope")
    assert opts.models == ("fraud", "zeta") and opts.versions == ("v1", "v2")
    assert set(opts.segments["region"]) == {"eu", "us"} and opts.kpis == ("chargebacks",)
    assert opts.first_ts < opts.last_ts
    # The same from the hourly rollup as from the rows.
    with read_connection(exec_db) as con, patch.object(rollup, "ENABLED", False):
        assert executive.filter_options(con) == opts
        assert executive.filter_options(con, "zeta") != opts
        zeta = executive.filter_options(con, "zeta")
    with read_connection(exec_db) as con:
        assert rollup.current(con, base.model_info(con, "fraud"), ["region"])
        assert executive.filter_options(con, "zeta") == zeta


def test_kpi_vs_loss_matches_numpy(exec_db: Path) -> None:
    with read_connection(exec_db) as con:
        result = executive.kpi_vs_loss(con, Filter(model="fraud"), min_samples=10)
        days = loss.by_bucket(con, Filter(model="fraud"), bucket="day", min_samples=10)
        kpis = con.execute("SELECT ts, value FROM kpis ORDER BY ts").df()
    frame = result.frame
    assert list(frame["value"]) == list(kpis["value"])
    assert np.allclose(frame["log_loss"].astype(float), days["log_loss"].astype(float))
    (corr,) = result.correlations
    expected = np.corrcoef(kpis["value"], days["log_loss"].astype(float))[0, 1]
    assert corr.n_days == 8 and corr.r == pytest.approx(expected, abs=1e-12)


def test_pearson_edge_cases() -> None:
    assert executive.pearson(np.array([1.0, 2.0]), np.array([3.0, 4.0])) is None  # < 3 points
    assert executive.pearson(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])) is None
    # Exact: a perfectly linear pair.
    assert executive.pearson(np.array([1.0, 2.0, 3.0]), np.array([0.2, 0.4, 0.6])) == pytest.approx(1.0)


def test_preset_window_and_previous_window() -> None:
    newest = datetime(2026, 10, 30, 23, 59, 59, tzinfo=UTC)
    start, end = sidebar.preset_window("7d", newest)
    assert end == datetime(2026, 10, 31, tzinfo=UTC) and start == datetime(2026, 10, 24, tzinfo=UTC)
    assert sidebar.previous_window(start, end) == (datetime(2026, 10, 17, tzinfo=UTC), start)
    assert sidebar.preset_window("all", newest) == (None, None)
