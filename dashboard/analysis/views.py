"""The windows the On-call and Debug pages look at, resolved from the sidebar's Filter.

The pages never choose rows themselves; they ask here which model, time range and reference
window a view is about, and which Filter a drill-down link should carry:

* :func:`resolve_view`: the Filter with model, time range and reference window filled in
  (``report.resolve_windows``'s defaults: the whole history, the first 7 days as reference).
  With several models and none chosen, the first by name is taken (the sidebar offers the
  others) instead of failing; a reference window without any prediction is replaced by the
  default one;
* :func:`drift_window`: the current window drift compares with the reference (the selection
  minus a reference window at its start, as ``lossboard report`` does);
* :func:`finding_filter`: the Filter of one finding (its segment / version, ``[since, until)``),
  the Debug page's pre-filter when a finding is clicked;
* :func:`drift_table` / :func:`daily_drift_table`: ``drift.feature_drift`` / ``daily_drift``
  over every registered feature *and* the score (named ``"score"``), without the features
  that have no value in either window (another model's columns);
* :func:`label_lag_anywhere`: the model's label lag over its whole history, so an empty state
  can say "no labels yet for this window: label lag p90 is 36 h" even when the window holds
  no label at all;
* :func:`oncall_data`: every figure of the On-call page from one connection and one
  :mod:`cube` scan (the page's data work in one cached call), and
  :func:`oncall_drift_findings`: its drift findings, asked for once the rest has rendered.

Times are UTC; windows are half-open ``[start, end)`` (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import duckdb

import pandas as pd

from lossboard.dashboard.analysis import (
    alerts, base, canary, cube, drift, labels, loss, report, saturation, segments,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.monitoring_config import MonitoringConfig
from lossboard.errors import LossboardError, QueryError

#: A finding that lasts less than this is widened to it in its drill-down link, so the Debug
#: page has a few hours of rows to show (an incident of 2 hours is still centred on its start).
MIN_DRILLDOWN = timedelta(hours=6)


def models(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The registered models, by name."""
    return [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]


def resolve_view(con: duckdb.DuckDBPyConnection, flt: Filter) -> Filter:
    """``flt`` with model, ``[start, end)`` and the reference window set.

    Model: ``flt.model``, else the only model, else the first by name (a dashboard shows one
    model at a time; the sidebar offers the others). Time range and reference: as
    :func:`report.resolve_windows` (the model's whole history when open; the first 7 days of
    the range, or a quarter of a range shorter than 28 days, as reference when none is set).
    A reference window holding no prediction (e.g. the period before the data begins) is
    dropped for the default. Raises :class:`QueryError` when the database holds no model.

    Example: ``Filter()`` on the sample gives model ``fraud``, 2026-10-01 .. 2026-10-31 and the
    reference 2026-10-01 .. 2026-10-08.
    """
    if flt.model is None:
        names = models(con)
        if not names:
            raise QueryError("the database holds no predictions yet; ingest some with "
                             "`lossboard ingest`")
        flt = replace(flt, model=names[0])
    if flt.has_reference and reference_rows(con, flt) == 0:
        # An empty reference (the previous period of a range that starts with the data) makes
        # every comparison "no data": the report's default reference is used instead.
        flt = replace(flt, reference_start=None, reference_end=None, reference_version=None)
    return report.resolve_windows(con, flt)


def reference_rows(con: duckdb.DuckDBPyConnection, flt: Filter) -> int:
    """Predictions in ``flt``'s reference window (0 when it has none)."""
    if not flt.has_reference:
        return 0
    rows = base.prediction_rows(con, flt.reference())
    return int(con.execute(f"SELECT count(*) FROM ({rows.sql})", rows.params).fetchone()[0])


def drift_window(flt: Filter) -> Filter:
    """The current window drift compares with the reference (:func:`report.drift_window`,
    the same window ``lossboard report`` uses)."""
    return report.drift_window(flt)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def finding_filter(flt: Filter, finding: dict[str, Any], *,
                   reference_version: str | None = None) -> Filter:
    """The Debug page's Filter for one finding of ``report.findings`` (as a dict).

    Keeps the model and reference window of ``flt``; the time range is ``[since, until)``
    (``until`` open: the end of ``flt``), widened to :data:`MIN_DRILLDOWN` when shorter and
    clamped to ``flt``'s range; ``where`` adds its segment values (``{"segment": {col: v}}``)
    and model version (``{"model_version": v}``). A finding without ``since`` keeps ``flt``'s
    range. ``reference_version`` (a canary's baseline) makes the reference window that
    version's, so a candidate's drift and loss are compared with its baseline.

    Example: ``{"since": "2026-10-13T08:00:00Z", "until": "2026-10-13T10:00:00Z"}`` gives
    ``[2026-10-13 08:00, 14:00)``.
    """
    start, end = _parse(finding.get("since")) or flt.start, _parse(finding.get("until")) or flt.end
    if start is not None and end is not None and end - start < MIN_DRILLDOWN:
        end = start + MIN_DRILLDOWN
    if flt.end is not None and end is not None:
        end = min(end, flt.end)
    if flt.start is not None and start is not None:
        start = max(start, flt.start)
    if start is not None and end is not None and start >= end:
        start, end = flt.start, flt.end
    where = finding.get("where") or {}
    segments = flt.segments + tuple((str(c), str(v)) for c, v in
                                    (where.get("segment") or {}).items())
    versions = (str(where["model_version"]),) if where.get("model_version") else flt.versions
    return replace(flt, start=start, end=end, segments=segments, versions=versions,
                   reference_version=reference_version or flt.reference_version)


