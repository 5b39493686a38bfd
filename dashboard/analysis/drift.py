"""Drift: how far the selected window's features and scores moved from the reference window.

docs/metrics/drift.md holds the definitions an auditor checks; in short:

Windows
    *Reference* = ``flt.reference()`` (the reference time range and/or version, same model and
    segments); *current* = ``flt`` itself. A row may be in both (overlapping windows): it then
    counts in both samples. Counts are rows; weights are not applied (PSI and KS are defined on
    samples, and scipy's ``ks_2samp`` has no weights).
Missing values
    NULL, and NaN for floating-point features, are *missing*: outside every bin and every KS
    sample, reported as ``missing_rate_*`` (missing rows / rows of the window). For the score,
    NaN and +-inf are missing (as everywhere in lossboard); a feature's +-inf is a value, sorted
    below / above every finite value.
PSI, numeric
    Edges are the reference's inner quantiles ``e_i = quantile_disc(x, i / bins)``,
    i = 1 .. bins - 1: the ``ceil(n * i / bins)``-th smallest reference value (the inverted-CDF
    quantile; numpy ``method="inverted_cdf"``), always a value that occurs. Equal edges are
    merged. Bins are right-closed and open-ended: ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)``,
    so a value equal to an edge falls in the bin below it (with inverted-CDF edges this puts
    ``ceil(n i / bins) - ceil(n (i-1) / bins)`` reference values in bin i when there are no
    ties), and current values outside the reference range land in the first / last bin.
PSI, categorical
    One bin per category seen (non-missing) in the reference window, plus one bucket
    ``"__unseen__"`` for every current category the reference never had (reference share 0).
PSI formula
    With ``r_i``, ``c_i`` the reference and current shares of bin i and ``r'_i = max(r_i, eps)``,
    ``c'_i = max(c_i, eps)`` (eps = 1e-4): ``PSI = sum_i (c'_i - r'_i) * ln(c'_i / r'_i)``. The
    floor applies to both factors of every term and the shares are not renormalised after it.
    Evidently replaces only *zero* shares by 0.0001 (same on empty bins; a share in
    ``(0, 1e-4)`` is kept there and floored here). For fixed bins the formula is symmetric in
    r and c; swapping the windows also moves the edges (they come from the reference), so the
    PSI of swapped windows is in general different.
KS
    The two-sample Kolmogorov-Smirnov statistic ``D = max_x |F_ref(x) - F_cur(x)|`` over every
    distinct value x of either sample (ties counted exactly), with scipy's p-value: exactly
    ``scipy.stats.ks_2samp(reference, current)`` (two-sided, method ``'auto'``).
Status
    ``act`` when ``psi >= act`` (0.25), ``watch`` when ``psi >= watch`` (0.1), else ``ok``;
    ``no_data`` with a ``reason`` when either window has no rows or no usable value.

How the numbers are obtained without sorting every value (the fine histograms and the
resolving pass): :mod:`drift_engine`. This module holds the definitions and assembles the
public results from the engine's counts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from lossboard.dashboard.analysis.base import resolve_model
from lossboard.dashboard.analysis.drift_engine import (  # noqa: F401 - public names re-exported
    FEATURE_ROLES,
    FINE_BINS,
    KS_EXACT_MAX_N,
    SCORE,
    UNSEEN,
    _Column,
    _Counts,
    _Drift,
    _drift,
    _drifts,
    _Hist,
    _KS,
    _split_values,
    ks_pvalue,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError

DEFAULT_BINS = 10
DEFAULT_EPS = 1e-4
DEFAULT_WATCH = 0.1
DEFAULT_ACT = 0.25
MAX_BINS = 1000
REASONS = ("empty_reference_window", "empty_current_window", "no_reference_values",
           "no_current_values")


@dataclass(frozen=True)
class DriftResult:
    """Drift of one feature (or of the score) between the reference and the current window.

    ``n_*`` count the values compared (rows with a usable value), ``n_*_rows`` all rows of the
    window; ``missing_rate_*`` = 1 - n / n_rows (None without rows); ``missing_rate_change`` =
    current - reference. ``psi`` / ``ks_*`` are None with ``status = 'no_data'`` and a
    ``reason`` (one of :data:`REASONS`) when either side has no value; ``ks_*`` are None for a
    categorical feature. ``ks_method`` is ``'exact'`` or ``'asymp'``, as scipy chose it.
    ``n_bins`` counts the PSI bins (after merging equal edges; categorical: reference
    categories, plus 1 when the unseen bucket is non-empty).
    """

    feature: str
    kind: str
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    ks_method: str | None
    n_reference: int
    n_current: int
    n_reference_rows: int
    n_current_rows: int
    missing_rate_reference: float | None
    missing_rate_current: float | None
    missing_rate_change: float | None
    n_bins: int
    status: str
    reason: str | None


#: Columns of :func:`feature_drift` (:func:`daily_drift` puts ``day`` first).
DRIFT_COLUMNS = tuple(f.name for f in fields(DriftResult))
#: Columns of :func:`distribution`.
DISTRIBUTION_COLUMNS = ("bin", "label", "lower", "upper", "n_reference", "n_current",
                        "reference_share", "current_share", "psi_term")
#: Columns of :func:`segment_psi`.
SEGMENT_PSI_COLUMNS = ("value", "psi", "n_reference", "n_current")


# ---------------------------------------------------------------------------------------------
# public formulas

def psi_from_counts(reference: Sequence[float], current: Sequence[float],
                    eps: float = DEFAULT_EPS) -> tuple[float, np.ndarray]:
    """PSI of two histograms over the same bins, and its per-bin terms.

    ``PSI = sum_i (c'_i - r'_i) * ln(c'_i / r'_i)`` with ``r'_i = max(r_i, eps)``,
    ``c'_i = max(c_i, eps)`` and ``r_i``, ``c_i`` the shares (count / total) of bin i. A bin
    empty on both sides contributes 0. Both totals must be positive.

    >>> round(psi_from_counts([50, 50], [25, 75])[0], 6)
    0.274653
    """
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    if r.shape != c.shape or r.ndim != 1:
        raise QueryError(f"psi_from_counts: bins differ ({r.shape} vs {c.shape})")
    if not (r.sum() > 0 and c.sum() > 0):
        raise QueryError("psi_from_counts: both histograms need a positive total")
    rp = np.maximum(r / r.sum(), eps)
    cp = np.maximum(c / c.sum(), eps)
    terms = (cp - rp) * np.log(cp / rp)
    return float(terms.sum()), terms


def status_of(psi: float | None, watch: float = DEFAULT_WATCH, act: float = DEFAULT_ACT) -> str:
    """``'act'`` when psi >= act, ``'watch'`` when psi >= watch, else ``'ok'``;
    ``'no_data'`` for None."""
    if psi is None:
        return "no_data"
    return "act" if psi >= act else "watch" if psi >= watch else "ok"


# ---------------------------------------------------------------------------------------------
# parameters and columns

def _check(bins: object, eps: object, watch: object = DEFAULT_WATCH,
           act: object = DEFAULT_ACT) -> None:
    whole = isinstance(bins, numbers.Integral) and not isinstance(bins, bool)
    if not whole or not 2 <= bins <= MAX_BINS:  # type: ignore[operator]
        raise QueryError(f"bins must be a whole number from 2 to {MAX_BINS}, got {bins!r}")
    if not isinstance(eps, numbers.Real) or not 0 < eps < 1:
        raise QueryError(f"eps must be a number in (0, 1), got {eps!r}")
    for name, value in (("watch", watch), ("act", act)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise QueryError(f"{name} must be a finite number >= 0, got {value!r}")
    if watch > act:  # type: ignore[operator]
        raise QueryError(f"watch ({watch!r}) must not be above act ({act!r})")


def _result(col: _Column, counts: _Counts, hist: _Hist | None, ks: _KS | None, g: Any,
            eps: float, watch: float, act: float) -> DriftResult:
    n_ref_rows = counts.n_ref_rows
    n_cur_rows = counts.n_cur_rows.get(g, 0)
    n_ref = counts.n_ref.get(col.name, 0)
    n_cur = counts.n_cur.get(col.name, {}).get(g, 0)
    miss_ref = 1 - n_ref / n_ref_rows if n_ref_rows else None
    miss_cur = 1 - n_cur / n_cur_rows if n_cur_rows else None
    reason = ("empty_reference_window" if not n_ref_rows
              else "empty_current_window" if not n_cur_rows
              else "no_reference_values" if not n_ref
              else "no_current_values" if not n_cur else None)
    psi = None
    n_bins = 0
    if reason is None and hist is not None:
        keep = hist.kept(g)
        psi = psi_from_counts([hist.reference[i] for i in keep],
                              [hist.current[g][i] for i in keep], eps)[0]
        n_bins = len(keep)
    return DriftResult(
        feature=col.name, kind=col.kind, psi=psi,
        ks_statistic=ks.statistic if ks and reason is None else None,
        ks_pvalue=ks.pvalue if ks and reason is None else None,
        ks_method=ks.method if ks and reason is None else None,
        n_reference=n_ref, n_current=n_cur, n_reference_rows=n_ref_rows,
        n_current_rows=n_cur_rows, missing_rate_reference=miss_ref, missing_rate_current=miss_cur,
        missing_rate_change=(miss_cur - miss_ref
                             if miss_ref is not None and miss_cur is not None else None),
        n_bins=n_bins, status=status_of(psi, watch, act), reason=reason)


def _results(d: _Drift, col: _Column, s: int, g: Any, eps: float, watch: float,
             act: float) -> DriftResult:
    return _result(col, d.counts[s], d.hists.get((col.name, s)),
                   d.ks.get((col.name, s), {}).get(g), g, eps, watch, act)


def _frame(results: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(results, columns=list(columns))
    for name in ("psi", "ks_statistic", "ks_pvalue", "missing_rate_reference",
                 "missing_rate_current", "missing_rate_change"):
        frame[name] = frame[name].astype("Float64")
    return frame


def feature_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = DEFAULT_BINS,
                  eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH, act: float = DEFAULT_ACT,
                  features: str | Sequence[str] | None = None, ks: bool = True) -> pd.DataFrame:
    """Drift of each feature between ``flt.reference()`` and ``flt``, most drifted first.

    ``features``: column names (role ``feature`` or ``activation``; :data:`SCORE` is the
    score); default every registered ``feature`` column. Numeric features get PSI over
    ``bins`` reference-quantile bins and the exact two-sample KS (statistic and p-value as
    ``scipy.stats.ks_2samp``); categorical ones PSI by category (unseen categories in one
    ``"__unseen__"`` bucket). ``eps`` floors every bin share inside PSI (``max(share, eps)``).
    ``status``: ``act`` at ``psi >= act``, ``watch`` at ``psi >= watch``, else ``ok``;
    ``no_data`` (with ``reason``) when a window has no row or no usable value.

    Returns one row per feature with the columns :data:`DRIFT_COLUMNS` (see
    :class:`DriftResult`), sorted by ``psi`` descending (no-data rows last), then ``feature``.
    The float columns are pandas' nullable ``Float64`` (``<NA>``, never a silent NaN).
    ``ks=False`` leaves the KS columns <NA> and skips their exact pass (PSI-only callers).

    Example: reference ``[50, 50]`` and current ``[25, 75]`` in two bins give
    ``PSI = (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.274653``.
    """
    _check(bins, eps, watch, act)
    return _ranked(_drift(con, flt, features, bins, ks=ks), eps, watch, act)


def _ranked(d: _Drift, eps: float, watch: float, act: float) -> pd.DataFrame:
    """:func:`feature_drift`'s frame of a whole-window ``d``."""
    results = [asdict(_results(d, c, 0, 0, eps, watch, act)) for c in d.columns]
    results.sort(key=lambda r: (r["psi"] is None, -(r["psi"] or 0.0), r["feature"]))
    return _frame(results, DRIFT_COLUMNS)


def score_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = DEFAULT_BINS,
                eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH,
                act: float = DEFAULT_ACT) -> DriftResult:
    """Drift of the model's score (binary: p; multiclass: the top class's renormalised
    probability), with the conventions of :func:`feature_drift`; NaN / inf scores are
    missing. ``feature`` is :data:`SCORE`, ``kind`` ``'score'``."""
    _check(bins, eps, watch, act)
    d = _drift(con, flt, [SCORE], bins)
    return _results(d, d.columns[0], 0, 0, eps, watch, act)


