"""The Debug page (dashboard/pages/debug.py), run headless with AppTest on small databases
built with the real ingest: values shown equal the analysis functions' results, the page's own
URL keys (dbg_feature, dbg_x, dbg_y, dbg_cal) round-trip, and empty states say why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossboard.dashboard.analysis import calibration, samples, views
from lossboard.dashboard.pages import _tables
from lossboard.db import read_connection
from pages_support import ingest_frame, run_app, small_db, texts, view_of

QUERY = {"model": "fraud", "from": "2024-03-01T12:00:00Z", "to": "2024-03-03T00:00:00Z",
         "ref_from": "2024-03-01T00:00:00Z", "ref_to": "2024-03-01T12:00:00Z"}


def _select(at, label: str):
    return next(s for s in at.selectbox if s.label == label)


def test_tabs_show_the_analysis_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    view = view_of(db, QUERY)
    with read_connection(str(db)) as con:
        table = views.drift_table(con, views.drift_window(view))
        ece = calibration.calibration_errors(con, view, strategy="uniform").ece
        top = samples.top_loss_samples(con, view, k=100)
    # Drift is the default tab; only the open tab's sections run.
    at = run_app(db, monkeypatch, QUERY, page="pages/debug.py")
    shown = next(d.value for d in at.dataframe if "ks_pvalue" in d.value.columns)
    assert shown["feature"].tolist() == table["feature"].tolist()
    assert shown["psi"].astype(float).round(12).tolist() == table["psi"].astype(float).round(12).tolist()
    assert "ECE" not in {m.label for m in at.metric}
    # Opening a tab reruns the page with it, and the URL says so.
    at.session_state["w_dbg_focus"] = "Calibration"
    at.run()
    assert at.query_params.get("dbg_focus") == "calibration"
    assert {m.label: m.value for m in at.metric}["ECE"] == f"{ece:.4f}"
    at = run_app(db, monkeypatch, {**QUERY, "dbg_focus": "errors"}, page="pages/debug.py")
    rows = next(d.value for d in at.dataframe if "loss" in d.value.columns and "rank" in d.value.columns)
    assert rows["request_id"].tolist() == top.rows["request_id"].tolist()
    assert at.get("download_button"), "the top-loss table is downloadable"
    assert len(at.get("plotly_chart")) == 1  # the error heatmap


def test_page_params_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    link = {**QUERY, "dbg_feature": "device", "dbg_x": "device", "dbg_y": "amount",
            "dbg_cal": "quantile"}
    at = run_app(db, monkeypatch, link, page="pages/debug.py")
    assert _select(at, "Drill down to feature").value == "device"
    # Changing a widget writes it back to the URL, so the link reopens the new drill-down; the
    # default (the most drifted feature) leaves the URL clean.
    options = _select(at, "Drill down to feature").options
    _select(at, "Drill down to feature").set_value(options[-1]).run()
    assert at.query_params.get("dbg_feature") == options[-1]
    _select(at, "Drill down to feature").set_value(options[0]).run()
    assert "dbg_feature" not in at.query_params
    # The other tabs' keys wait in the URL until their tab opens.
    assert at.query_params.get("dbg_cal") == "quantile"
    at = run_app(db, monkeypatch, {**link, "dbg_focus": "errors"}, page="pages/debug.py")
    assert (_select(at, "Heatmap x").value, _select(at, "Heatmap y").value) == ("device", "amount")
    at = run_app(db, monkeypatch, {**link, "dbg_focus": "calibration"}, page="pages/debug.py")
    assert at.get("segmented_control")[0].value == "quantile"
    with read_connection(str(db)) as con:
        ece = calibration.calibration_errors(con, view_of(db, QUERY), strategy="quantile").ece
    assert {m.label: m.value for m in at.metric}["ECE"] == f"{ece:.4f}"


def test_bad_page_param_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {**QUERY, "dbg_feature": "no_such_feature"}, page="pages/debug.py")
    assert any("dbg_feature" in e for e in texts(at.error))


def test_no_labels_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path, labels="none")
    at = run_app(db, monkeypatch, {**QUERY, "dbg_focus": "errors"}, page="pages/debug.py")
    assert any("No labels yet for this window: label lag p90 is" in i for i in texts(at.info))


def test_one_class_only_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path, labels="ones")
    at = run_app(db, monkeypatch, {**QUERY, "dbg_focus": "calibration"}, page="pages/debug.py")
    assert any("one class only" in w for w in texts(at.warning)), texts(at.warning)


def test_window_without_data_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, {"model": "fraud", "from": "2025-01-01T00:00:00Z",
                                   "to": "2025-01-02T00:00:00Z"}, page="pages/debug.py")
    assert any("No predictions in" in i for i in texts(at.info)), texts(at.info)


def test_segment_filter_changes_what_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    shown = {}
    for name, query in (("all", QUERY), ("eu", {**QUERY, "segment": "region=eu"})):
        at = run_app(db, monkeypatch, {**query, "dbg_focus": "calibration"}, page="pages/debug.py")
        with read_connection(str(db)) as con:
            expected = calibration.calibration_errors(con, view_of(db, query)).n
        shown[name] = {m.label: m.value for m in at.metric}["labelled rows"]
        assert shown[name] == f"{expected:,}"
    assert shown["all"] != shown["eu"]


# --------------------------------------------------------------------------- audit of the views
@pytest.mark.parametrize(("value", "shown"), [
    (0.0, _tables.P_FLOOR_TEXT),  # underflowed: scipy returns 0 below ~1e-308
    (1e-310, _tables.P_FLOOR_TEXT),
    (3.14159e-12, "3.14e-12"),
    (0.909, "0.909"),
    (None, None),  # categorical: KS is not defined
    (float("nan"), None),
])
def test_p_value_text(value, shown) -> None:
    assert _tables.p_value_text(value) == shown


def test_drift_table_says_ks_is_not_defined_for_categorical(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db = small_db(tmp_path)
    at = run_app(db, monkeypatch, QUERY, page="pages/debug.py")
    (table,) = [d for d in at.dataframe if "ks_pvalue" in d.value.columns]
    rows = table.value.set_index("feature")
    assert rows.loc["device", "kind"] == "categorical"
    assert pd.isna(rows.loc["device", "ks_pvalue"]) and pd.isna(rows.loc["device", "ks_statistic"])
    assert table.proto.placeholder == "—"  # not "None"
    config = json.loads(table.proto.columns)
    assert "not defined for categorical" in config["ks_statistic"]["help"]
    assert "not defined for categorical" in config["ks_pvalue"]["help"]
    with read_connection(str(db)) as con:
        p = views.drift_table(con, views.drift_window(view_of(db, QUERY))).set_index("feature")
    assert rows.loc["amount", "ks_pvalue"] == f"{p.loc['amount', 'ks_pvalue']:.3g}"


def test_psi_heatmap_says_its_colours_are_capped(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # amount moves tenfold after the reference window: daily PSI far above the 0.5 cap.
    rng = np.random.default_rng(5)
    ts = pd.date_range("2024-03-01", periods=480, freq="6min", tz="UTC")
    amount = rng.gamma(2.0, 30.0, 480) * np.where(ts >= pd.Timestamp("2024-03-01T12:00Z"), 10, 1)
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(480)],
                          "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "score": rng.uniform(0.02, 0.98, 480).round(4),
                          "region": "eu", "amount": amount.round(2)})
    db = tmp_path / "drift.duckdb"
    ingest_frame(db, preds, "predictions.csv", model="fraud", model_version="v1",
                 segments=("region",), features=("amount",))
    at = run_app(db, monkeypatch, QUERY, page="pages/debug.py")
    (heatmap,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                  if json.loads(c.proto.spec)["data"][0].get("type") == "heatmap"]
    assert heatmap["data"][0]["colorbar"]["ticktext"][-1] == "≥ 0.5"
    captions = " ".join(texts(at.caption))
    assert "Colours are capped at PSI 0.5" in captions and "the largest here, amount at" in captions
