"""Canary vs baseline: is the new model version worse than the one it would replace?

Both versions are compared over the **same time range** — the overlap of their traffic inside
the filter — so a daily pattern or an incident cannot favour one of them. The test is on the
per-row clipped log loss (docs/metrics/canary.md):

* ``relative_delta = L_candidate / L_baseline − 1``;
* ``p_value``: two-sided Welch t-test of L_candidate − L_baseline;
* ``p_value_worse``: one-sided Welch test of the non-inferiority null
  ``L_candidate ≤ (1 + max_relative_increase)·L_baseline`` — small means the candidate is
  worse than the tolerance allows, with confidence;
* verdict ``insufficient_data`` when either side has fewer than ``min_samples`` labelled rows,
  else ``fail`` when ``p_value_worse < alpha``, else ``pass``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import duckdb

from lossboard.dashboard.analysis import base
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.stats import Moments, moments_sql, welch
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

if TYPE_CHECKING:  # cube imports loss; this module needs only the type
    from lossboard.dashboard.analysis.cube import Cube

VERDICTS = ("pass", "fail", "insufficient_data")


@dataclass(frozen=True)
class CanaryResult:
    """The comparison of two model versions over their common time range."""

    baseline: str
    candidate: str
    start: datetime | None
    end: datetime | None
    n_baseline: int
    n_candidate: int
    log_loss_baseline: float | None
    log_loss_candidate: float | None
    relative_delta: float | None
    t_statistic: float | None
    p_value: float | None
    p_value_worse: float | None
    max_relative_increase: float
    alpha: float
    min_samples: int
    verdict: str
    reason: str


def version_spans(con: duckdb.DuckDBPyConnection, flt: Filter) -> list[tuple[str, datetime, datetime, int]]:
    """(version, first ts, last ts, predictions) per model version in the filter, by first ts."""
    rows = base.prediction_rows(con, flt)
    return con.execute(
        f"SELECT model_version, min(ts), max(ts), count(*) FROM ({rows.sql}) "
        "GROUP BY ALL ORDER BY min(ts), model_version", rows.params).fetchall()


def version_first_seen(con: duckdb.DuckDBPyConnection, model: str) -> dict[str, datetime]:
    """Each model version's first prediction ever (the whole history of ``model``, no other
    filter): when it was rolled out, which no time window changes."""
    rows = con.execute("SELECT model_version, min(ts) FROM predictions WHERE model = $model "
                       "GROUP BY ALL ORDER BY model_version", {"model": model}).fetchall()
    return {version: first for version, first in rows}


def detect_pair(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                first_seen: dict[str, datetime] | None = None) -> tuple[str, str] | None:
    """(baseline, candidate) when two versions overlap in time inside ``flt``.

    The candidate is the version *rolled out last* — the latest first prediction in the
    model's whole history (:func:`version_first_seen`) — among the versions that have rows in
    ``flt`` overlapping another's; the baseline is the busiest version (most predictions in
    ``flt``) it overlaps. The pair therefore does not depend on where the window starts, as
    long as both versions have rows in it: a window starting inside a canary rollout whose
    first row happens to be the canary's still names the older version the baseline. Ties
    (same first prediction) go to the larger version name. None when no two versions
    overlap. ``first_seen``: :func:`version_first_seen` of the model, when the caller has it
    (alerts ask for many windows of one model).
    """
    flt = base.resolve_model(con, flt)
    spans = version_spans(con, replace(flt, versions=()))
    if first_seen is None:
        first_seen = version_first_seen(con, flt.model)
    for cand in sorted(spans, key=lambda s: (first_seen.get(s[0], s[1]), s[0]), reverse=True):
        overlapping = [s for s in spans if s[0] != cand[0] and s[1] <= cand[2] and cand[1] <= s[2]]
        if overlapping:
            baseline = max(overlapping, key=lambda s: (s[3], s[0]))
            return baseline[0], cand[0]
    return None


def common_window(con: duckdb.DuckDBPyConnection, flt: Filter) -> Filter | None:
    """The Filter of the rows :func:`compare_versions` tests for :func:`detect_pair`'s pair:
    ``flt`` from the later version's first prediction to just past the earlier one's last,
    or None without a pair. A cube built with this window among its windows
    (``cube.build(..., windows=[...])``) serves the comparison."""
    pair = detect_pair(con, flt)
    if pair is None:
        return None
    spans = {sp[0]: sp for sp in version_spans(con, replace(base.resolve_model(con, flt), versions=()))}
    start, last = _overlap(spans, *pair)
    return replace(flt, start=start, end=last + timedelta(microseconds=1))


def _overlap(spans: dict[str, tuple], baseline: str, candidate: str) -> tuple[datetime, datetime]:
    """(first, last) prediction time both versions served, from :func:`version_spans` rows
    by version; first > last when they never overlapped."""
    return (max(spans[baseline][1], spans[candidate][1]),
            min(spans[baseline][2], spans[candidate][2]))


def _moments_from_cube(con: duckdb.DuckDBPyConnection, cube: Cube, flt: Filter, start: datetime,
                       last: datetime, versions: tuple[str, str]) -> list[tuple] | None:
    """Per-version moments of the labelled rows of ``flt`` in ``[start, last]`` from the
    cube's version slots, or None when the cube does not hold exactly those rows."""
    if cube.flt.versions and not set(versions) <= set(cube.flt.versions):
        return None
    window = replace(flt, start=start, end=last + timedelta(microseconds=1),
                     versions=cube.flt.versions)
    if not cube.covers(window):
        return None
    where, params = cube.where(window, "model_version")
    return con.execute(
        f"SELECT value, sum(n), sum(sw), sum(sw2), sum(s_loss), sum(s_loss2) "
        f"FROM {quote_ident(cube.table)} WHERE {where} AND list_contains($cv_versions, value) "
        "GROUP BY value HAVING sum(n_labelled) > 0 ORDER BY value",
        {**params, "cv_versions": list(versions)}).fetchall()


