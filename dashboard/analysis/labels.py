"""Labels: how many predictions have one, how late they come, and which windows are mature.

Labels arrive hours or days after the prediction, so a recent window always looks
under-labelled; its loss is computed from the few fast labels and is neither good nor bad yet.
This module measures the lag, flags buckets old enough for their labels to be in (*mature*),
and detects a *label stall*: mature buckets whose labels never came. docs/metrics/labels.md has
every definition; in short:

* a prediction is **labelled** when a *usable* label exists for it: a label row with its
  request_id whose model is the prediction's model or NULL (a label without a model applies to
  every model), and whose value is valid for the model (``'0'`` / ``'1'`` for a binary model, one
  of the registered classes for a multiclass one) — the rule of ``base.labelled_rows``. When a
  prediction has both a model-specific and a model-less usable label, the model-specific one is
  *the* label (its time and source are used), so each prediction counts once;
* **lag** = ``label_ts - ts`` in hours, only for labels whose ``label_ts_source = 'file'``:
  labels that came without a time got the ingest's start time, which says when we loaded the
  file, not when the outcome was known; they are counted (``n_ingest_time``), not used;
* quantiles are DuckDB's ``quantile_cont``: linear interpolation between order statistics at
  position ``q (n - 1)`` (Hyndman & Fan type 7), which is numpy.quantile's default
  ``method='linear'``;
* a bucket is **mature** when ``as_of - bucket_end >= lag p90`` with ``as_of`` the Filter's
  end if set, else the newest prediction in the database (the Filter's own as-of rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis.base import (
    DEFAULT_MIN_SAMPLES,
    model_info,
    predictions_columns,
    resolve_model,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.monitoring_config import DEFAULT_LOOKBACK_MINUTES
from lossboard.dashboard.analysis.saturation import (
    BUCKET_US,
    bucket_bounds_sql,
    bucket_us_sql,
    check_bucket,
    run_query,
    typed,
)
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

if TYPE_CHECKING:  # cube imports loss, which imports saturation, which this module imports
    from lossboard.dashboard.analysis.cube import Cube

_US_PER_HOUR = 3_600_000_000

COVERAGE_COLUMNS = (
    "bucket_start", "bucket_end", "n_predictions", "n_labelled", "coverage", "n_lag",
    "n_ingest_time", "lag_p50_hours", "lag_p90_hours", "lag_p99_hours", "age_hours",
    "maturity_lag_hours", "mature", "low_confidence",
)


def label_relation(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                   labelled_only: bool = False) -> tuple[str, dict[str, Any]]:
    """One row per prediction of the filter: ``ts, request_id, labelled, label, label_ts,
    label_ts_source, lag_hours`` (the label columns NULL when unlabelled).

    ``lag_hours = (label_ts - ts)`` in hours at microsecond resolution, for every usable label
    (callers restrict to ``label_ts_source = 'file'``). No join: the ingest copies each
    prediction's label on it. ``labelled_only``: only the rows with a usable label, chosen in
    the WHERE clause (for callers that read no unlabelled row, as :func:`label_lag`: the
    unlabelled rows are then never read into the CASEs, 0.37 -> 0.23 s at 10M rows).
    """
    flt = resolve_model(con, flt)
    info = model_info(con, flt.model)
    where = flt.where(predictions_columns(con), alias="p")
    params: dict[str, Any] = dict(where.params)
    if info.task == "binary":
        usable = "p.label IN ('0', '1')"
    else:
        params["lr_classes"] = list(info.classes)
        usable = "list_contains($lr_classes, p.label)"
    # The ingest keeps each prediction's label on it (ingest/schema.py LABEL_COPY_COLUMNS);
    # a label that is not usable for the model counts as none.
    if labelled_only:
        inner = (f"SELECT p.ts, p.request_id, p.label, p.label_ts, p.label_ts_source "
                 f"FROM predictions p WHERE {where.sql} AND {usable}")
    else:
        inner = f"""SELECT p.ts, p.request_id,
         CASE WHEN {usable} THEN p.label END AS label,
         CASE WHEN {usable} THEN p.label_ts END AS label_ts,
         CASE WHEN {usable} THEN p.label_ts_source END AS label_ts_source
  FROM predictions p
  WHERE {where.sql}"""
    sql = f"""