def daily_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                feature: str | Sequence[str] | None = None, bins: int = DEFAULT_BINS,
                eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH,
                act: float = DEFAULT_ACT, ks: bool = True) -> pd.DataFrame:
    """Drift of each UTC day of ``flt`` against the whole reference window (for heatmaps).

    ``feature``: one name, several, or None for every registered feature (:data:`SCORE` is the
    score). The PSI bins are the reference's, the same for every day; KS is exact per day.
    Days of the current window without any row are left out. Columns: ``day`` (date), then
    :data:`DRIFT_COLUMNS`; ordered by ``feature``, ``day``. ``ks=False`` leaves the KS columns
    empty (<NA>) and skips their exact pass: for callers that read only PSI and status (the
    report's and the alerts' "since when" of a drift), as :func:`distribution` does.
    """
    _check(bins, eps, watch, act)
    d = _drift(con, flt, feature, bins, daily=True, ks=ks)
    return DriftByDay(d, (), {}, eps, watch, act).table()


def distribution(con: duckdb.DuckDBPyConnection, flt: Filter, feature: str, *,
                 bins: int = DEFAULT_BINS, eps: float = DEFAULT_EPS) -> pd.DataFrame:
    """Reference vs current histogram of one feature over its PSI bins (the drill-down chart).

    Columns :data:`DISTRIBUTION_COLUMNS`: ``bin`` (0-based), ``label`` (``"(lo, hi]"`` or the
    category, ``"__unseen__"`` last), ``lower`` / ``upper`` (numeric edges, NaN for
    categories), counts, shares (count / values of the window) and each bin's PSI term; their
    sum is the feature's ``psi``. Numeric bins in value order; categories by reference share,
    then name. With no data the frame is empty and ``frame.attrs["reason"]`` says why.
    """
    _check(bins, eps)
    if not isinstance(feature, str):
        raise QueryError(f"feature must be one column name, got {feature!r}")
    d = _drift(con, flt, [feature], bins, ks=False)
    return _distribution(d, d.columns[0], eps)


