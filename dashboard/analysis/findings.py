"""Findings: what broke, where, since when — read from a report's sections.

:func:`findings` turns the sections of ``report.build_report`` into a short list of
:class:`Finding` (docs/report-json.md, "findings", has the rules). Nothing here scans rows
for the window itself: the report's sections and its cube did that. Rows are read only to
answer "since when" for a problem that was already going on when the window began:

* every rule that judges a series (days, hours) finds the *last run* of bad buckets; a bucket
  that cannot be judged (too few samples) is *unknown* and neither starts nor breaks a run,
  so a quiet night does not reset an incident's start;
* when that run reaches back to the window's first bucket, the same rule is applied to the
  :data:`LOOKBACK_DAYS` before the window (never into the reference window) and the run
  extended: ``since`` is then the true start, before the window's, and
  ``since_before_window`` is true. When the run still reaches the start of the look-back,
  ``since_is_lookback_limit`` is true too (it began then or earlier);
* figures (``value``) stay those of the window: from ``max(since, window start)`` on.

A comparison with the reference window needs reference data: without any (e.g. a version
that did not exist yet then), no finding claims "vs 0%": ``loss_regression`` and
``feature_drift`` are left out, and ``activation_saturation`` is judged against its absolute
floor alone and says "no reference data".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis import base, canary, drift, labels, loss, saturation, segments
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.monitoring_config import DEFAULT_LOOKBACK_MINUTES

if TYPE_CHECKING:  # cube imports loss; only the type is needed here
    from lossboard.dashboard.analysis.cube import Cube

#: A day is "worse" when its log loss exceeds the reference's by this fraction and its 95%
#: interval lies above the reference loss.
LOSS_TOLERANCE = 0.10
#: An activation day is saturated when its tail fraction exceeds both this and twice the
#: reference's (this alone when the reference window holds no value of the activation).
ACTIVATION_TAIL_ALERT = 0.05
#: How far before a window's start a finding looks for the start of a problem that was
#: already going on when the window began (the alerts' default ``[alerts] lookback``).
LOOKBACK_DAYS = DEFAULT_LOOKBACK_MINUTES // (24 * 60)

_UTC = timezone.utc
#: A judged series: flags (True bad, False good, None unknown), bucket starts, bucket ends.
Series = tuple[list[bool | None], list[datetime], list[datetime]]


@dataclass(frozen=True)
class Finding:
    """One answer to "what broke, where, since when"."""

    what: str  # stable code: loss_regression, canary_fail, feature_drift, ...
    where: dict[str, Any]  # e.g. {"segment": {"region": "eu"}} or {"model_version": "v2"}
    since: str | None  # ISO-8601 UTC start of the problem (may precede the window's start)
    until: str | None  # ISO-8601 UTC end when it is over, None while it lasts
    value: float | None
    baseline: float | None
    detail: str
    #: The problem was already going on when the window began: ``since`` is before the
    #: window's start (found by looking back up to LOOKBACK_DAYS).
    since_before_window: bool = False
    #: It held throughout the look-back too: it began at ``since`` or earlier.
    since_is_lookback_limit: bool = False


def iso(value: Any) -> str | None:
    """ISO-8601 text: datetimes in UTC with ``Z``, dates as ``YYYY-MM-DD``; None for NA."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _midnight(day: date | str) -> datetime:
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    return datetime(day.year, day.month, day.day, tzinfo=_UTC)


