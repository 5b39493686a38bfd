"""What the dashboard shell and the executive view need besides the metrics themselves.

* :func:`filter_options` — the choices the sidebar offers for one model: its versions, the
  values of each segment column, its first and newest prediction (time presets are relative to
  the newest prediction, not the wall clock: the data may be historical);
* :func:`model_counts` — predictions and labelled predictions of the Filter's model (the Data
  health page's per-model row);
* :func:`kpi_vs_loss` — the business KPI series (the ``kpis`` table) per UTC day next to the
  model's daily log loss, with their Pearson correlation.

Definitions (docs/dashboard.md, "Executive"):

* a KPI's **daily value** is the mean (``agg="mean"``) or the sum (``agg="sum"``) of its points
  whose ``ts`` falls in the UTC day ``[day, day + 1 day)``; KPI points are not filtered by
  model, version or segment (the table has no such columns), only by the Filter's time range;
* the **correlation** of a KPI with log loss is Pearson's r over the days that have both a KPI
  value and a log loss that is not low-confidence (``n >= min_samples``); ``None`` with fewer
  than 3 such days or when either series is constant (``numpy.corrcoef`` would give NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from lossboard.dashboard.analysis import base, loss, rollup
from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

#: At most this many values of one segment column are offered in the sidebar (most frequent
#: first); segment columns are low-cardinality by contract, this only guards a mistake.
MAX_SEGMENT_VALUES = 200
KPI_AGGREGATES = ("mean", "sum")
#: Columns of :attr:`KpiVsLoss.frame`.
KPI_COLUMNS = ("day", "kpi", "value", "n_points", "log_loss", "n", "low_confidence")


@dataclass(frozen=True)
class FilterOptions:
    """What the sidebar can offer for ``model`` (None when the database has no predictions)."""

    models: tuple[str, ...]
    model: str | None
    versions: tuple[str, ...]  # by first prediction
    segments: dict[str, tuple[str, ...]]  # column -> values present for the model, by count
    first_ts: datetime | None
    last_ts: datetime | None
    kpis: tuple[str, ...]


def filter_options(con: duckdb.DuckDBPyConnection, model: str | None = None) -> FilterOptions:
    """The models, and for ``model`` (default: the first by name) its versions, segment values
    and time span; plus the KPI names. An unknown ``model`` raises :class:`QueryError`."""
    models = tuple(r[0] for r in con.execute(
        "SELECT DISTINCT model FROM predictions ORDER BY model").fetchall())
    kpis = tuple(r[0] for r in con.execute(
        "SELECT DISTINCT kpi FROM kpis ORDER BY kpi").fetchall())
    if model is None:
        model = models[0] if models else None
    elif model not in models:
        raise QueryError(f"no model {model!r} in the database (models: {', '.join(models) or 'none'})")
    if model is None:
        return FilterOptions(models, None, (), {}, None, None, kpis)
    columns = [column for column, _ in base.columns_with_role(con, "segment")]
    if rollup.current(con, base.model_info(con, model), columns):
        return _options_from_rollup(con, models, model, columns, kpis)
    versions = tuple(r[0] for r in con.execute(
        "SELECT model_version FROM predictions WHERE model = ? GROUP BY model_version "
        "ORDER BY min(ts), model_version", [model]).fetchall())
    first_ts, last_ts = con.execute(
        "SELECT min(ts), max(ts) FROM predictions WHERE model = ?", [model]).fetchone()
    segments: dict[str, tuple[str, ...]] = {}
    for column in columns:
        col = quote_ident(column)
        rows = con.execute(
            f"SELECT CAST({col} AS VARCHAR) AS value FROM predictions "
            f"WHERE model = ? AND {col} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?",
            [model, MAX_SEGMENT_VALUES]).fetchall()
        if rows:
            segments[column] = tuple(r[0] for r in rows)
    return FilterOptions(models, model, versions, segments, first_ts, last_ts, kpis)


def _options_from_rollup(con: duckdb.DuckDBPyConnection, models: tuple[str, ...], model: str,
                         columns: list[str], kpis: tuple[str, ...]) -> FilterOptions:
    """:func:`filter_options` from the hourly rollup's few rows instead of every prediction:
    the same versions (by first prediction), span and values (by prediction count)."""
    versions = tuple(r[0] for r in con.execute(
        "SELECT version FROM rollup WHERE model = ? GROUP BY version "
        "ORDER BY min(first_us), version", [model]).fetchall())
    first_ts, last_ts = con.execute(
        "SELECT make_timestamptz(min(first_us)), make_timestamptz(max(last_us)) FROM rollup "
        "WHERE model = ?", [model]).fetchone()
    segments: dict[str, tuple[str, ...]] = {}
    for i, column in enumerate(columns):
        rows = con.execute(
            f"SELECT seg[{i + 1}] AS value FROM rollup WHERE model = ? AND seg[{i + 1}] IS NOT NULL "
            "GROUP BY 1 ORDER BY sum(n_predictions) DESC, 1 LIMIT ?",
            [model, MAX_SEGMENT_VALUES]).fetchall()
        if rows:
            segments[column] = tuple(r[0] for r in rows)
    return FilterOptions(models, model, versions, segments, first_ts, last_ts, kpis)


@dataclass(frozen=True)
class ModelCounts:
    """Predictions of the Filter (``n_predictions``) and those with a usable label."""

    model: str
    n_predictions: int
    n_labelled: int


def model_counts(con: duckdb.DuckDBPyConnection, flt: Filter) -> ModelCounts:
    """Row counts of the Filter's model (time range, versions and segments applied)."""
    flt = base.resolve_model(con, flt)
    preds = base.prediction_rows(con, flt)
    labelled = base.labelled_rows(con, flt)
    n_predictions = con.execute(f"SELECT count(*) FROM ({preds.sql})", preds.params).fetchone()[0]
    n_labelled = con.execute(f"SELECT count(*) FROM ({labelled.sql})", labelled.params).fetchone()[0]
    return ModelCounts(flt.model, int(n_predictions), int(n_labelled))


