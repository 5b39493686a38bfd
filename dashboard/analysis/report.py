"""The machine-readable report: every analysis in one JSON object (docs/report-json.md).

:func:`build_report` calls the analysis modules for one Filter and assembles their small
results; :func:`findings` reads those results and answers "what broke, where, since when" in a
short list. Nothing here touches rows: the modules do that in DuckDB.

Default windows, when the Filter leaves them open: the selected window is the model's whole
history (``[first prediction, last prediction]``); the reference window is the first
``REFERENCE_DAYS`` days of it (a quarter of it when it is shorter than four times that). A
window too short to hold a quarter (every prediction at one instant) gets no default reference:
the report then leaves out what compares with one and says so in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis import (
    base, calibration, canary, cube, drift, labels, loss, saturation, segments,
)
from lossboard.dashboard.analysis.filters import Filter

REFERENCE_DAYS = 7
#: A day is "worse" when its log loss exceeds the reference's by this fraction and its 95%
#: interval lies above the reference loss.
LOSS_TOLERANCE = 0.10
#: What needs a reference window, named in the report's ``notes`` when there is none.
NO_REFERENCE = ("drift vs the reference window and the findings that compare with it "
                "(loss_regression, feature_drift, activation_saturation)")
#: An activation day is saturated when its tail fraction exceeds both this and twice the
#: reference's.
ACTIVATION_TAIL_ALERT = 0.05


@dataclass(frozen=True)
class Finding:
    """One answer to "what broke, where, since when"."""

    what: str  # stable code: loss_regression, canary_fail, feature_drift, ...
    where: dict[str, Any]  # e.g. {"segment": {"region": "eu"}} or {"model_version": "v2"}
    since: str | None  # ISO-8601 UTC start of the problem
    until: str | None  # ISO-8601 UTC end when it is over, None while it lasts
    value: float | None
    baseline: float | None
    detail: str


def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


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
    report["notes"] = reference_notes(flt)
    return _deep_clean(report)


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
    # The features and the score in one call (one block sample, one resolving pass); the
    # score's row stays last, as the report has always listed it.
    features = [name for name, _ in base.columns_with_role(con, "feature")]
    both = drift.feature_drift(con, current, bins=bins, features=[*features, drift.SCORE])
    is_score = both["feature"] == drift.SCORE
    frame = pd.concat([both[~is_score], both[is_score]], ignore_index=True)
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
def _last_run_start(flags: list[bool], keys: list[Any]) -> tuple[Any, Any] | None:
    """(start, end-or-None) of the last run of True flags that is at least two long or reaches
    the end of the series; None when there is none."""
    i = len(flags) - 1
    while i >= 0:
        if flags[i]:
            j = i
            while j - 1 >= 0 and flags[j - 1]:
                j -= 1
            if i - j + 1 >= 2 or i == len(flags) - 1:
                return keys[j], (None if i == len(flags) - 1 else keys[i + 1])
            i = j - 1
        else:
            i -= 1
    return None


def findings(con: duckdb.DuckDBPyConnection, flt: Filter, report: dict[str, Any], *,
             include_drift: bool = True, cube: cube.Cube | None = None,
             activations: saturation.ActivationSaturation | None = None) -> list[Finding]:
    """What broke, where, since when — from the report's sections (docs/report-json.md).

    Rules, each on UTC days unless said: ``loss_regression`` (days whose log loss exceeds the
    reference window's by LOSS_TOLERANCE with the 95% interval above it; where = the segment
    value contributing most to the change), ``canary_fail``, ``feature_drift`` (features with
    PSI status ``act``; since = first day at ``act``; where = the segment value with the
    largest PSI), ``nonfinite_scores`` and ``exact_zero_one_scores`` (by hour),
    ``activation_saturation``, ``label_stall``. Without a reference window (``flt`` has none:
    :func:`resolve_windows` found the window too short for the default) ``loss_regression``,
    ``feature_drift`` and ``activation_saturation`` are skipped (:data:`NO_REFERENCE`).

    ``cube`` (:func:`cube.build` over ``flt`` and its reference window) and ``activations``
    (``flt``'s activation saturation by day) are what :func:`build_report` computed already;
    the findings are the same without them, only slower.
    """
    out: list[Finding] = []
    # Only log_loss is read here: auc=False skips the AUC, the one figure that sorts every row
    # (docs/benchmarks.md, "Analysis and report").
    ref_loss = (loss.overall(con, flt.reference(), min_samples=1, auc=False, cube=cube).log_loss
                if flt.has_reference else None)
    if ref_loss is not None:
        days = [d for d in report["by_day"] if d["log_loss"] is not None and not d["low_confidence"]]
        flags = [d["log_loss"] > ref_loss * (1 + LOSS_TOLERANCE) and (d["log_loss_ci_low"] or 0) > ref_loss
                 for d in days]
        run = _last_run_start(flags, [d["day"] for d in days])
        if run is not None:
            since, until = run
            window = replace(flt, start=datetime.fromisoformat(since + "T00:00:00+00:00"))
            where = _top_contributor(con, window, cube)
            cur = loss.overall(con, window, min_samples=1, auc=False, cube=cube).log_loss
            out.append(Finding("loss_regression", where, since + "T00:00:00Z",
                               None if until is None else until + "T00:00:00Z", cur, ref_loss,
                               f"log loss {cur:.4f} since {since} vs {ref_loss:.4f} in the reference window"))
    can = report.get("canary")
    if can and can["verdict"] == "fail":
        out.append(Finding("canary_fail", {"model_version": can["candidate"]}, can["start"], None,
                           can["log_loss_candidate"], can["log_loss_baseline"], can["reason"]))
    if include_drift and flt.has_reference:
        out += _drift_findings(con, flt, report["min_samples"], cube)
    out += _score_findings(con, flt, cube)
    if flt.has_reference:
        out += _activation_findings(con, flt, report["min_samples"], activations)
    stall = report["labels"]["stall"]
    if stall.get("stalled"):
        out.append(Finding("label_stall", {}, stall.get("recent_start"), None,
                           stall.get("recent_coverage"), stall.get("typical_coverage"),
                           f"label coverage {stall['recent_coverage']:.1%} in the newest mature "
                           f"hours vs {stall['typical_coverage']:.1%} before"))
    return out


def _top_contributor(con: duckdb.DuckDBPyConnection, flt: Filter,
                     cub: cube.Cube | None) -> dict[str, Any]:
    best: tuple[float, str, Any] | None = None
    for column in segments.segment_columns(con):
        change = segments.loss_change(con, flt, column, cube=cub)
        if change.empty or not change["value"].notna().any():
            continue
        top = change.iloc[0]
        if best is None or abs(top["contribution"]) > best[0]:
            best = (abs(top["contribution"]), column, top["value"])
    return {} if best is None else {"segment": {best[1]: best[2]}}


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


def _drift_findings(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
                    cub: cube.Cube | None) -> list[Finding]:
    """Features (and the score) whose daily PSI stayed at ``watch`` or above for a run of days
    reaching the end of the window (or at least two days long); most drifted first.

    One :func:`drift.drift_by_day` pass gives every day's PSI and, summed from its counts,
    each run's PSI; one more per segment column (split by its values) gives "where"."""
    current = drift_window(flt)
    names = [name for name, _ in base.columns_with_role(con, "feature")] + [drift.SCORE]
    days = drift.drift_by_day(con, current, features=names)
    daily = days.table()
    runs: dict[str, tuple[Any, Any, float]] = {}
    for name in names:
        series = daily[daily["feature"] == name]
        # PSI of a small sample is biased upwards (about (bins - 1) / n by chance alone), so a
        # day below min_samples cannot raise a drift finding. A feature without a value in
        # either window (another model's column) has every day below it.
        flags = [s in ("watch", "act") and n >= min_samples
                 for s, n in zip(series["status"], series["n_current"])]
        run = _last_run_start(flags, list(series["day"]))
        if run is None:
            continue
        psi = days.since(name, run[0]).psi  # the window from the run's first day on
        if psi is not None:
            runs[name] = (run[0], run[1], psi)
    wheres = _drift_where(con, current, runs, cub)
    out = []
    for name, (since, until, psi) in sorted(runs.items(), key=lambda kv: -kv[1][2]):
        shown = "score" if name == drift.SCORE else name
        out.append(Finding("feature_drift", {"feature": shown, **wheres[name]},
                           _iso(since) + "T00:00:00Z", None if until is None else _iso(until) + "T00:00:00Z",
                           psi, None, f"PSI {psi:.3f} on {shown} since {_iso(since)} vs the "
                           "reference window"))
    return out


def drift_window(flt: Filter) -> Filter:
    """The current window drift compares with the reference: ``flt`` starting at the end of
    its reference window when that lies inside ``(start, end)``, else ``flt`` unchanged (the
    selected window minus a reference window at its start)."""
    if flt.reference_end and flt.start and flt.end and flt.start < flt.reference_end < flt.end:
        return replace(flt, start=flt.reference_end)
    return flt


def _drift_where(con: duckdb.DuckDBPyConnection, current: Filter,
                 runs: dict[str, tuple[Any, Any, float]],
                 cub: cube.Cube | None) -> dict[str, dict[str, Any]]:
    """Per drifting feature (``runs``: feature -> (first day, end, PSI since)), the segment
    value where it drifts most since that day, if clearly more than overall (1.5 times)."""
    best: dict[str, tuple[float, str, str]] = {}
    candidates: dict[str, list[str]] = {}
    for column in segments.segment_columns(con) if runs else []:
        values = segments.excess_loss(con, current.reference(), column, cube=cub)["value"].dropna().tolist()
        if 1 < len(values) <= 12:
            candidates[column] = values
    # Each value's own reference edges and counts of the window from a run's first day: one
    # segment_psis pass (every drifting feature and candidate column) per distinct first day,
    # usually one. Per-day counts from the earliest first day (drift_by_day_splits) gave the
    # same PSI but made a key per value and day: at 10M rows, over a 7-day view, the split
    # pass took 0.66 s against 0.59 s (docs/benchmarks.md, "Dashboard pages").
    by_since: dict[Any, list[str]] = {}
    for name, (since, _, _) in runs.items():
        by_since.setdefault(since, []).append(name)
    for since, names in by_since.items() if candidates else ():
        window = current
        if current.start is not None:
            midnight = datetime.combine(since, datetime.min.time()).replace(tzinfo=current.start.tzinfo)
            window = replace(current, start=max(current.start, midnight))
        psis = drift.segment_psis(con, window, features=names, columns=list(candidates))
        for column, values in candidates.items():
            for name in names:
                frame = psis[column][name].set_index("value")["psi"]
                for value in values:
                    psi = frame.get(value)
                    if psi is not None and not pd.isna(psi) and (
                            name not in best or psi > best[name][0]):
                        best[name] = (float(psi), column, value)
    out: dict[str, dict[str, Any]] = {}
    for name, (_, _, overall) in runs.items():
        top = best.get(name)
        out[name] = ({} if top is None or top[0] < 1.5 * overall
                     else {"segment": {top[1]: top[2]}, "segment_psi": top[0]})
    return out


def _score_findings(con: duckdb.DuckDBPyConnection, flt: Filter,
                    cub: cube.Cube | None) -> list[Finding]:
    hours = saturation.score_saturation(con, flt, bucket="hour", min_samples=1, cube=cub).by_bucket
    out = []
    for what, count, label in (("nonfinite_scores", hours["n_nan"] + hours["n_posinf"] + hours["n_neginf"],
                                "NaN/inf scores"),
                               ("exact_zero_one_scores", hours["n_exact_0"] + hours["n_exact_1"],
                                "scores of exactly 0 or 1")):
        hit = hours[count.fillna(0) > 0]
        if hit.empty:
            continue
        total = int(count.fillna(0).sum())
        last_end = hit["bucket_end"].iloc[-1]
        ongoing = last_end >= hours["bucket_end"].iloc[-1]
        out.append(Finding(what, {}, _iso(hit["bucket_start"].iloc[0]), None if ongoing else _iso(last_end),
                           float(total), 0.0, f"{total:,} {label} in {len(hit)} hour(s)"))
    return out


def _activation_findings(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
                         activations: saturation.ActivationSaturation | None) -> list[Finding]:
    """``activations``: :func:`saturation.activation_saturation` of ``flt`` by day with
    ``min_samples``, when the caller has it already (build_report)."""
    ref = saturation.activation_saturation(con, flt.reference(), bucket="day", min_samples=1).overall
    if activations is None:
        activations = saturation.activation_saturation(con, flt, bucket="day", min_samples=min_samples)
    cur = activations.by_bucket
    out = []
    for _, r in ref.iterrows():
        base_frac = r["frac_tail"] if r["frac_tail"] is not pd.NA else 0.0
        series = cur[cur["column"] == r["column"]]
        flags = [(f is not pd.NA) and not low and f > max(ACTIVATION_TAIL_ALERT, 2 * base_frac)
                 for f, low in zip(series["frac_tail"], series["low_confidence"])]
        run = _last_run_start(flags, list(series["bucket_start"]))
        if run is None:
            continue
        since, until = run
        now = series[series["bucket_start"] >= since]["frac_tail"].mean()
        out.append(Finding("activation_saturation", {"activation": r["column"]}, _iso(since),
                           _iso(until), float(now), float(base_frac),
                           f"{float(now):.1%} of |{r['column']}| > 0.9 since {_iso(since)[:10]} "
                           f"vs {float(base_frac):.1%} in the reference window"))
    return out