def _moment(value: Any) -> datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _float(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """The last run of bad buckets of a series (:func:`last_run`)."""

    first: int  # index of its first bad bucket
    last: int  # index of its last bad bucket
    ongoing: bool  # no good bucket after it
    from_series_start: bool  # no good bucket before it: it may have begun earlier


def last_run(flags: Sequence[bool | None]) -> Run | None:
    """The last run of True flags that holds at least two or is ongoing; None if none.

    ``flags`` per bucket in time order: True bad, False good, None unknown (too few samples).
    An unknown bucket neither breaks a run nor starts one; a run is ongoing when no False
    follows it. Example: ``[False, True, None, True, None]`` -> first 1, last 3, ongoing.

    Variants of the same rule live in alerts._trailing_run (the run must end at the last
    step), alerts._drift_since (days, numpy), labels.stall_onset and _score_findings; they
    differ in what ends a run and in the two-bucket minimum, so merging them needs care.
    """
    i = len(flags) - 1
    while i >= 0:
        if flags[i] is None or not flags[i]:
            i -= 1
            continue
        first, n_bad, k = i, 1, i - 1
        while k >= 0 and (flags[k] is None or flags[k]):
            if flags[k] is not None:
                first, n_bad = k, n_bad + 1
            k -= 1
        ongoing = all(f is None or f for f in flags[i + 1:])
        if n_bad >= 2 or ongoing:
            return Run(first, i, ongoing, k < 0)
        i = k - 1
    return None


def _flag(bad: bool | None) -> bool | None:
    return None if bad is None else bool(bad)


@dataclass(frozen=True)
class _Onset:
    """A run, extended before the window when it reached the window's start."""

    since: datetime
    until: datetime | None
    before_window: bool
    at_limit: bool
    first_in_window: int  # index of the first bucket of the window's series in the run


def lookback_range(flt: Filter, start: datetime) -> tuple[datetime, datetime] | None:
    """``[lo, start)``: the LOOKBACK_DAYS before ``start``, cut at the end of a reference
    window that lies (partly) in them (its days are the baseline, not the incident); None
    when nothing is left."""
    lo = start - timedelta(days=LOOKBACK_DAYS)
    ref_start, ref_end = flt.reference_start, flt.reference_end
    if ref_end is not None and (ref_start is None or ref_start < start) and ref_end > lo:
        lo = ref_end
    return None if lo >= start else (lo, start)


def _onset(flags: list[bool | None], starts: list[datetime], ends: list[datetime],
           window_start: datetime,
           earlier: Callable[[datetime, datetime], Series], flt: Filter) -> _Onset | None:
    """The last run of ``flags`` (buckets ``[starts, ends)``), extended with ``earlier(lo,
    hi)``'s buckets of the look-back when it reaches the series' start."""
    run = last_run(flags)
    if run is None:
        return None
    n_before = 0
    # A run from the window's start whose days before are the reference window cannot be
    # looked back on: it began then *or earlier*, which the finding must say (a bare "since
    # <window start>" read as the incident's start).
    blocked = False
    if run.from_series_start and window_start is not None:
        span = lookback_range(flt, window_start)
        blocked = span is None
        more = earlier(*span) if span is not None else ([], [], [])
        if more[0]:
            n_before = len(more[0])
            flags, starts, ends = more[0] + flags, more[1] + starts, more[2] + ends
            run = last_run(flags)
    assert run is not None  # the window's run is still there, maybe longer
    before = run.first < n_before
    return _Onset(since=starts[run.first], until=None if run.ongoing else ends[run.last],
                  before_window=before, at_limit=(before and run.from_series_start) or blocked,
                  first_in_window=max(run.first - n_before, 0))


def since_phrase(since: datetime, before_window: bool, at_limit: bool,
                 window_start: datetime | None, *, fmt: str = "%Y-%m-%d") -> str:
    """"since <when>" for a finding's detail, saying when it began before the window."""
    when = since.strftime(fmt)
    if at_limit and not before_window:
        return (f"since {when} or earlier (already on when this window began; the days before "
                "it are the reference window)")
    if at_limit:
        return (f"since before {when} (already on throughout the {LOOKBACK_DAYS} days looked "
                "back before this window)")
    if before_window and window_start is not None:
        return f"since {when} (before this window, which starts {window_start:%Y-%m-%d %H:%M})"
    return f"since {when}"


# --------------------------------------------------------------------------- findings
def findings(con: duckdb.DuckDBPyConnection, flt: Filter, report: dict[str, Any], *,
             include_drift: bool = True, cube: Cube | None = None,
             activations: saturation.ActivationSaturation | None = None) -> list[Finding]:
    """What broke, where, since when — from the report's sections (docs/report-json.md).

    Rules, each on UTC days unless said: ``loss_regression`` (days whose log loss exceeds the
    reference window's by LOSS_TOLERANCE with the 95% interval above it; where = the segment
    value contributing most to the change), ``canary_fail`` (since the pair's first common
    prediction in the model's history), ``feature_drift`` (daily PSI at ``watch`` or above;
    where = the segment value drifting most), ``nonfinite_scores`` and
    ``exact_zero_one_scores`` (by hour), ``activation_saturation``, ``label_stall`` (since
    label arrivals dropped: labels.stall_onset). Without a reference window (``flt`` has
    none: report.resolve_windows found the window too short for the default)
    ``loss_regression``, ``feature_drift`` and ``activation_saturation`` are skipped; with an
    empty one, see the module docstring. "Since when" looks back before the window (module
    docstring).

    ``cube`` (:func:`cube.build` over ``flt`` and its reference window) and ``activations``
    (``flt``'s activation saturation by day) are what the report computed already; the
    findings are the same without them, only slower.
    """
    out: list[Finding] = []
    min_samples = report["min_samples"]
    # Only log_loss is read here: auc=False skips the AUC, the one figure that sorts every row
    # (docs/benchmarks.md, "Analysis and report").
    ref_loss = (loss.overall(con, flt.reference(), min_samples=1, auc=False, cube=cube).log_loss
                if flt.has_reference else None)
    if ref_loss is not None:
        out += _loss_findings(con, flt, report, ref_loss, min_samples, cube)
    out += _canary_findings(con, flt, report.get("canary"))
    if include_drift and flt.has_reference:
        out += _drift_findings(con, flt, min_samples, cube)
    out += _score_findings(con, flt, cube)
    if flt.has_reference:
        out += _activation_findings(con, flt, min_samples, activations)
    out += _stall_findings(flt, report["labels"]["stall"])
    return out


def _loss_findings(con: duckdb.DuckDBPyConnection, flt: Filter, report: dict[str, Any],
                   ref_loss: float, min_samples: int, cub: Cube | None) -> list[Finding]:
    def worse(rows: list[dict[str, Any]]) -> list[bool | None]:
        # Low-confidence days (and days without a labelled row) are unknown.
        return [None if d["log_loss"] is None or d["low_confidence"] else
                d["log_loss"] > ref_loss * (1 + LOSS_TOLERANCE)
                and (d["log_loss_ci_low"] or 0) > ref_loss for d in rows]

    def earlier(lo: datetime, hi: datetime) -> Series:
        frame = loss.by_bucket(con, replace(flt, start=lo, end=hi), bucket="day",
                               min_samples=min_samples, auc=False)
        rows = [{"log_loss": _float(r["log_loss"]), "log_loss_ci_low": _float(r["log_loss_ci_low"]),
                 "low_confidence": bool(r["low_confidence"])} for _, r in frame.iterrows()]
        return (worse(rows), [_moment(t) for t in frame["bucket_start"]],
                [_moment(t) for t in frame["bucket_end"]])

    days = report["by_day"]
    starts = [_midnight(d["day"]) for d in days]
    onset = _onset(worse(days), starts, [s + timedelta(days=1) for s in starts], flt.start,
                   earlier, flt)
    if onset is None:
        return []
    window = replace(flt, start=max(onset.since, flt.start))
    where = _top_contributor(con, window, cub)
    cur = loss.overall(con, window, min_samples=1, auc=False, cube=cub).log_loss
    phrase = since_phrase(onset.since, onset.before_window, onset.at_limit, flt.start)
    figure = " in this window" if onset.before_window else ""
    return [Finding("loss_regression", where, iso(onset.since), iso(onset.until), cur, ref_loss,
                    f"log loss {cur:.4f}{figure} vs {ref_loss:.4f} in the reference window; "
                    f"worse {phrase}", onset.before_window, onset.at_limit)]


def _top_contributor(con: duckdb.DuckDBPyConnection, flt: Filter,
                     cub: Cube | None) -> dict[str, Any]:
    best: tuple[float, str, Any] | None = None
    for column in segments.segment_columns(con):
        change = segments.loss_change(con, flt, column, cube=cub)
        if change.empty or not change["value"].notna().any():
            continue
        top = change.iloc[0]
        if best is None or abs(top["contribution"]) > best[0]:
            best = (abs(top["contribution"]), column, top["value"])
    return {} if best is None else {"segment": {best[1]: best[2]}}


def _canary_findings(con: duckdb.DuckDBPyConnection, flt: Filter,
                     can: dict[str, Any] | None) -> list[Finding]:
    """``canary_fail``: the report's verdict over the window; since = the first prediction
    both versions served in the model's history (the candidate's rollout, usually), which no
    window moves."""
    if not can or can["verdict"] != "fail":
        return []
    first = canary.version_first_seen(con, flt.model)
    pair = [first.get(can["baseline"]), first.get(can["candidate"])]
    since = max(t for t in pair if t is not None) if any(pair) else None
    start = _parse(can["start"])
    if since is None or (start is not None and since > start):
        since = start
    before = since is not None and flt.start is not None and since < flt.start
    detail = can["reason"]
    if before:
        detail += (f"; {can['candidate']} has served beside {can['baseline']} "
                   f"{since_phrase(since, True, False, flt.start, fmt='%Y-%m-%d %H:%M')}")
    return [Finding("canary_fail", {"model_version": can["candidate"]}, iso(since), None,
                    can["log_loss_candidate"], can["log_loss_baseline"], detail, before)]


def drift_window(flt: Filter) -> Filter:
    """The current window drift compares with the reference: ``flt`` starting at the end of
    its reference window when that lies inside ``(start, end)``, else ``flt`` unchanged (the
    selected window minus a reference window at its start)."""
    if flt.reference_end and flt.start and flt.end and flt.start < flt.reference_end < flt.end:
        return replace(flt, start=flt.reference_end)
    return flt


def _drift_flags(series: pd.DataFrame, min_samples: int) -> list[bool | None]:
    # PSI of a small sample is biased upwards (about (bins - 1) / n by chance alone), so a day
    # below min_samples is unknown: it cannot raise a drift finding, nor end one. A feature
    # without a value in either window (another model's column) is unknown every day.
    return [None if n < min_samples or s == "no_data" else s in ("watch", "act")
            for s, n in zip(series["status"], series["n_current"])]


def _drift_findings(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
                    cub: Cube | None) -> list[Finding]:
    """Features (and the score) whose daily PSI stayed at ``watch`` or above for a run of days
    reaching the end of the window (or at least two days long); most drifted first.

    One :func:`drift.drift_by_day` pass gives every day's PSI and, summed from its counts,
    each run's PSI; one more per segment column (split by its values) gives "where", and one
    over the look-back for the features whose run reaches the window's start."""
    current = drift_window(flt)
    names = [name for name, _ in base.columns_with_role(con, "feature")] + [drift.SCORE]
    days = drift.drift_by_day(con, current, features=names)
    daily = days.table()
    series = {name: daily[daily["feature"] == name] for name in names}
    early: dict[tuple[datetime, datetime], pd.DataFrame] = {}
    reaching = [n for n in names if (r := last_run(_drift_flags(series[n], min_samples)))
                and r.from_series_start]

    def earlier(name: str) -> Callable[[datetime, datetime], Series]:
        def get(lo: datetime, hi: datetime) -> Series:
            if (lo, hi) not in early:  # one pass for every feature that needs it
                early[(lo, hi)] = drift.drift_by_day(con, replace(current, start=lo, end=hi),
                                                     features=reaching).table()
            part = early[(lo, hi)]
            part = part[part["feature"] == name]
            starts = [_midnight(d) for d in part["day"]]
            return _drift_flags(part, min_samples), starts, [s + timedelta(days=1) for s in starts]
        return get

    onsets: dict[str, _Onset] = {}
    runs: dict[str, tuple[Any, Any, float]] = {}
    for name in names:
        part = series[name]
        starts = [_midnight(d) for d in part["day"]]
        ends = [s + timedelta(days=1) for s in starts]
        onset = _onset(_drift_flags(part, min_samples), starts, ends, current.start,
                       earlier(name), current)
        if onset is None:
            continue
        # The PSI of the window from the run's first day on (from the window's first day
        # when the run began before it).
        first_day = list(part["day"])[onset.first_in_window]
        psi = days.since(name, first_day).psi
        if psi is not None:
            onsets[name] = onset
            runs[name] = (first_day, onset.until, psi)
    wheres = _drift_where(con, current, runs, cub)
    out = []
    for name, (_, _, psi) in sorted(runs.items(), key=lambda kv: -kv[1][2]):
        onset = onsets[name]
        shown = "score" if name == drift.SCORE else name
        text = "the score" if name == drift.SCORE else shown
        phrase = since_phrase(onset.since, onset.before_window, onset.at_limit, flt.start)
        figure = " in this window" if onset.before_window else ""
        out.append(Finding("feature_drift", {"feature": shown, **wheres[name]}, iso(onset.since),
                           iso(onset.until), psi, None,
                           f"PSI {psi:.3f} on {text}{figure} vs the reference window; drifted "
                           f"{phrase}", onset.before_window, onset.at_limit))
    return out


def _drift_where(con: duckdb.DuckDBPyConnection, current: Filter,
                 runs: dict[str, tuple[Any, Any, float]],
                 cub: Cube | None) -> dict[str, dict[str, Any]]:
    """Per drifting feature (``runs``: feature -> (first day in the window, end, PSI since)),
    the segment value where it drifts most since that day, if clearly more than overall (1.5
    times)."""
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
                    cub: Cube | None) -> list[Finding]:
    """``nonfinite_scores`` / ``exact_zero_one_scores``: from the first to the last hour
    holding such scores; when the first is the window's first hour, the unbroken hours with
    them just before the window (hours without predictions bridged) move ``since`` back."""
    hours = saturation.score_saturation(con, flt, bucket="hour", min_samples=1, cube=cub).by_bucket
    kinds = (("nonfinite_scores", ("n_nan", "n_posinf", "n_neginf"), "NaN/inf scores"),
             ("exact_zero_one_scores", ("n_exact_0", "n_exact_1"), "scores of exactly 0 or 1"))
    earlier: pd.DataFrame | None = None
    out = []
    for what, columns, label in kinds:
        count = sum(hours[c].fillna(0) for c in columns)
        hit = hours[count > 0]
        if hit.empty:
            continue
        total = int(count.sum())
        last_end = hit["bucket_end"].iloc[-1]
        ongoing = last_end >= hours["bucket_end"].iloc[-1]
        since = _moment(hit["bucket_start"].iloc[0])
        before = at_limit = False
        span = lookback_range(flt, flt.start) if flt.start is not None else None
        if span is not None and hit.index[0] == hours.index[0] and since <= flt.start:
            if earlier is None:
                earlier = saturation.score_saturation(con, replace(flt, start=span[0], end=span[1]),
                                                      bucket="hour", min_samples=1).by_bucket
            back = sum(earlier[c].fillna(0) for c in columns)
            n_back = 0
            for i in range(len(earlier) - 1, -1, -1):
                if back.iloc[i] <= 0:
                    break
                n_back += 1
            if n_back:
                since, before = _moment(earlier["bucket_start"].iloc[len(earlier) - n_back]), True
                at_limit = n_back == len(earlier)
        detail = f"{total:,} {label} in {len(hit)} hour(s)"
        if before:
            detail += (" of this window; "
                       + since_phrase(since, True, at_limit, flt.start, fmt="%Y-%m-%d %H:%M"))
        out.append(Finding(what, {}, iso(since), None if ongoing else iso(last_end),
                           float(total), 0.0, detail, before, at_limit))
    return out