def compare_versions(con: duckdb.DuckDBPyConnection, flt: Filter, *, baseline: str,
                     candidate: str, min_samples: int = base.DEFAULT_MIN_SAMPLES,
                     max_relative_increase: float = 0.05, alpha: float = 0.05,
                     cube: Cube | None = None) -> CanaryResult:
    """Compare ``candidate`` with ``baseline`` over their overlapping traffic in ``flt``.

    See the module docstring for the statistics. Example: equal losses give
    relative_delta 0, p_value_worse ≈ 1 and verdict ``pass`` (with enough rows).
    """
    if baseline == candidate:
        raise QueryError("baseline and candidate must be different versions")
    if min_samples < 2:
        raise QueryError(f"min_samples must be at least 2, got {min_samples}")
    if not 0 < alpha < 1:
        raise QueryError(f"alpha must be in (0, 1), got {alpha!r}")
    if max_relative_increase < 0:
        raise QueryError(f"max_relative_increase must be >= 0, got {max_relative_increase!r}")
    flt = base.resolve_model(con, flt)
    spans = {s[0]: s for s in version_spans(con, replace(flt, versions=()))}
    missing = [v for v in (baseline, candidate) if v not in spans]
    common = dict(baseline=baseline, candidate=candidate, max_relative_increase=max_relative_increase,
                  alpha=alpha, min_samples=min_samples)
    if missing:
        return CanaryResult(start=None, end=None, n_baseline=0, n_candidate=0, log_loss_baseline=None,
                            log_loss_candidate=None, relative_delta=None, t_statistic=None,
                            p_value=None, p_value_worse=None, verdict="insufficient_data",
                            reason=f"no predictions of version(s) {', '.join(missing)} in the filter",
                            **common)
    start, last = _overlap(spans, baseline, candidate)
    if start > last:
        return CanaryResult(start=None, end=None, n_baseline=0, n_candidate=0, log_loss_baseline=None,
                            log_loss_candidate=None, relative_delta=None, t_statistic=None,
                            p_value=None, p_value_worse=None, verdict="insufficient_data",
                            reason="the two versions never served traffic at the same time", **common)
    # Half-open [start, end): end is just past the last common prediction.
    result = None if cube is None else _moments_from_cube(con, cube, flt, start, last,
                                                          (baseline, candidate))
    if result is None:
        window = replace(flt, start=start, versions=(baseline, candidate))
        rows = base.labelled_rows(con, window)
        result = con.execute(
            f"SELECT model_version, {moments_sql('loss')} FROM ({rows.sql}) WHERE ts <= $lb_last "
            "GROUP BY ALL ORDER BY model_version", {**rows.params, "lb_last": last}).fetchall()
    m = {r[0]: Moments(int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in result}
    empty = Moments(0, 0.0, 0.0, 0.0, 0.0)
    mb, mc = m.get(baseline, empty), m.get(candidate, empty)
    lb, lc = mb.mean, mc.mean
    rel = None if lb is None or lc is None or lb == 0 else lc / lb - 1
    two_sided = welch(mc, mb)
    tol = 1 + max_relative_increase
    scaled = Moments(mb.n, mb.sum_w, mb.sum_w2, mb.sum_wx * tol, mb.sum_wx2 * tol * tol)
    worse = welch(mc, scaled, alternative="greater")
    base_fields = dict(start=start, end=last, n_baseline=mb.n, n_candidate=mc.n,
                       log_loss_baseline=lb, log_loss_candidate=lc, relative_delta=rel,
                       t_statistic=None if two_sided is None else two_sided.t_statistic,
                       p_value=None if two_sided is None else two_sided.p_value,
                       p_value_worse=None if worse is None else worse.p_value, **common)
    if mb.n < min_samples or mc.n < min_samples:
        return CanaryResult(verdict="insufficient_data", reason=(
            f"{mb.n:,} labelled rows of {baseline} and {mc.n:,} of {candidate} in the common "
            f"range; at least {min_samples:,} each are needed"), **base_fields)
    if worse is not None and worse.p_value is not None and worse.p_value < alpha:
        return CanaryResult(verdict="fail", reason=(
            f"{candidate} log loss {lc:.4f} is {rel:+.1%} vs {baseline} {lb:.4f}: worse than the "
            f"allowed {max_relative_increase:+.1%} (one-sided p = {worse.p_value:.2g} < {alpha:g})"),
            **base_fields)
    return CanaryResult(verdict="pass", reason=(
        f"{candidate} log loss {lc:.4f} is {rel:+.1%} vs {baseline} {lb:.4f}: not worse than "
        f"the allowed {max_relative_increase:+.1%} at alpha {alpha:g}"), **base_fields)