def _distribution(d: _Drift, col: _Column, eps: float) -> pd.DataFrame:
    """:func:`distribution`'s frame of ``col`` in a whole-window ``d``."""
    feature = col.name
    result = _results(d, col, 0, 0, eps, DEFAULT_WATCH, DEFAULT_ACT)
    if result.reason is not None:
        frame = pd.DataFrame({c: [] for c in DISTRIBUTION_COLUMNS})
        frame.attrs["reason"] = result.reason
        return frame
    hist = d.hists[feature, 0]
    ref, cur = np.array(hist.reference), np.array(hist.current[0])
    keep = hist.kept(0)
    _, terms = psi_from_counts(ref[keep], cur[keep], eps)
    return pd.DataFrame({
        "bin": np.arange(len(keep)),
        "label": [hist.labels[i] for i in keep],
        "lower": [np.nan if hist.lower[i] is None else hist.lower[i] for i in keep],
        "upper": [np.nan if hist.upper[i] is None else hist.upper[i] for i in keep],
        "n_reference": ref[keep], "n_current": cur[keep],
        "reference_share": ref[keep] / ref.sum(), "current_share": cur[keep] / cur.sum(),
        "psi_term": terms,
    }, columns=list(DISTRIBUTION_COLUMNS))


def segment_psi(con: duckdb.DuckDBPyConnection, flt: Filter, feature: str, column: str, *,
                bins: int = DEFAULT_BINS, eps: float = DEFAULT_EPS) -> pd.DataFrame:
    """PSI of one feature within each value of a segment column, all values in one pass.

    For every value v of ``column`` that occurs in either window, the PSI that
    ``feature_drift(con, replace(flt, segments=flt.segments + ((column, v),)),
    features=[feature])`` reports, computed without one query per value: the reference
    quantile edges, the bins and the counts are each value's own (docs/metrics/drift.md,
    "Segment PSI"). ``feature`` may be :data:`SCORE`. Values are compared as text (the
    Filter's segment convention); rows where the column is NULL belong to no value. When
    ``flt`` already holds values of ``column``, adding one ORs it with them (the Filter's rule),
    so every value present gets the PSI of ``flt`` itself.

    Columns :data:`SEGMENT_PSI_COLUMNS`: ``value``, ``psi`` (nullable ``Float64``: ``<NA>``
    when that value has no usable value in a window), ``n_reference``, ``n_current`` (values
    compared, as in :func:`feature_drift`); one row per value, ordered by value.

    Example: reference ``[1, 2, 3, 4]`` and current ``[3, 4, 5, 6]`` in segment ``a`` with
    ``bins=2`` give the edge 2, shares ``[0.5, 0.5]`` vs ``[0, 1]`` and PSI
    ``(1e-4 - 0.5) ln(1e-4 / 0.5) + 0.5 ln 2 = 4.600``.
    """
    if not isinstance(feature, str):
        raise QueryError(f"feature must be one column name, got {feature!r}")
    return segment_psis(con, flt, features=[feature], columns=[column], bins=bins,
                        eps=eps)[column][feature]