SELECT ts, request_id, label IS NOT NULL AS labelled, label, label_ts, label_ts_source,
       (epoch_us(label_ts) - epoch_us(ts)) / {_US_PER_HOUR}.0 AS lag_hours
FROM ({inner})"""
    return sql, params


def _as_of(con: duckdb.DuckDBPyConnection, flt: Filter) -> datetime | None:
    if flt.end is not None:
        return flt.end
    return con.execute("SELECT max(ts) FROM predictions").fetchone()[0]


# --------------------------------------------------------------------------- lag
@dataclass(frozen=True)
class LabelLag:
    """Label lag over the filter's labelled predictions (hours; None when ``n = 0``).

    ``n``: labels with a file-given time (the lag sample); ``n_ingest_time``: labels timed at
    ingest, left out of the quantiles; ``n_before_prediction``: of the ``n``, those with
    ``label_ts < ts`` (negative lag: a clock or join problem upstream) — they stay in the
    quantiles, as recorded; ``frac_before_prediction = n_before_prediction / n``.
    """

    p50_hours: float | None
    p90_hours: float | None
    p99_hours: float | None
    n: int
    n_ingest_time: int
    n_before_prediction: int
    frac_before_prediction: float | None


def label_lag(con: duckdb.DuckDBPyConnection, flt: Filter) -> LabelLag:
    """Quantiles p50 / p90 / p99 of ``label_ts - ts`` (hours) over the filter's predictions.

    Only usable labels with ``label_ts_source = 'file'``; quantiles by ``quantile_cont``
    (= ``numpy.quantile(lags, q)`` with the default ``method='linear'``). Lags are
    right-censored: in a window ending now, slow labels have not arrived yet, so the lag of a
    recent window is biased low; measure it over a window that is weeks old.

    Example: lags [1, 2, 3, 10] h give p50 = 2.5, p90 = 7.9, p99 = 9.79.
    """
    # Every row it reads is labelled: the unlabelled ones are left out in the WHERE clause.
    src, params = label_relation(con, flt, labelled_only=True)
    sql = f"""
SELECT quantile_cont(CASE WHEN label_ts_source = 'file' THEN lag_hours END, [0.5, 0.9, 0.99]) AS q,
       count(CASE WHEN labelled AND label_ts_source = 'file' THEN 1 END) AS n,
       count(CASE WHEN labelled AND label_ts_source = 'ingest_time' THEN 1 END) AS n_ingest_time,
       count(CASE WHEN label_ts_source = 'file' AND label_ts < ts THEN 1 END) AS n_before
