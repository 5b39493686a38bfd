"""The report contract (docs/report-json.md) and the sample's incidents, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lossboard.dashboard.analysis import report
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.cli import app
from lossboard.db import read_connection
from lossboard.ingest.samples import read_manifest

from .conftest import SAMPLE_DIR, binary_frames

OVERALL_KEYS = {"n_predictions", "n_labelled", "n_nan_scores", "n_clipped", "log_loss", "brier",
                "roc_auc", "accuracy", "ece"}


@pytest.fixture(scope="module")
def sample_report(sample_db: Path) -> dict:
    with read_connection(sample_db) as con:
        return report.build_report(con, Filter(model="fraud"))


def test_report_has_every_contract_field(sample_report: dict) -> None:
    rep = sample_report
    assert OVERALL_KEYS <= set(rep["overall"])
    assert {"day", "n_predictions", "n_labelled", "log_loss", "low_confidence"} <= set(rep["by_day"][0])
    assert set(rep["by_segment"]) == {"region", "channel"}  # triage's "queue" is not fraud's
    assert {"value", "n_labelled", "log_loss", "excess_loss", "p_value"} <= set(rep["by_segment"]["region"][0])
    assert {"model_version", "n_labelled", "log_loss"} <= set(rep["by_version"][0])
    assert {"baseline", "candidate", "n_baseline", "n_candidate", "log_loss_baseline",
            "log_loss_candidate", "relative_delta", "p_value", "verdict"} <= set(rep["canary"])
    assert {"feature", "kind", "psi", "ks_statistic", "ks_pvalue"} <= set(rep["drift"][0])
    assert {"day", "frac_extreme_scores", "n_nan_scores", "activations"} <= set(rep["saturation"][0])
    assert set(rep["saturation"][0]["activations"]) == {"h1_tanh"}
    assert {"coverage_by_day", "lag_hours"} <= set(rep["labels"])
    assert {"p50", "p90", "p99"} <= set(rep["labels"]["lag_hours"])
    json.dumps(rep, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere


def test_report_figures_agree_with_the_sample(sample_report: dict) -> None:
    manifest = read_manifest(SAMPLE_DIR)
    rep = sample_report
    # 200,000 clean fraud predictions; 5 out-of-range ones were quarantined at ingest.
    assert rep["overall"]["n_predictions"] == manifest.n_predictions["fraud"]
    assert rep["overall"]["n_nan_scores"] > 0
    assert len(rep["by_day"]) == 30  # 2026-10-01 .. 2026-10-30, UTC days
    assert sum(d["n_predictions"] for d in rep["by_day"]) == rep["overall"]["n_predictions"]
    assert rep["window"]["from"].startswith("2026-10-01")
    assert rep["reference"]["to"].startswith("2026-10-08")  # the default: the first 7 days


def _finding(rep: dict, what: str, **where: object) -> dict:
    hits = [f for f in rep["findings"] if f["what"] == what
            and all(f["where"].get(k) == v for k, v in where.items())]
    assert hits, f"no {what} {where} in {[(f['what'], f['where']) for f in rep['findings']]}"
    return hits[0]


def test_every_sample_incident_is_found_with_its_start(sample_report: dict) -> None:
    # Start times from sample_data/_manifest.json (sample_data/README.md lists them).
    starts = {i.name: i.start for i in read_manifest(SAMPLE_DIR).incidents}
    iso = {name: t.strftime("%Y-%m-%dT%H:%M:%SZ") for name, t in starts.items()}
    rep = sample_report
    drift = _finding(rep, "feature_drift", feature="amount")
    assert drift["since"] == iso["segment_feature_drift"]
    assert drift["where"]["segment"] == {"region": "eu"}
    loss_rise = _finding(rep, "loss_regression")
    assert loss_rise["since"] == iso["segment_feature_drift"]
    assert loss_rise["where"] == {"segment": {"region": "eu"}}
    canary = _finding(rep, "canary_fail", model_version="v2")
    assert canary["since"][:10] == iso["overconfident_canary"][:10]
    nan = _finding(rep, "nonfinite_scores")
    assert nan["since"] == iso["nan_scores"]
    assert nan["until"] == starts["nan_scores"].replace(hour=10).strftime("%Y-%m-%dT%H:%M:%SZ")
    zero_one = _finding(rep, "exact_zero_one_scores")
    assert zero_one["since"] == iso["hard_zero_one_scores"]
    tanh = _finding(rep, "activation_saturation", activation="h1_tanh")
    assert tanh["since"] == iso["tanh_saturation"]
    stall = _finding(rep, "label_stall")
    # The stall is judged on mature hours, but its start is the hour label arrivals dropped
    # (labels.stall_onset): 2026-10-28 12:00 exactly, not the judged span's start (08:00).
    assert stall["since"] == iso["label_stall"]
    assert rep["canary"]["verdict"] == "fail"
    # The whole history holds every start: nothing began before the window.
    assert not any(f["since_before_window"] or f["since_is_lookback_limit"]
                   for f in rep["findings"])


def test_no_finding_before_the_incidents(sample_db: Path) -> None:
    # The first 12 days of the sample are clean: nothing may fire there.
    with read_connection(sample_db) as con:
        rep = report.build_report(con, Filter(model="fraud", end="2026-10-13"))
    assert rep["findings"] == []


def test_report_cli_json_and_text(sample_db: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--db", str(sample_db), "--model", "fraud",
                                 "--from", "2026-10-15", "--no-drift", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["window"]["from"] == "2026-10-15T00:00:00Z" and rep["drift"] is None
    text = runner.invoke(app, ["report", "--db", str(sample_db), "--model", "fraud", "--no-drift"])
    assert text.exit_code == 0 and "what broke, where, since when" in text.stdout
    several = runner.invoke(app, ["report", "--db", str(sample_db)])
    assert several.exit_code == 1 and "several models" in several.stderr


def test_report_single_model_needs_no_model_flag(make_db) -> None:
    preds, labels = binary_frames(np.random.default_rng(2), 2000, hours=24 * 30)
    db = make_db(preds, labels, segments=("region",), features=("amount", "device"),
                 activations=("h1_tanh",))
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["model"] == "m" and rep["overall"]["n_predictions"] == 2000
    # Random, stationary data: no loss regression, no drift, no saturation, no canary.
    assert {f["what"] for f in rep["findings"]} <= {"label_stall"}
    assert rep["canary"] is None


def test_drift_findings_values_are_feature_drift_of_their_windows(sample_db: Path,
                                                                   sample_report: dict) -> None:
    # A drift finding's value is the PSI from its first day (not before the window that is
    # compared with the reference) to the end; its segment_psi, that PSI within the segment.
    from dataclasses import replace
    from datetime import datetime

    from lossboard.dashboard.analysis import drift

    hits = [f for f in sample_report["findings"] if f["what"] == "feature_drift"]
    assert hits
    with read_connection(sample_db) as con:
        flt = report.resolve_windows(con, Filter(model="fraud"))
        current = report.drift_window(flt)
        for f in hits:
            since = datetime.fromisoformat(f["since"].replace("Z", "+00:00"))
            window = replace(current, start=max(since, current.start))
            name = drift.SCORE if f["where"]["feature"] == "score" else f["where"]["feature"]
            whole = drift.feature_drift(con, window, features=[name], ks=False)["psi"].iloc[0]
            assert f["value"] == pytest.approx(whole, rel=1e-12)
            for column, value in (f["where"].get("segment") or {}).items():
                sub = replace(window, segments=window.segments + ((column, value),))
                psi = drift.feature_drift(con, sub, features=[name], ks=False)["psi"].iloc[0]
                assert f["where"]["segment_psi"] == pytest.approx(psi, rel=1e-12)
                assert psi >= 1.5 * whole


# --------------------------------------------------------------------------- since when
#: The On-call page's windows over the sample (dashboard/sidebar.py: "7d" ends just after the
#: newest prediction; the reference is the first 7 days of the history).
END = "2026-10-30T23:59:59.655769Z"
REF = {"reference_start": "2026-10-01T00:00:02.672529Z",
       "reference_end": "2026-10-08T00:00:02.672529Z"}
WINDOWS = {
    "whole history": Filter(model="fraud"),
    "30 days": Filter(model="fraud", start="2026-10-01T00:00:02.672529Z", end=END, **REF),
    "30 days, v2": Filter(model="fraud", start="2026-10-01T00:00:02.672529Z", end=END,
                          versions=("v2",), **REF),
    "7 days": Filter(model="fraud", start="2026-10-24T00:00:00Z", end=END, **REF),
    "7 days to 23:55": Filter(model="fraud", start="2026-10-23T23:55:00Z",
                              end="2026-10-30T23:55:00Z", **REF),
}


@pytest.fixture(scope="module")
def window_reports(sample_db: Path) -> dict[str, dict]:
    with read_connection(sample_db) as con:
        return {name: report.build_report(con, flt, include_drift=name != "30 days, v2")
                for name, flt in WINDOWS.items()}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_label_stall_since_is_the_arrival_drop_in_every_window(window_reports: dict,
                                                               name: str) -> None:
    # sample_data/README.md: label arrivals drop from ~241/h to ~5/h at 2026-10-28 12:00.
    # Before, the finding said 08:00 (whole history), 14:00 (v2) or 20:00 (7 days).
    stall = _finding(window_reports[name], "label_stall")
    assert stall["since"] == "2026-10-28T12:00:00Z"
    assert stall["since_before_window"] is False
    assert "label arrivals down since 2026-10-28 12:00" in stall["detail"]
    assert window_reports[name]["labels"]["stall"]["onset"] == "2026-10-28T12:00:00Z"


@pytest.mark.parametrize("name", ["7 days", "7 days to 23:55"])
def test_incidents_already_on_keep_their_start_before_the_window(window_reports: dict,
                                                                 name: str) -> None:
    # The 7-day windows begin after the eu drift (10-19), the canary (10-21) and the tanh
    # saturation (10-23) started: each finding looks back (findings.LOOKBACK_DAYS) for the
    # true start and says it lies before the window. Before, each said the window's start.
    rep = window_reports[name]
    expected = {("activation_saturation", "activation", "h1_tanh"): "2026-10-23T00:00:00Z",
                ("feature_drift", "feature", "amount"): "2026-10-19T00:00:00Z",
                ("feature_drift", "feature", "score"): "2026-10-21T00:00:00Z",
                ("loss_regression", None, None): "2026-10-19T00:00:00Z"}
    for (what, key, value), since in expected.items():
        found = _finding(rep, what, **({key: value} if key else {}))
        assert found["since"] == since, (what, found)
        assert found["since_before_window"] is True and found["since_is_lookback_limit"] is False
        assert "(before this window, which starts 2026-10-2" in found["detail"]
    canary = _finding(rep, "canary_fail", model_version="v2")
    assert canary["since"].startswith("2026-10-21T00:00") and canary["since_before_window"]
    # The figures stay those of the window: the saturation share over its days (README:
    # 43.6% from 10-23 on), against the reference's 2.2%.
    tanh = _finding(rep, "activation_saturation")
    assert 0.42 < tanh["value"] < 0.45 and 0.015 < tanh["baseline"] < 0.03


def test_lookback_is_bounded_and_says_so(sample_db: Path) -> None:
    # A window from 10-29: the eu drift began 10-19, more than LOOKBACK_DAYS (7) before. The
    # finding goes back to the look-back's first day and says it began then or earlier.
    flt = Filter(model="fraud", start="2026-10-29T00:00:00Z", end=END, **REF)
    with read_connection(sample_db) as con:
        rep = report.build_report(con, flt)
    amount = _finding(rep, "feature_drift", feature="amount")
    assert amount["since"] == "2026-10-22T00:00:00Z"
    assert amount["since_before_window"] is True and amount["since_is_lookback_limit"] is True
    assert "since before 2026-10-22" in amount["detail"]


def test_canary_pair_and_verdict_do_not_depend_on_the_window(window_reports: dict) -> None:
    # Before, the window from 2026-10-23T23:55 (whose first row is v2's) made v1 the
    # candidate: "Verdict pass for v1 vs v2: v1 0.2956 is -37.0% vs v2 0.4692".
    for name, rep in window_reports.items():
        can = rep["canary"]
        assert (can["baseline"], can["candidate"], can["verdict"]) == ("v1", "v2", "fail"), name
        assert can["relative_delta"] > 0.3, name


def test_empty_reference_is_not_compared_with_as_zero(window_reports: dict,
                                                      sample_db: Path) -> None:
    # version=v2 against 10-01..10-08: v2 did not exist then. Before, the finding said
    # "43.5% of |h1_tanh| > 0.9 ... vs 0.0% in the reference window".
    rep = window_reports["30 days, v2"]
    tanh = _finding(rep, "activation_saturation", activation="h1_tanh")
    assert tanh["baseline"] is None and "vs 0.0%" not in tanh["detail"]
    assert "no reference data" in tanh["detail"]
    assert tanh["since"] == "2026-10-23T00:00:00Z"
    assert {f["what"] for f in rep["findings"]}.isdisjoint({"loss_regression", "feature_drift"})
    assert any(n.startswith("no reference data: the reference window") for n in rep["notes"])
    assert not any(n.startswith("no reference data") for n in window_reports["7 days"]["notes"])
    with read_connection(sample_db) as con:
        drift_rows = report.build_report(con, WINDOWS["30 days, v2"], auc=False, ece=False)["drift"]
    assert {d["status"] for d in drift_rows} == {"no_data"}


def test_drift_section_is_most_drifted_first(window_reports: dict) -> None:
    # docs/report-json.md: "most drifted first". Before, the score's row came last (the
    # 7-day window: amount PSI 0.136 listed before the score's 0.188).
    for name, rep in window_reports.items():
        rows = rep["drift"]
        if not rows:
            continue
        psis = [d["psi"] for d in rows if d["status"] != "no_data"]
        assert psis == sorted(psis, reverse=True), name
        assert all(d["psi"] is None for d in rows[len(psis):]), name  # no_data last
    assert window_reports["7 days"]["drift"][0]["feature"] == "score"