def segment_psis(con: duckdb.DuckDBPyConnection, flt: Filter, *, features: Sequence[str],
                 columns: Sequence[str], bins: int = DEFAULT_BINS,
                 eps: float = DEFAULT_EPS) -> dict[str, dict[str, pd.DataFrame]]:
    """:func:`segment_psi` of every feature in ``features`` within every column of
    ``columns`` (``{column: {feature: frame}}``, each frame equal to its segment_psi call),
    from shared scans: one fine-histogram scan and one resolving query for all of them. The
    report's drift findings ask this for "where" (the segment value a feature drifts most in).
    """
    _check(bins, eps)
    flt = resolve_model(con, flt)
    features = list(dict.fromkeys(features))
    held = {c for c, _ in flt.segments}
    values = {column: _split_values(con, flt, column) for column in dict.fromkeys(columns)}
    # A column the Filter restricts reads as the Filter itself for every value (it ORs them).
    whole = [c for c, v in values.items() if c in held and v]
    parts = [c for c, v in values.items() if c not in held and v]
    asked: list[tuple[str, tuple[str, ...]] | None] = [(c, values[c]) for c in parts]
    if whole:
        asked.append(None)
    found = _drifts(con, flt, features, bins, asked, ks=False) if asked else []
    by_column = dict(zip(parts, found))
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for column, vals in values.items():
        d = by_column.get(column, found[-1] if column in whole else None)
        out[column] = {}
        for feature in features:
            rows = []
            if d is not None:
                col = next(c for c in d.columns if c.name == feature)
                results = [_results(d, col, 0 if column in whole else i, 0, eps, DEFAULT_WATCH,
                                    DEFAULT_ACT) for i in range(len(vals))]
                rows = [(v, r.psi, r.n_reference, r.n_current) for v, r in zip(vals, results)]
            frame = pd.DataFrame(rows, columns=list(SEGMENT_PSI_COLUMNS))
            frame["psi"] = frame["psi"].astype("Float64")
            for name in ("n_reference", "n_current"):
                frame[name] = frame[name].astype("int64")
            out[column][feature] = frame
    return out