def label_lag_anywhere(con: duckdb.DuckDBPyConnection, flt: Filter) -> labels.LabelLag:
    """:func:`labels.label_lag` of ``flt``'s model, segments and versions over all time."""
    return labels.label_lag(con, replace(base.resolve_model(con, flt), start=None, end=None,
                                         maturity_hours=None))


#: The name the score has in :func:`drift_table` and :func:`daily_drift_table`.
SCORE_NAME = "score"


def _drift_features(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [name for name, _ in base.columns_with_role(con, "feature")] + [drift.SCORE]


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    frame["feature"] = frame["feature"].replace({drift.SCORE: SCORE_NAME})
    return frame


def drift_table(con: duckdb.DuckDBPyConnection, flt: Filter) -> pd.DataFrame:
    """:func:`drift.feature_drift` of every feature and the score between ``flt.reference()``
    and ``flt``, most drifted first; features without a value in either window are left out.
    Columns: ``drift.DRIFT_COLUMNS``."""
    return _seen(drift.feature_drift(con, flt, features=_drift_features(con)))


def _seen(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`drift_table`'s rows of a ``feature_drift`` frame."""
    frame = frame[(frame["n_reference"] > 0) | (frame["n_current"] > 0)]
    return _named(frame.reset_index(drop=True))


def daily_drift_table(con: duckdb.DuckDBPyConnection, flt: Filter) -> pd.DataFrame:
    """:func:`drift.daily_drift` of the features of :func:`drift_table` (and the score), PSI
    and status per day: the drift heatmap shows PSI, so the exact KS per day (half of the
    call's cost at 10M rows) is left out (``ks_statistic`` / ``ks_pvalue`` are <NA>);
    :func:`drift_table` has the KS of the whole window."""
    return _seen_daily(drift.daily_drift(con, flt, feature=_drift_features(con), ks=False))


def _seen_daily(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`daily_drift_table`'s rows of a ``daily_drift`` frame."""
    seen = frame.groupby("feature")["n_current"].transform("sum") + frame.groupby(
        "feature")["n_reference"].transform("max")
    return _named(frame[seen > 0].reset_index(drop=True))


@dataclass(frozen=True)
class DriftTab:
    """The Debug page's drift tab for one window (:func:`drift_tab`)."""

    table: pd.DataFrame  # drift_table
    daily: pd.DataFrame  # daily_drift_table
    distributions: dict[str, pd.DataFrame]  # drift.distribution, by drift_table's names


def drift_tab(con: duckdb.DuckDBPyConnection, flt: Filter) -> DriftTab:
    """:func:`drift_table`, :func:`daily_drift_table` and every feature's
    :func:`drift.distribution` from one :func:`drift.drift_overview` pass (each equal to its
    function's; three calls read the window three times)."""
    seen = drift.drift_overview(con, flt, features=_drift_features(con))
    table = _seen(seen.table)
    return DriftTab(table, _seen_daily(seen.daily),
                    {name: seen.distributions[drift_feature(name)] for name in table["feature"]})


def drift_feature(name: str) -> str:
    """The ``drift`` module's name of a :func:`drift_table` feature (``"score"`` -> SCORE)."""
    return drift.SCORE if name == SCORE_NAME else name


@dataclass(frozen=True)
class OnCallData:
    """Every figure of the On-call page for one view (:func:`oncall_data`).

    A figure whose computation failed holds the :class:`LossboardError` instead, so that the
    page ends only that section with the message (:func:`figure` raises it there)."""

    rolled: dict[str, pd.DataFrame]  # loss.rolling, windows "1h" and "6h", hourly steps
    # report.build_report(auc=False, ece=False, include_drift=False): findings but drift's
    # (oncall_drift_findings), canary, labels, ...
    report: dict[str, Any]
    excess: pd.DataFrame  # segments.excess_loss_all
    canary_pair: tuple[str, str] | None  # canary.detect_pair
    canary: canary.CanaryResult | None  # canary.compare_versions of the pair
    # The window's label lag (labels.label_lag, from coverage's scan), or label_lag_anywhere
    # when the window holds no label (the empty states quote it: "no labels yet for this
    # window: lag p90 is 36 h").
    lag: labels.LabelLag
    coverage_bucket: str  # "hour" for a view of at most 3 days, else "day"
    coverage: pd.DataFrame  # labels.coverage by coverage_bucket
    stall: labels.LabelStall  # labels.label_stall
    saturation: saturation.ScoreSaturation  # saturation.score_saturation by hour
    # alerts.evaluate of the config at the window's end (the firing alerts; the error when
    # it failed), None when no config was given
    alerts: list[alerts.Alert] | LossboardError | None = None


def oncall_data(con: duckdb.DuckDBPyConnection, flt: Filter,
                config: MonitoringConfig | None = None) -> OnCallData:
    """The On-call page's figures for the resolved view ``flt`` (:func:`resolve_view`);
    with a ``config`` (``monitoring_config.load()``), also the alerts firing at its end.

    Each figure is the named analysis function's, with its defaults; they are computed here
    together so that one :func:`cube.build` over the window and its reference serves the
    rolling loss, the report's loss, segment, saturation and label sections, the segment
    ranking and the stall, and so that DuckDB reads the window once, on one connection (a
    page's first, cold read is most of its time: docs/benchmarks.md, "Dashboard pages").
    The report is built without what the page does not show: the AUC, ECE and the drift
    section, and without the drift findings, which cost as much again as all the rest at 10M
    rows and come from :func:`oncall_drift_findings` once the page has rendered. Coverage and
    the window's label lag come from one scan (``labels.coverage_and_lag``).
    The alerts come last, on the same connection, so they find the window's blocks read.
    """
    flt = report.resolve_windows(con, flt)
    if flt.start is None:
        sums = None
    else:
        sums = cube.build(con, flt, segments.segment_columns(con), report.cube_windows(con, flt))
    try:
        rolled = {w: loss.rolling(con, flt, window=w, cube=sums) for w in ("1h", "6h")}
        span_days = (flt.end - flt.start).total_seconds() / 86400 if flt.start else 0
        bucket = "hour" if span_days <= 3 else "day"
        both = _attempt(labels.coverage_and_lag, con, flt, bucket=bucket)
        cov, lag = (both, None) if isinstance(both, LossboardError) else both
        rep = _attempt(report.build_report, con, flt, auc=False, drift_section=False,
                       include_drift=False, ece=False, cube_sums=sums, label_lag=lag)
        excess = _attempt(segments.excess_loss_all, con, flt, cube=sums)
        pair = _attempt(canary.detect_pair, con, flt)
        result = pair if pair is None or isinstance(pair, LossboardError) else _attempt(
            canary.compare_versions, con, flt, baseline=pair[0], candidate=pair[1], cube=sums)
        if lag is None or lag.n == 0:
            # No label in the window: the empty states quote the model's lag over all time.
            lag = label_lag_anywhere(con, flt)
        window_lag = None if isinstance(cov, LossboardError) or cov.empty else cov["maturity_lag_hours"].iloc[0]
        window_lag = None if window_lag is None or window_lag is pd.NA else float(window_lag)
        # The stall's maturity lag is the window's lag p90, which the coverage just measured
        # (label_stall would measure it again, with a quantile per hour).
        stall = _attempt(labels.label_stall, con, flt, lag_p90_hours=window_lag, cube=sums)
        sat = _attempt(saturation.score_saturation, con, flt, bucket="hour", cube=sums)
    finally:
        if sums is not None:
            sums.drop(con)
    firing = None
    if config is not None:
        firing = _attempt(alerts.evaluate, con, config, model=flt.model, as_of=flt.end)
    return OnCallData(rolled, rep, excess, pair, result, lag, bucket, cov, stall, sat, firing)


def oncall_drift_findings(con: duckdb.DuckDBPyConnection, flt: Filter) -> list[dict[str, Any]]:
    """The ``feature_drift`` findings of the resolved view ``flt`` (``report.drift_findings``,
    the report's own): the On-call page asks for them after its other figures, so a drift
    search (1-2 s at 10M rows) does not hold up "is it broken now"."""
    return report.drift_findings(con, flt)


def _attempt(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except LossboardError as exc:
        return exc


def figure(value: Any) -> Any:
    """An :class:`OnCallData` field's value; raises the error it holds instead, if any."""
    if isinstance(value, LossboardError):
        raise value
    return value