@dataclass(frozen=True)
class KpiCorrelation:
    kpi: str
    r: float | None  # Pearson's r of daily value vs daily log loss
    n_days: int  # days used (KPI value and a confident log loss)


@dataclass(frozen=True)
class KpiVsLoss:
    """Daily KPI values next to the daily log loss (:data:`KPI_COLUMNS`, one row per KPI and
    UTC day with a KPI point, ordered by kpi, day) and one correlation per KPI."""

    frame: pd.DataFrame
    correlations: tuple[KpiCorrelation, ...]
    agg: str
    min_samples: int


def kpi_daily(con: duckdb.DuckDBPyConnection, flt: Filter, *, agg: str = "mean") -> pd.DataFrame:
    """KPI values per UTC day within the Filter's time range (only the range applies: KPIs
    have no model). Columns: day (UTC midnight, tz-aware), kpi, value, n_points."""
    if agg not in KPI_AGGREGATES:
        raise QueryError(f"agg must be one of {', '.join(KPI_AGGREGATES)}, got {agg!r}")
    try:
        frame = con.execute(
            f"""SELECT make_timestamp(epoch_us(ts) // 86400000000 * 86400000000) AS day, kpi,
                       {agg}(value) AS value, count(value) AS n_points
                FROM kpis
                WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
                GROUP BY ALL ORDER BY kpi, day""",
            {"start": flt.start, "end": flt.end}).df()
    except duckdb.Error as exc:
        raise QueryError(f"reading the KPI series: {exc}") from exc
    frame["day"] = pd.to_datetime(frame["day"]).dt.tz_localize("UTC")
    return frame


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r; None for fewer than 3 points or a constant series."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    return r if math.isfinite(r) else None


def kpi_vs_loss(con: duckdb.DuckDBPyConnection, flt: Filter, *, agg: str = "mean",
                min_samples: int = base.DEFAULT_MIN_SAMPLES) -> KpiVsLoss:
    """Each KPI's daily value beside the model's daily log loss, and their correlation
    (module docstring). The loss comes from :func:`loss.by_bucket` (``bucket='day'``), so it is
    the same figure as the trend chart's.

    Example: KPI values 1, 2, 3 on three days whose log loss is 0.2, 0.4, 0.6 (each with
    n >= min_samples) give r = 1.0 over 3 days.
    """
    kpis = kpi_daily(con, flt, agg=agg)
    days = loss.by_bucket(con, replace(flt, reference_start=None, reference_end=None,
                                       reference_version=None),
                          bucket="day", min_samples=min_samples, auc=False)
    return join_kpis(kpis, days, agg=agg, min_samples=min_samples)


def join_kpis(kpis: pd.DataFrame, days: pd.DataFrame, *, agg: str = "mean",
              min_samples: int = base.DEFAULT_MIN_SAMPLES) -> KpiVsLoss:
    """:func:`kpi_vs_loss` from frames already at hand: ``kpis`` from :func:`kpi_daily`,
    ``days`` from ``loss.by_bucket(bucket='day', min_samples=min_samples)`` over the same
    time range (the Executive page has it for its trend: the daily loss is not computed
    twice, 1 s of a cold page at 10M rows). Small frames only; no database."""
    daily = pd.DataFrame({"day": days["bucket_start"], "log_loss": days["log_loss"],
                          "n": days["n"], "low_confidence": days["low_confidence"]})
    frame = kpis.merge(daily, on="day", how="left")
    frame["n"] = frame["n"].fillna(0).astype("int64")
    frame["low_confidence"] = frame["low_confidence"].fillna(True).astype(bool)
    frame = frame[list(KPI_COLUMNS)].sort_values(["kpi", "day"]).reset_index(drop=True)
    correlations = []
    for kpi, rows in frame.groupby("kpi", sort=True):
        used = rows[rows["log_loss"].notna() & ~rows["low_confidence"] & rows["value"].notna()]
        correlations.append(KpiCorrelation(
            str(kpi), pearson(used["value"].to_numpy(float), used["log_loss"].to_numpy(float)),
            len(used)))
    return KpiVsLoss(frame, tuple(correlations), agg, min_samples)