@dataclass(frozen=True)
class DriftByDay:
    """:func:`drift_by_day`: each UTC day's drift against the reference, with its counts, so
    that the drift of any run of days ``[day, end of the window)`` is read without a query."""

    d: _Drift
    values: tuple[str, ...]  # the split column's values; () without a split
    index: dict[str, int]    # value -> segment of ``d``
    eps: float
    watch: float
    act: float

    def table(self) -> pd.DataFrame:
        """:func:`daily_drift`'s frame (of the whole window; without a split only)."""
        results = []
        for col in self.d.columns:
            for day in sorted(self.d.counts[0].n_cur_rows):
                results.append({"day": day, **asdict(_results(
                    self.d, col, 0, day, self.eps, self.watch, self.act))})
        frame = _frame(results, ("day", *DRIFT_COLUMNS))
        return frame.sort_values(["feature", "day"], kind="stable").reset_index(drop=True)

    def since(self, feature: str, day: Any, value: str | None = None) -> DriftResult:
        """The drift of the days from ``day`` on (of the split's ``value``): what
        :func:`feature_drift` gives for the window from ``max(day, flt.start)`` (with the
        segment ``value``), with the KS left out. Equal to the last digit: the PSI bins are
        the reference's, and each day's counts per bin are exact, so their sums are the
        window's counts."""
        col = next((c for c in self.d.columns if c.name == feature), None)
        if col is None:
            raise QueryError(f"{feature!r} is not among the features of this drift_by_day")
        s = 0 if value is None else self.index.get(value)
        if s is None:
            return _result(col, _Counts(), None, None, 0, self.eps, self.watch, self.act)
        c = self.d.counts[s]
        days = [g for g in c.n_cur_rows if g >= day]
        n_cur = {name: {0: sum(per.get(g, 0) for g in days)} for name, per in c.n_cur.items()}
        counts = _Counts(c.n_ref_rows, {0: sum(c.n_cur_rows[g] for g in days)}, c.n_ref, n_cur)
        hist = self.d.hists.get((col.name, s))
        if hist is not None:
            mine = [hist.current[g] for g in days if g in hist.current]
            current = {0: tuple(int(x) for x in np.sum(mine, axis=0))} if mine else {}
            hist = _Hist(hist.labels, hist.lower, hist.upper, hist.reference, current,
                         hist.unseen)
        return _result(col, counts, hist, None, 0, self.eps, self.watch, self.act)