def _activation_findings(con: duckdb.DuckDBPyConnection, flt: Filter, min_samples: int,
                         activations: saturation.ActivationSaturation | None) -> list[Finding]:
    """``activations``: :func:`saturation.activation_saturation` of ``flt`` by day with
    ``min_samples``, when the caller has it already (build_report)."""
    ref = saturation.activation_saturation(con, flt.reference(), bucket="day",
                                           min_samples=1).overall
    if activations is None:
        activations = saturation.activation_saturation(con, flt, bucket="day",
                                                       min_samples=min_samples)
    cur = activations.by_bucket
    ref_frac = {r["column"]: _float(r["frac_tail"]) for _, r in ref.iterrows()}
    out = []
    for column in activations.columns:
        base_frac = ref_frac.get(column)
        limit = max(ACTIVATION_TAIL_ALERT, 2 * (base_frac or 0.0))

        def flags(frame: pd.DataFrame) -> list[bool | None]:
            # A low-confidence day is unknown: it neither starts nor ends a run.
            return [None if pd.isna(f) or low else bool(f > limit)
                    for f, low in zip(frame["frac_tail"], frame["low_confidence"])]

        def earlier(lo: datetime, hi: datetime, column: str = column) -> Series:
            part = saturation.activation_saturation(con, replace(flt, start=lo, end=hi),
                                                    bucket="day", columns=[column],
                                                    min_samples=min_samples).by_bucket
            return (flags(part), [_moment(t) for t in part["bucket_start"]],
                    [_moment(t) for t in part["bucket_end"]])

        series = cur[cur["column"] == column]
        onset = _onset(flags(series), [_moment(t) for t in series["bucket_start"]],
                       [_moment(t) for t in series["bucket_end"]], flt.start, earlier, flt)
        if onset is None:
            continue
        # The share over the window's days from since on (pooled: busy days weigh more).
        days = series.iloc[onset.first_in_window:]
        n_finite = int(days["n_finite"].sum())
        now = int(days["n_tail"].sum()) / n_finite if n_finite else math.nan
        phrase = since_phrase(onset.since, onset.before_window, onset.at_limit, flt.start)
        reference = ("no reference data (the reference window holds no value of it for this "
                     f"filter; judged against {ACTIVATION_TAIL_ALERT:.0%} alone)"
                     if base_frac is None else f"{base_frac:.1%} in the reference window")
        figure = " in this window" if onset.before_window else ""
        out.append(Finding("activation_saturation", {"activation": column}, iso(onset.since),
                           iso(onset.until), now, base_frac,
                           f"{now:.1%} of |{column}| > 0.9{figure} vs {reference}; saturated "
                           f"{phrase}", onset.before_window, onset.at_limit))
    return out


def _stall_findings(flt: Filter, stall: dict[str, Any]) -> list[Finding]:
    """``label_stall``: since = the hour label arrivals dropped (labels.stall_onset, looked
    for up to ONSET_LOOKBACK_HOURS before the window); the judged span's start when arrivals
    show no drop (delivery already back, or too few labels an hour to tell)."""
    if not stall.get("stalled"):
        return []
    onset = stall.get("onset")
    since_text = onset or stall.get("recent_start")
    since = _parse(since_text)
    before = since is not None and flt.start is not None and since < flt.start
    search = (None if flt.start is None
              else flt.start - timedelta(hours=labels.ONSET_LOOKBACK_HOURS))
    at_limit = before and onset is not None and search is not None and since <= search
    detail = (f"label coverage {stall['recent_coverage']:.1%} in the newest mature hours vs "
              f"{stall['typical_coverage']:.1%} before")
    if onset is not None and since is not None:
        detail += "; label arrivals down " + since_phrase(since, before, at_limit, flt.start,
                                                            fmt="%Y-%m-%d %H:%M")
    return [Finding("label_stall", {}, since_text, None, stall.get("recent_coverage"),
                    stall.get("typical_coverage"), detail, before, at_limit)]
