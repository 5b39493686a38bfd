"""The machine-readable report: every analysis in one JSON object (docs/report-json.md).

:func:`build_report` calls the analysis modules for one Filter and assembles their small
results; :func:`findings` (findings.py) reads those results and answers "what broke, where,
since when" in a short list. Nothing here touches rows: the modules do that in DuckDB.

Default windows, when the Filter leaves them open: the selected window is the model's whole
history (``[first prediction, last prediction]``); the reference window is the first
``REFERENCE_DAYS`` days of it (a quarter of it when it is shorter than four times that). A
window too short to hold a quarter (every prediction at one instant) gets no default reference:
the report then leaves out what compares with one and says so in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis import (
    base, calibration, canary, cube, drift, labels, loss, saturation, segments,
)
from lossboard.dashboard.analysis.filters import Filter
# The findings live in their own module (findings.py); drift_window stays importable from
# here for the pages (views.drift_window).
from lossboard.dashboard.analysis.findings import (
    ACTIVATION_TAIL_ALERT,
    _drift_findings,
    drift_window,
    findings,
)
from lossboard.dashboard.analysis.findings import iso as _iso

REFERENCE_DAYS = 7
#: What needs a reference window, named in the report's ``notes`` when there is none.
NO_REFERENCE = ("drift vs the reference window and the findings that compare with it "
                "(loss_regression, feature_drift, activation_saturation)")


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NA/NaN -> None, numpy -> Python, datetimes -> ISO strings."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return _iso(value)
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return [{c: _clean(row[c]) for c in columns} for _, row in frame.iterrows()]


def resolve_windows(con: duckdb.DuckDBPyConnection, flt: Filter) -> Filter:
    """The Filter with model, time range and reference window filled in (module docstring)."""
    flt = base.resolve_model(con, flt)
    rows = base.prediction_rows(con, replace(flt, start=None, end=None, maturity_hours=None))
    first, last = con.execute(f"SELECT min(ts), max(ts) FROM ({rows.sql})", rows.params).fetchone()
    if first is None:
        return flt
    start = flt.start or first
    end = flt.end or (last + timedelta(microseconds=1))
    if not flt.has_reference:
        span = end - start
        length = timedelta(days=REFERENCE_DAYS) if span >= timedelta(days=4 * REFERENCE_DAYS) else span / 4
        # A quarter of a span under 4 µs rounds to 0 µs: an empty window that Filter refuses.
        # The user asked for no reference, so the report goes on without one (see NO_REFERENCE).
        if length > timedelta(0):
            flt = replace(flt, reference_start=start, reference_end=start + length)
    return replace(flt, start=start, end=end)


def build_report(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = 10,
                 min_samples: int = base.DEFAULT_MIN_SAMPLES, include_drift: bool = True,
                 auc: bool = True, drift_section: bool = True, ece: bool = True,
                 cube_sums: cube.Cube | None = None,
                 label_lag: labels.LabelLag | None = None) -> dict[str, Any]:
    """Every section of docs/report-json.md for ``flt`` (see there for the fields).

    ``cube_sums``: a :func:`cube.build` of ``flt`` and its reference window that the caller
    made for its own figures too (views.oncall_data); without one, the report builds its own.

    ``auc=False`` leaves ``overall.roc_auc`` / ``pr_auc`` null: the exact AUC sorts every
    labelled row and is the report's single most expensive figure (about 40% of it at 10M
    rows); a page that does not show it (On-call) should not pay for it.
    ``drift_section=False`` leaves ``drift`` null but keeps the drift findings, which read
    daily PSI, not that section: the section's exact KS per feature is a third of the
    report's drift cost, for a table On-call does not show. ``include_drift=False`` leaves out
    the drift findings too (:func:`drift_findings` gives them on their own).
    ``ece=False`` leaves ``overall.ece`` / ``mce`` null (calibration's own scan).
    ``label_lag``: :func:`labels.label_lag` of ``flt``, when the caller has it already
    (views.oncall_data takes it from ``labels.coverage_and_lag``); the report's equals it.
    """
    flt = resolve_windows(con, flt)
    opts = dict(bins=bins, min_samples=min_samples, include_drift=include_drift, auc=auc,
                drift_section=drift_section, ece=ece, label_lag=label_lag)
    if flt.start is None:  # no prediction of the model: nothing to sum
        return _report(con, flt, None, **opts)
    # One scan sums the window and the reference window for every loss and segment figure
    # below (cube.py); the figures equal the row scans' (tests/analysis/test_cube.py).
    if cube_sums is not None and cube_sums.covers(flt) and (
            not flt.has_reference or cube_sums.covers(flt.reference())):
        return _report(con, flt, cube_sums, **opts)
    cub = cube.build(con, flt, segments.segment_columns(con), cube_windows(con, flt))
    try:
        return _report(con, flt, cub, **opts)
    finally:
        cub.drop(con)


def cube_windows(con: duckdb.DuckDBPyConnection, flt: Filter) -> list[Filter]:
    """The windows besides ``flt`` whose figures the report reads from its cube: the
    reference window and the canary's common range (when there is a canary)."""
    common = canary.common_window(con, flt)
    return [w for w in (flt.reference() if flt.has_reference else None, common) if w is not None]


def reference_notes(flt: Filter) -> list[str]:
    """The report's ``notes`` for a resolved ``flt``: why the parts that compare with the
    reference window were left out, when it has none (empty list otherwise)."""
    if flt.has_reference:
        return []
    if flt.start is None:
        return [f"no reference window: model {flt.model} has no prediction in the filter; "
                f"{NO_REFERENCE} were skipped"]
    return [f"no reference window: the window {_iso(flt.start)} to {_iso(flt.end)} is too short "
            "for the default one (every prediction at one instant, or nearly); "
            f"{NO_REFERENCE} were skipped. Give --reference-from/--reference-to to compare "
            "with another window"]


def _report(con: duckdb.DuckDBPyConnection, flt: Filter, cub: cube.Cube | None, *, bins: int,
            min_samples: int, include_drift: bool, auc: bool, drift_section: bool,
            ece: bool, label_lag: labels.LabelLag | None) -> dict[str, Any]:
    # Drift and the findings that compare with the reference need one; the rest does not.
    include_drift = include_drift and flt.has_reference
    info = base.model_info(con, flt.model)
    summary = loss.overall(con, flt, min_samples=min_samples, auc=auc, cube=cub)
    cal = (calibration.calibration_errors(con, flt, bins=bins, min_samples=min_samples)
           if ece else None)
    sat = saturation.score_saturation(con, flt, bucket="day", min_samples=min_samples, cube=cub)
    acts = saturation.activation_saturation(con, flt, bucket="day", min_samples=min_samples)
    days = loss.by_bucket(con, flt, bucket="day", min_samples=min_samples, auc=False, cube=cub)
    versions = loss.by_version(con, flt, min_samples=min_samples, auc=False, cube=cub)
    report: dict[str, Any] = {
        "model": flt.model,
        "task": info.task,
        "classes": list(info.classes),
        "window": {"from": _iso(flt.start), "to": _iso(flt.end)},
        "reference": {"from": _iso(flt.reference_start), "to": _iso(flt.reference_end),
                      "version": flt.reference_version},
        "filter": flt.to_query(),
        "min_samples": min_samples,
        "overall": {
            "n_predictions": summary.n_predictions, "n_labelled": summary.n_labelled,
            "n_nan_scores": sat.overall.n_nan,
            "n_inf_scores": sat.overall.n_posinf + sat.overall.n_neginf,
            "n_clipped": summary.n_clipped, "log_loss": summary.log_loss,
            "log_loss_ci": [summary.log_loss_ci_low, summary.log_loss_ci_high],
            "low_confidence": summary.low_confidence, "brier": summary.brier,
            "roc_auc": summary.roc_auc, "pr_auc": summary.pr_auc, "accuracy": summary.accuracy,
            "ece": cal and cal.ece, "mce": cal and cal.mce, "perplexity": summary.perplexity,
            "entropy": summary.entropy, "calibration_in_the_large": summary.calibration_in_the_large,
        },
        "by_day": [
            {"day": _iso(r["bucket_start"].date()), **{c: _clean(r[c]) for c in (
                "n_predictions", "n_labelled", "log_loss", "log_loss_ci_low", "log_loss_ci_high",
                "low_confidence")}}
            for _, r in days.iterrows()],
        "by_segment": _by_segment(con, flt, min_samples, cub),
        "by_version": _records(versions.rename(columns={"first_ts": "first_ts", "last_ts": "last_ts"}),
                               ["model_version", "n_labelled", "log_loss", "low_confidence",
                                "first_ts", "last_ts"]),
        "canary": _canary(con, flt, min_samples, cub),
        "drift": _drift(con, flt, bins) if include_drift and drift_section else None,
        "saturation": _saturation(sat, acts),
        "labels": _labels(con, flt, min_samples, cub, label_lag),
    }
    report["findings"] = [asdict(f) for f in findings(con, flt, report, include_drift=include_drift,
                                                      cube=cub, activations=acts)]
    report["notes"] = reference_notes(flt) + empty_reference_notes(con, flt, cub)
    return _deep_clean(report)


def empty_reference_notes(con: duckdb.DuckDBPyConnection, flt: Filter,
                          cub: cube.Cube | None = None) -> list[str]:
    """The report's ``notes`` when ``flt`` has a reference window without a prediction of its
    filter (e.g. ``version=v2`` against days before v2 existed): what was compared with
    nothing, so that no figure reads as "vs 0" (empty list otherwise)."""
    if not flt.has_reference:
        return []
    ref = flt.reference()
    if loss.overall(con, ref, min_samples=1, auc=False, cube=cub).n_predictions > 0:
        return []
    where = ", ".join(f"{c}={v}" for c, v in ref.segments)
    return [f"no reference data: the reference window {_iso(ref.start) or 'start'} to "
            f"{_iso(ref.end) or 'end'} holds no prediction of model {flt.model}"
            f"{' version ' + ', '.join(ref.versions) if ref.versions else ''}"
            f"{' with ' + where if where else ''}; drift is no_data, loss_regression and "
            "feature_drift are not judged, and activation_saturation is judged against its "
            f"{ACTIVATION_TAIL_ALERT:.0%} floor alone. Choose a reference window (or version) "
            "with data to compare"]


def _deep_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _deep_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_clean(v) for v in value]
    return _clean(value)