FROM ({src})"""
    try:
        q, n, n_ingest, n_before = con.execute(sql, params).fetchone()
    except duckdb.Error as exc:
        raise QueryError(f"computing label lag: {exc}") from exc
    q = q or [None, None, None]
    return LabelLag(p50_hours=q[0], p90_hours=q[1], p99_hours=q[2], n=n,
                    n_ingest_time=n_ingest, n_before_prediction=n_before,
                    frac_before_prediction=n_before / n if n else None)


# --------------------------------------------------------------------------- coverage
def coverage(con: duckdb.DuckDBPyConnection, flt: Filter, *, bucket: str = "day",
             lag_p90_hours: float | None = None,
             min_samples: int = DEFAULT_MIN_SAMPLES, lag_quantiles: bool = True,
             cube: Cube | None = None) -> pd.DataFrame:
    """Label coverage per UTC bucket, with the bucket's lag and whether it is mature.

    One row per bucket holding at least one prediction of the filter, by ``bucket_start``:

    * ``bucket_start``, ``bucket_end = bucket_start + 1 hour | 1 day``;
    * ``n_predictions``; ``n_labelled`` (a usable label exists); ``coverage =
      n_labelled / n_predictions`` (unweighted; 0.0 for a bucket without labels);
    * ``n_lag`` file-timed labels, ``n_ingest_time`` ingest-timed ones; ``lag_p50_hours``,
      ``lag_p90_hours``, ``lag_p99_hours`` over the ``n_lag`` (``<NA>`` when ``n_lag = 0``);
    * ``age_hours = (as_of - bucket_end)`` in hours, ``as_of`` = the Filter's end, else the
      newest prediction in the database;
    * ``maturity_lag_hours``: the lag p90 the maturity rule uses, ``lag_p90_hours`` if given,
      else :func:`label_lag`'s p90 over the same filter (computed in the same scan); ``mature = age_hours >= maturity_lag_hours``
      (``<NA>`` when there is no lag estimate: nothing to judge by);
    * ``low_confidence = n_predictions < min_samples``.

    ``lag_quantiles=False`` with ``lag_p90_hours`` given leaves the three lag quantiles
    ``<NA>``: a quantile per bucket is most of this function's cost (:func:`label_stall` reads
    only counts and maturity). Then the counts can come from ``cube`` (cube.py) when it covers
    the Filter.

    Example: a day bucket ending 50 h before as-of with lag p90 42 h is mature; its coverage
    is trustworthy. One ending 10 h before as-of is not, whatever its coverage.
    """
    return _coverage(con, flt, bucket=bucket, lag_p90_hours=lag_p90_hours,
                     min_samples=min_samples, lag_quantiles=lag_quantiles, cube=cube)[0]


def coverage_and_lag(con: duckdb.DuckDBPyConnection, flt: Filter, *, bucket: str = "day",
                     min_samples: int = DEFAULT_MIN_SAMPLES) -> tuple[pd.DataFrame, LabelLag]:
    """``(coverage(con, flt, bucket=bucket, min_samples=min_samples), label_lag(con, flt))``
    from one scan: coverage's whole-filter grouping set *is* label_lag's quantile over the
    same rows, so a caller that needs both (the On-call page) pays for one exact quantile
    pass, not two (0.23 s of lag quantile at 10M rows, docs/benchmarks.md)."""
    frame, overall = _coverage(con, flt, bucket=bucket, lag_p90_hours=None,
                               min_samples=min_samples, lag_quantiles=True, cube=None)
    if overall.empty:  # no prediction at all: label_lag's answer over no rows
        return frame, LabelLag(None, None, None, 0, 0, 0, None)
    row = overall.iloc[0]

    def num(value: Any) -> float | None:
        return None if value is pd.NA or pd.isna(value) else float(value)

    n, n_before = int(row["n_lag"]), int(row["n_before"])
    return frame, LabelLag(p50_hours=num(row["lag_p50_hours"]), p90_hours=num(row["lag_p90_hours"]),
                           p99_hours=num(row["lag_p99_hours"]), n=n,
                           n_ingest_time=int(row["n_ingest_time"]), n_before_prediction=n_before,
                           frac_before_prediction=n_before / n if n else None)


def _coverage(con: duckdb.DuckDBPyConnection, flt: Filter, *, bucket: str,
              lag_p90_hours: float | None, min_samples: int, lag_quantiles: bool,
              cube: Cube | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`coverage`'s frame and its whole-filter row (with ``n_before``: file-timed labels
    earlier than their prediction, counted only in the row scan)."""
    check_bucket(bucket)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
        raise QueryError(f"min_samples must be a non-negative integer, got {min_samples!r}")
    if lag_p90_hours is not None and not (isinstance(lag_p90_hours, (int, float))
                                          and math.isfinite(lag_p90_hours)):
        raise QueryError(f"lag_p90_hours must be a finite number of hours, got {lag_p90_hours!r}")
    quantiles = ("quantile_cont(CASE WHEN label_ts_source = 'file' THEN lag_hours END, [0.5, 0.9, 0.99])"
                 if lag_quantiles or lag_p90_hours is None else "CAST(NULL AS DOUBLE[])")
    counts = ("count(*) AS n_predictions, count(CASE WHEN labelled THEN 1 END) AS n_labelled, "
              "count(CASE WHEN labelled AND label_ts_source = 'file' THEN 1 END) AS n_lag, "
              "count(CASE WHEN labelled AND label_ts_source = 'ingest_time' THEN 1 END) AS n_ingest_time, "
              "count(CASE WHEN label_ts_source = 'file' AND label_ts < ts THEN 1 END) AS n_before")
    if cube is not None and "quantile" not in quantiles and cube.covers(resolve_model(con, flt)):
        # The same four counts, summed from the cube's slots (a slot lies inside one hour).
        where, params = cube.where(flt)
        m = BUCKET_US[bucket]
        source = f"(SELECT slot - ((slot % {m}) + {m}) % {m} AS b, * FROM {quote_ident(cube.table)} WHERE {where})"
        counts = ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in
                           ("n_predictions", "n_labelled", "n_lag", "n_ingest_time"))
        counts += ", NULL::BIGINT AS n_before"  # not in the cube; only coverage_and_lag reads it
        b = "b"
    else:
        src, params = label_relation(con, flt)
        source, b = f"({src})", f"{bucket_us_sql(bucket)}"
    params.update(cv_as_of=_as_of(con, flt), cv_min=min_samples)
    # One scan: the () grouping set is the whole filter, whose lag p90 (label_lag's, the same
    # quantile_cont over the same rows) is the maturity threshold unless one is given.
    sql = f"""
SELECT {bucket_bounds_sql(bucket)}, grouping_id = 1 AS is_overall, n_predictions, n_labelled,
       n_labelled / n_predictions AS coverage, n_lag, n_ingest_time, n_before,
       q[1] AS lag_p50_hours, q[2] AS lag_p90_hours, q[3] AS lag_p99_hours,
       (epoch_us(CAST($cv_as_of AS TIMESTAMPTZ)) - (b + {BUCKET_US[bucket]}))
         / {_US_PER_HOUR}.0 AS age_hours,
       n_predictions < $cv_min AS low_confidence
FROM (
  SELECT {b} AS b, grouping(b) AS grouping_id, {counts}, {quantiles} AS q
  FROM {source}
  GROUP BY GROUPING SETS ((b), ())
)
ORDER BY is_overall, bucket_start"""
    frame = run_query(con, sql, params, "computing label coverage")
    frame = typed(frame, ("coverage", "lag_p50_hours", "lag_p90_hours", "lag_p99_hours"))
    overall = frame[frame["is_overall"]]
    frame = frame[~frame["is_overall"]].drop(columns="is_overall").reset_index(drop=True)
    if lag_p90_hours is None and len(overall) and overall["lag_p90_hours"].iloc[0] is not pd.NA:
        lag_p90_hours = float(overall["lag_p90_hours"].iloc[0])
    frame.insert(len(frame.columns) - 1, "maturity_lag_hours",
                 pd.Series([lag_p90_hours] * len(frame), dtype="Float64"))
    mature = frame["age_hours"] >= frame["maturity_lag_hours"]
    frame.insert(len(frame.columns) - 1, "mature", mature.astype("boolean"))
    return frame[list(COVERAGE_COLUMNS)], overall


