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
    # The stall is judged on mature hours; its start lies within a day of the true start.
    assert abs(np.datetime64(stall["since"][:19]) - np.datetime64(iso["label_stall"][:19])) <= np.timedelta64(24, "h")
    assert rep["canary"]["verdict"] == "fail"


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