def _by_segment(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
                cub: cube.Cube | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in segments.segment_columns(con):
        frame = segments.excess_loss(con, flt, column, min_samples=min_samples, cube=cub)
        if frame.empty or not frame["value"].notna().any():
            continue
        out[column] = _records(frame, ["value", "n_labelled", "log_loss", "excess_loss", "p_value",
                                       "significant", "low_confidence"])
    return out


def _canary(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
            cub: cube.Cube | None) -> dict[str, Any] | None:
    pair = canary.detect_pair(con, flt)
    if pair is None:
        return None
    result = canary.compare_versions(con, flt, baseline=pair[0], candidate=pair[1],
                                     min_samples=min_samples, cube=cub)
    return {k: _clean(v) for k, v in asdict(result).items()}


def _drift(con: duckdb.DuckDBPyConnection, flt: Filter, bins: int) -> list[dict[str, Any]]:
    current = drift_window(flt)
    # The features and the score in one call (one block sample, one resolving pass), in
    # feature_drift's order: most drifted first, the score among the features, no_data last.
    features = [name for name, _ in base.columns_with_role(con, "feature")]
    frame = drift.feature_drift(con, current, bins=bins, features=[*features, drift.SCORE])
    frame["feature"] = frame["feature"].replace({drift.SCORE: "score"})
    # Columns are registered per file kind, not per model: a feature another model's files
    # brought is empty in both windows here and is left out.
    never = (frame["n_reference"] == 0) & (frame["n_current"] == 0)
    frame = frame[~never]
    return _records(frame, ["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "status",
                            "missing_rate_reference", "missing_rate_current", "n_reference",
                            "n_current"])


def _saturation(sat: saturation.ScoreSaturation,
                activations: saturation.ActivationSaturation) -> list[dict[str, Any]]:
    acts = activations.by_bucket
    tails: dict[Any, dict[str, Any]] = {}
    for _, r in acts.iterrows():
        tails.setdefault(r["bucket_start"], {})[r["column"]] = _clean(r["frac_tail"])
    return [{"day": _iso(r["bucket_start"].date()), "n": _clean(r["n"]),
             "frac_extreme_scores": _clean(r["frac_saturated"]), "n_nan_scores": _clean(r["n_nan"]),
             "n_inf_scores": _clean(r["n_posinf"] + r["n_neginf"]),
             "n_exact_0_or_1": _clean(r["n_exact_0"] + r["n_exact_1"]),
             "activations": tails.get(r["bucket_start"], {})}
            for _, r in sat.by_bucket.iterrows()]


def _labels(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
            cub: cube.Cube | None, lag: labels.LabelLag | None) -> dict[str, Any]:
    if lag is None:
        lag = labels.label_lag(con, flt)
    # Coverage's and the stall's maturity rule use label_lag's p90 over the same rows when
    # given none; passing it spares them a quantile per bucket (not shown here) and lets
    # them count from the cube.
    cov = labels.coverage(con, flt, bucket="day", min_samples=min_samples,
                          lag_p90_hours=lag.p90_hours, lag_quantiles=False, cube=cub)
    stall = labels.label_stall(con, flt, lag_p90_hours=lag.p90_hours, cube=cub)
    return {
        "coverage_by_day": [{"day": _iso(r["bucket_start"].date()), **{c: _clean(r[c]) for c in (
            "n_predictions", "n_labelled", "coverage", "mature")}} for _, r in cov.iterrows()],
        "lag_hours": {"p50": lag.p50_hours, "p90": lag.p90_hours, "p99": lag.p99_hours,
                      "n": lag.n, "n_ingest_time": lag.n_ingest_time,
                      "n_before_prediction": lag.n_before_prediction,
                      "frac_before_prediction": lag.frac_before_prediction},
        "stall": {k: _clean(v) for k, v in asdict(stall).items()},
    }


# --------------------------------------------------------------------------- findings
def drift_findings(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                   min_samples: int = base.DEFAULT_MIN_SAMPLES) -> list[dict[str, Any]]:
    """The ``feature_drift`` findings of :func:`build_report` for ``flt``, on their own and in
    its order (as dicts, like the report's ``findings``): the On-call page asks for them after
    its other figures (views.oncall_drift_findings), since they cost as much again at 10M rows.
    """
    flt = resolve_windows(con, flt)
    if flt.start is None or not flt.has_reference:
        return []
    return _deep_clean([asdict(f) for f in _drift_findings(con, flt, min_samples, None)])