# --------------------------------------------------------------------------- stall
@dataclass(frozen=True)
class LabelStall:
    """:func:`label_stall`'s verdict. ``stalled`` is None when it cannot be judged
    (``reason`` says why: ``no_lag_estimate``, ``no_mature_buckets``, ``no_earlier_buckets``);
    else ``reason`` is ``stalled`` or ``ok``. ``recent_start`` / ``recent_end`` are the span
    of mature buckets judged, *not* when the stall began: that is ``onset``."""

    stalled: bool | None
    reason: str
    recent_coverage: float | None
    typical_coverage: float | None
    ratio: float
    recent_start: datetime | None
    recent_end: datetime | None
    n_recent_predictions: int
    n_recent_buckets: int
    n_typical_buckets: int
    maturity_lag_hours: float | None
    #: When the stall began: :func:`stall_onset` (the first hour of the drop in label
    #: arrivals, looked for up to ONSET_LOOKBACK_HOURS before the filter's start) when
    #: ``stalled``; None otherwise or when arrivals show no drop (see label_stall).
    onset: datetime | None = None


def label_stall(con: duckdb.DuckDBPyConnection, flt: Filter, *, bucket: str = "hour",
                recent_hours: float = 24.0, ratio: float = 0.5,
                lag_p90_hours: float | None = None, cube: Cube | None = None,
                onset: bool = True) -> LabelStall:
    """Have labels stopped arriving? Compares the newest mature buckets with the older ones.

    From :func:`coverage` (same ``bucket`` and ``lag_p90_hours``): the *recent* buckets are the
    mature ones starting within ``recent_hours`` before the end of the newest mature bucket; the
    *typical* coverage is the median of the per-bucket coverage of the older mature buckets.
    ``recent_coverage`` is pooled, ``sum(n_labelled) / sum(n_predictions)`` over the recent
    buckets. ``stalled = recent_coverage < ratio * typical_coverage``.

    Only mature buckets take part, so a window that is merely too young for its labels is never
    called stalled; the price is that a stall is seen ``lag p90`` hours after it starts. A stall
    longer than the older mature buckets' span drags the median down with it; choose a filter
    that starts well before the suspected stall.

    When stalled (and ``onset``), ``onset`` is :func:`stall_onset` with the same ``ratio``,
    looked for from ONSET_LOOKBACK_HOURS before the filter's start up to its as-of time: the
    hour label *arrivals* dropped, which the coverage of mature buckets shows only a lag p90
    later and smeared over the predictions whose labels were due after it.

    Example: older mature hours covered at 0.93 (median), the last 24 mature hours at 0.02:
    0.02 < 0.5 x 0.93, stalled.
    """
    if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise QueryError(f"ratio must be in (0, 1], got {ratio!r}")
    if not (isinstance(recent_hours, (int, float)) and 0 < recent_hours < math.inf):
        raise QueryError(f"recent_hours must be a positive number of hours, got {recent_hours!r}")
    cov = coverage(con, flt, bucket=bucket, lag_p90_hours=lag_p90_hours, min_samples=0,
                   lag_quantiles=False, cube=cube)
    lag = None if cov.empty else cov["maturity_lag_hours"].iloc[0]
    lag = None if lag is None or lag is pd.NA else float(lag)

    def verdict(reason: str, **kw: Any) -> LabelStall:
        base = dict(stalled=None, recent_coverage=None, typical_coverage=None,
                    recent_start=None, recent_end=None, n_recent_predictions=0,
                    n_recent_buckets=0, n_typical_buckets=0)
        base.update(kw)
        return LabelStall(reason=reason, ratio=float(ratio), maturity_lag_hours=lag, **base)

    if lag is None:
        return verdict("no_lag_estimate")
    mature = cov[cov["mature"].fillna(False).astype(bool)]
    if mature.empty:
        return verdict("no_mature_buckets")
    recent_end = mature["bucket_end"].max()
    recent_start = recent_end - pd.Timedelta(hours=float(recent_hours))
    recent = mature[mature["bucket_start"] >= recent_start]
    older = mature[mature["bucket_start"] < recent_start]
    n_recent = int(recent["n_predictions"].sum())
    recent_cov = float(recent["n_labelled"].sum() / n_recent)
    kw = dict(recent_coverage=recent_cov, recent_start=recent["bucket_start"].min().to_pydatetime(),
              recent_end=recent_end.to_pydatetime(), n_recent_predictions=n_recent,
              n_recent_buckets=len(recent), n_typical_buckets=len(older))
    if older.empty:
        return verdict("no_earlier_buckets", **kw)
    typical = float(older["coverage"].median())
    stalled = recent_cov < ratio * typical
    if stalled and onset:
        as_of = _as_of(con, flt)
        search = None if flt.start is None else flt.start - timedelta(hours=ONSET_LOOKBACK_HOURS)
        kw["onset"] = stall_onset(con, flt, ratio=ratio, end=as_of, search_start=search)
    return verdict("stalled" if stalled else "ok", stalled=bool(stalled), typical_coverage=typical,
                   **kw)