def drift_by_day(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                 features: str | Sequence[str] | None = None, split: str | None = None,
                 bins: int = DEFAULT_BINS, eps: float = DEFAULT_EPS,
                 watch: float = DEFAULT_WATCH, act: float = DEFAULT_ACT) -> DriftByDay:
    """PSI of every UTC day of ``flt`` against the reference, kept with its counts
    (:class:`DriftByDay`): ``.table()`` is :func:`daily_drift` with ``ks=False``, and
    ``.since(feature, day)`` the drift of the window from that day on, for any day, from the
    same one pass (the report's drift findings ask this for each feature that drifts).

    ``split``: a segment column; every value it takes in either window then gets its own
    reference edges and daily counts, as :func:`segment_psi` does, and ``.since(feature, day,
    value)`` is the drift within that value. When ``flt`` already holds values of the column,
    each value is read as ``flt`` itself (the Filter ORs them: :func:`segment_psi`).
    """
    if split is None:
        _check(bins, eps, watch, act)
        d = _drift(con, flt, features, bins, daily=True, ks=False)
        return DriftByDay(d, (), {}, eps, watch, act)
    return drift_by_day_splits(con, flt, features=features, splits=[split], bins=bins, eps=eps,
                               watch=watch, act=act)[split]


def drift_by_day_splits(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                        features: str | Sequence[str] | None = None, splits: Sequence[str],
                        bins: int = DEFAULT_BINS, eps: float = DEFAULT_EPS,
                        watch: float = DEFAULT_WATCH,
                        act: float = DEFAULT_ACT) -> dict[str, DriftByDay]:
    """:func:`drift_by_day` with ``split=column`` for each of ``splits``, by column, from
    shared scans (one fine-histogram scan and one resolving query for all of them)."""
    _check(bins, eps, watch, act)
    flt = resolve_model(con, flt)
    held = {c for c, _ in flt.segments}
    values = {column: _split_values(con, flt, column) for column in dict.fromkeys(splits)}
    # A column the Filter restricts, or without values, reads as the Filter itself.
    whole = [c for c, v in values.items() if c in held or not v]
    parts = [c for c in values if c not in whole]
    asked: list[tuple[str, tuple[str, ...]] | None] = [(c, values[c]) for c in parts]
    if whole:
        asked.append(None)
    if not asked:
        return {}
    found = _drifts(con, flt, features, bins, asked, daily=True, ks=False)
    out = {c: DriftByDay(d, values[c], {v: i for i, v in enumerate(values[c])}, eps, watch, act)
           for c, d in zip(parts, found)}
    for c in whole:
        out[c] = DriftByDay(found[-1], values[c], dict.fromkeys(values[c], 0), eps, watch, act)
    return out


@dataclass(frozen=True)
class DriftOverview:
    """:func:`drift_overview`: what the Debug page's drift tab shows, from one pass."""

    table: pd.DataFrame                     # feature_drift (with KS)
    daily: pd.DataFrame                     # daily_drift(ks=False)
    distributions: dict[str, pd.DataFrame]  # distribution, by feature


def drift_overview(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                   features: str | Sequence[str] | None = None, bins: int = DEFAULT_BINS,
                   eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH,
                   act: float = DEFAULT_ACT) -> DriftOverview:
    """:func:`feature_drift` (exact KS included), :func:`daily_drift` with ``ks=False`` and
    :func:`distribution` of every feature, each frame equal to its function's, from one
    fine-histogram scan and one resolving query: the whole window and its days are two keys
    of the same rows (a query per function read them three times)."""
    _check(bins, eps, watch, act)
    whole, days = _drifts(con, flt, features, bins, [None, None],
                          daily=[False, True], ks=[True, False])
    return DriftOverview(
        _ranked(whole, eps, watch, act), DriftByDay(days, (), {}, eps, watch, act).table(),
        {c.name: _distribution(whole, c, eps) for c in whole.columns})