# --------------------------------------------------------------------------- stall onset
#: An hour's expected label arrivals: the mean of the same UTC hour of day over this many
#: days before it (a daily cycle of arrivals then looks normal at night too).
ONSET_BASELINE_DAYS = 7
#: How far before a filter's start :func:`label_stall` looks for the onset of a stall that
#: was already on when the window began (the alerts' default look-back).
ONSET_LOOKBACK_HOURS = DEFAULT_LOOKBACK_MINUTES // 60
#: An hour expecting fewer arrivals than this tells a stall from chance poorly: it neither
#: starts nor breaks a run of low hours (it is *unknown*).
ONSET_MIN_EXPECTED = 10.0


def arrivals_by_hour(con: duckdb.DuckDBPyConnection, flt: Filter, *, end: datetime,
                     search_start: datetime | None = None,
                     baseline_days: int = ONSET_BASELINE_DAYS) -> pd.DataFrame:
    """Usable labels of ``flt``'s model, versions and segments (its time range is not used:
    a label of an older prediction arrives in the hour too) by UTC hour of *arrival*
    (``label_ts``), before ``end``.

    One row per hour from the hour holding ``search_start`` (or the first arrival, if
    later; every arrival when None) to the hour holding ``end``, by ``hour_start``:
    ``n_arrived``; ``expected`` = the mean of ``n_arrived`` in the same hour of day over the
    ``baseline_days`` days before (fewer at the start of the data; ``<NA>`` without one),
    scaled to the part of the hour before ``end`` for the last one.

    Example: 240 labels in each 14:00 hour of the week before, 5 in today's: expected 240,
    arrived 5.
    """
    if isinstance(baseline_days, bool) or not isinstance(baseline_days, int) or baseline_days < 1:
        raise QueryError(f"baseline_days must be a positive integer, got {baseline_days!r}")
    flt = resolve_model(con, flt)
    src, params = label_relation(con, replace(flt, start=None, end=end, maturity_hours=None),
                                 labelled_only=True)
    day, hour = BUCKET_US["day"], BUCKET_US["hour"]
    params.update(ar_end=end, ar_days=baseline_days)
    since = keep = "TRUE"
    if search_start is not None:
        params.update(ar_lo=search_start - timedelta(days=baseline_days), ar_search=search_start)
        since = "label_ts >= $ar_lo"
        keep = f"b >= {bucket_us_sql('hour', 'CAST($ar_search AS TIMESTAMPTZ)')}"
    last_hour = bucket_us_sql("hour", "CAST($ar_end AS TIMESTAMPTZ) - INTERVAL 1 MICROSECOND")
    sql = f"""
WITH agg AS (
  SELECT {bucket_us_sql("hour", "label_ts")} AS b, count(*) AS n
  FROM ({src})
  WHERE label_ts < $ar_end AND {since}
  GROUP BY ALL
),
grid AS (
  SELECT unnest(generate_series(min(b), {last_hour}, CAST({hour} AS BIGINT))) AS b FROM agg
),
dense AS (
  SELECT grid.b, coalesce(agg.n, 0) AS n FROM grid LEFT JOIN agg USING (b)
),
rated AS (
  SELECT b, n, avg(n) OVER (PARTITION BY b % {day} ORDER BY b
                            ROWS BETWEEN $ar_days PRECEDING AND 1 PRECEDING) AS expected
  FROM dense
)
SELECT make_timestamptz(b) AS hour_start, n AS n_arrived,
       expected * least(1.0, (epoch_us(CAST($ar_end AS TIMESTAMPTZ)) - b) / {hour}.0) AS expected
FROM rated
WHERE {keep}
ORDER BY b"""
    frame = run_query(con, sql, params, "counting label arrivals by hour")
    frame["hour_start"] = pd.to_datetime(frame["hour_start"], utc=True)
    frame["n_arrived"] = frame["n_arrived"].astype("Int64")
    frame["expected"] = frame["expected"].astype("Float64")
    return frame


def stall_onset(con: duckdb.DuckDBPyConnection, flt: Filter, *, end: datetime,
                ratio: float = 0.5, search_start: datetime | None = None,
                baseline_days: int = ONSET_BASELINE_DAYS,
                min_expected: float = ONSET_MIN_EXPECTED) -> datetime | None:
    """The hour label delivery dropped: the first hour of the run of *low* hours that lasts
    up to ``end``, from :func:`arrivals_by_hour`.

    An hour is low when ``n_arrived < ratio × expected``, normal when not, and unknown (it
    neither starts nor breaks a run) when ``expected < min_expected``. The run must hold at
    least two low hours and its last known hour must be low (delivery is still down);
    otherwise None. The onset depends on the data only, not on the window a page shows: it
    is looked for from ``search_start`` (None: the first arrival) up to ``end``, and a stall
    already on at ``search_start`` gives the hour of ``search_start`` (the look-back limit).

    Example (the sample): fraud labels arrive at ~241 an hour until 2026-10-28 12:00, then at
    ~5: onset 2026-10-28 12:00, whatever the window ending after it.
    """
    frame = arrivals_by_hour(con, flt, end=end, search_start=search_start,
                             baseline_days=baseline_days)
    expected = frame["expected"].to_numpy(dtype=float, na_value=math.nan)
    arrived = frame["n_arrived"].to_numpy(dtype=float)
    known = expected >= min_expected  # NaN compares False: unknown
    low = known & (arrived < ratio * expected)
    onset, n_low = None, 0
    for i in range(len(frame) - 1, -1, -1):
        if not known[i]:
            continue
        if not low[i]:
            break
        onset, n_low = frame["hour_start"].iloc[i], n_low + 1
    if onset is None or n_low < 2:
        return None
    return onset.to_pydatetime()
