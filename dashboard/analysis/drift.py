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

How it runs (docs/metrics/drift.md, "Performance"): sorting every value is ~80% of a
direct KS, so the full sort is avoided. A block sample of the table places the fine bins. Then
per numeric column (1) one query counts every window, day or segment into a fine histogram over
an order-preserving transform of the value (a perfect hash table: the key and the bin are
bounded integers); the exact ECDFs at every fine-bin end give a lower bound on D and, per fine
bin, an upper bound of the gap inside it; (2) one query for all columns reads again only the
rows of the fine bins that could hold the maximum or hold a quantile edge, counted value by
value. Exact, because the ECDFs at a bin's end are those at its largest value and a skipped bin
provably holds no larger gap; only counts per bin and per resolved value reach Python. The
windows' conditions are split into the part they share (model, segments) and the parts that
tell them apart (times, versions, maturity), so telling a row's window costs two comparisons.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from lossboard.dashboard.analysis.base import (
    columns_with_role,
    model_info,
    predictions_columns,
    resolve_model,
)
from lossboard.dashboard.analysis.filters import Filter, Where
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

DEFAULT_BINS = 10
DEFAULT_EPS = 1e-4
DEFAULT_WATCH = 0.1
DEFAULT_ACT = 0.25
MAX_BINS = 1000
#: The bucket of current categories the reference window never had.
UNSEEN = "__unseen__"
#: The name that means "the model's score" in ``features`` (binary: p; multiclass: the top
#: class's probability after renormalising).
SCORE = "__score__"
#: scipy.stats.ks_2samp(method='auto') computes the exact p-value when both samples have at
#: most this many values (scipy's MAX_AUTO_N), the asymptotic one otherwise.
KS_EXACT_MAX_N = 10_000
#: Registry roles a named feature may have (activations are numeric inputs too).
FEATURE_ROLES = ("feature", "activation")
#: Fine bins per sample of the two-stage KS (at most: fewer when many days or segments share
#: one histogram). More bins: a dearer first pass, fewer rows in the second
#: (docs/metrics/drift.md, "Performance").
FINE_BINS = (1 << 14) - 1
#: Fine bins without KS (PSI only needs its quantile edges resolved): a small table counts
#: faster, and its few edge bins are read again whatever their size.
_PSI_FINE_BINS = 2047
#: Largest perfect hash table (keys x fine bins, as a power of two) the fine histogram may use.
_MAX_TABLE_BITS = 22
#: The block sample that places the fine bins: this percentage of the table's vectors, or,
#: when fewer than _MIN_SAMPLE_ROWS rows of the windows come out, a reservoir of the windows.
_SAMPLE_PERCENT = 1
_MIN_SAMPLE_ROWS = 2000
_RESERVOIR_ROWS = 20_000

REASONS = ("empty_reference_window", "empty_current_window", "no_reference_values",
           "no_current_values")
_NUMERIC_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|"
                           r"UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL)\b", re.I)
_INTEGER_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|"
                           r"UINTEGER|UBIGINT|UHUGEINT)$", re.I)
#: Integers up to this magnitude are exact in a DOUBLE, and so is ``v - base + 1``.
_EXACT_INT = float(1 << 52)


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


def ks_pvalue(d_max: float, d_min: float, n_reference: int, n_current: int,
              at_max: tuple[int, int], at_min: tuple[int, int]) -> tuple[float, float, str]:
    """scipy's two-sided ``ks_2samp`` statistic and p-value from the ECDF gaps.

    ``d_max`` / ``d_min`` are the largest / smallest ``F_ref(x) - F_cur(x)`` over the distinct
    values x, each computed as ``count_ref / n_ref - count_cur / n_cur`` in float64 (scipy's
    own arithmetic); ``at_max`` / ``at_min`` the (count_ref, count_cur) where they occur. As in
    scipy, ``D = max(d_max, clip(-d_min, 0, 1))``; then method ``'auto'``: when both sizes are at
    most 10,000 the exact p-value comes from scipy itself — ``ks_2samp`` of two 0/1 samples of
    the same sizes whose one ECDF gap is that count pair (the p-value depends only on D, n, m)
    — else the asymptotic ``kstwo.sf(D, round(n m / (n + m)))``, clipped to [0, 1]. Where
    scipy's exact computation fails and it falls back to the asymptotic one, ``method`` says
    ``'asymp'`` (scipy's warning is not passed on). Returns ``(statistic, p_value, method)``.
    """
    min_s = float(np.clip(-d_min, 0, 1))
    use_min = min_s > d_max
    d = min_s if use_min else float(d_max)
    c_ref, c_cur = at_min if use_min else at_max
    if max(n_reference, n_current) <= KS_EXACT_MAX_N:
        sample_ref = np.repeat([0.0, 1.0], [c_ref, n_reference - c_ref])
        sample_cur = np.repeat([0.0, 1.0], [c_cur, n_current - c_cur])
        if not math.isclose(abs(c_ref / n_reference - c_cur / n_current), d, abs_tol=1e-12):
            raise QueryError("ks_pvalue: the count pair does not give the statistic")
        with warnings.catch_warnings(record=True) as caught:
            # scipy falls back to the asymptotic p-value when the exact one fails numerically
            # (and warns); we report that in ks_method instead of passing the warning on.
            warnings.simplefilter("always")
            res = stats.ks_2samp(sample_ref, sample_cur)
        fell_back = any("Switching to method=asymp" in str(w.message) for w in caught)
        return float(res.statistic), float(res.pvalue), "asymp" if fell_back else "exact"
    m, n = sorted([float(n_reference), float(n_current)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p, "asymp"


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


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str          # numeric | categorical | score
    expr: str          # SQL over predictions aliased p
    valid: str         # SQL boolean over {v}
    integer: bool = False  # an integer SQL type: one fine bin per value is possible

    @property
    def numeric(self) -> bool:
        return self.kind != "categorical"


def _columns(con: duckdb.DuckDBPyConnection, flt: Filter,
             features: str | Sequence[str] | None) -> list[_Column]:
    registry = {name: (role, sql_type) for role in FEATURE_ROLES
                for name, sql_type in columns_with_role(con, role)}
    if features is None:
        names = sorted(n for n, (role, _) in registry.items() if role == "feature")
    else:
        names = [features] if isinstance(features, str) else list(features)
        if not names:
            raise QueryError("features is empty: name at least one feature (or leave it out)")
    out: list[_Column] = []
    for name in dict.fromkeys(names):
        if name == SCORE:
            task = model_info(con, flt.model).task
            expr = "p.p" if task == "binary" else "list_max(p.probs) / list_sum(p.probs)"
            out.append(_Column(SCORE, "score", expr, "coalesce(isfinite({v}), false)"))
            continue
        role, sql_type = registry.get(name, (None, None))
        if role not in FEATURE_ROLES:
            known = sorted(registry)
            raise QueryError(f"{name!r} is not a feature column (known: "
                             f"{', '.join(known) or 'none'}; {SCORE!r} means the score)")
        col = f"p.{quote_ident(name)}"
        if _NUMERIC_TYPE.match(sql_type or ""):
            out.append(_Column(name, "numeric", f"CAST({col} AS DOUBLE)",
                               "{v} IS NOT NULL AND NOT isnan({v})",
                               bool(_INTEGER_TYPE.match(sql_type or ""))))
        else:
            out.append(_Column(name, "categorical", f"CAST({col} AS VARCHAR)", "{v} IS NOT NULL"))
    return out


@dataclass(frozen=True)
class _Windows:
    """Rows of either window and the integer key that says which samples each row is in.

    ``key`` = ``segment * width + part``: part 0 for a row only in the reference window,
    ``1 + 2 g + r`` for a row of current group g (r = 1 when the row is in the reference window
    too: overlapping windows count it in both samples); ``width = 2 * len(groups) + 1``.
    ``groups`` maps the current group index to its public name (0, or the UTC day);
    ``segments`` the segment index to the segment value (``("",)`` without a split).
    """

    where: str
    key: str
    params: dict[str, Any]
    groups: tuple[Any, ...]
    segments: tuple[str, ...] = ("",)
    base: str = ""             # ``where`` without the split's condition (shared by splits)
    cond: str | None = None    # the split's condition: the row has one of its values

    @property
    def width(self) -> int:
        return 2 * len(self.groups) + 1

    @property
    def n_keys(self) -> int:
        return len(self.segments) * self.width


_DAY_US = 86_400_000_000


def _day_range(con: duckdb.DuckDBPyConnection, flt: Filter, cur_sql: str,
               params: dict[str, Any]) -> tuple[int, int]:
    """(first UTC day, number of days) the current window can touch, as epoch microseconds of
    the first midnight and a count; from the Filter's range, else from the rows."""
    if flt.start is not None and flt.end is not None:
        first_us, last_us = _epoch_us(flt.start), _epoch_us(flt.end) - 1
    else:
        row = _run(con, f"SELECT epoch_us(min(p.ts)), epoch_us(max(p.ts)) FROM predictions p "
                        f"WHERE {cur_sql}", params, "finding the days of the current window")[0]
        if row[0] is None:
            return 0, 1
        first_us, last_us = int(row[0]), int(row[1])
    origin = first_us // _DAY_US * _DAY_US
    return origin, (last_us - origin) // _DAY_US + 1


def _epoch_us(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _window_where(con: duckdb.DuckDBPyConnection, flt: Filter) -> tuple[Where, Where]:
    """The WHERE conditions of the reference and the current window (parameter names apart)."""
    cols = predictions_columns(con)
    return flt.reference().where(cols, alias="p", prefix="ref"), flt.where(cols, alias="p",
                                                                          prefix="cur")


#: The Filter fields :func:`_window_parts` knows how the two windows share.
_SPLIT_FIELDS = frozenset({"start", "end", "model", "versions", "segments", "maturity_hours",
                           "reference_start", "reference_end", "reference_version"})


def _window_parts(con: duckdb.DuckDBPyConnection, flt: Filter) -> tuple[Where, Where, Where]:
    """(common, reference-only, current-only) conditions: reference = common AND
    reference-only, current = common AND current-only.

    The windows share model and segments (``Filter.reference``), so the per-row test of which
    window a row is in compares only times (and versions, maturity): a model string compared
    twice per row per column cost a quarter of the fine histogram. A Filter field this split
    does not know keeps both conditions whole.
    """
    cols = predictions_columns(con)
    ref = flt.reference()
    if any(getattr(flt, f.name) != f.default for f in fields(Filter)
           if f.name not in _SPLIT_FIELDS):
        ref_w, cur_w = _window_where(con, flt)
        return Where("true"), ref_w, cur_w
    return (Filter(model=flt.model, segments=flt.segments).where(cols, alias="p", prefix="com"),
            Filter(start=ref.start, end=ref.end, versions=ref.versions).where(
                cols, alias="p", prefix="ref"),
            Filter(start=flt.start, end=flt.end, versions=flt.versions,
                   maturity_hours=flt.maturity_hours).where(cols, alias="p", prefix="cur"))


def _windows(con: duckdb.DuckDBPyConnection, flt: Filter, daily: bool,
             split: tuple[str, tuple[str, ...]] | None = None, tag: str = "d") -> _Windows:
    """The rows of ``flt.reference()`` and ``flt``; ``daily``: one current group per UTC day;
    ``split``: (segment column, its values): one pair of samples per value (rows where the
    column is NULL or another value belong to none). ``tag``: the prefix of the split's
    parameters (several splits share one scan: :func:`_drifts`)."""
    common, ref_w, cur_w = _window_parts(con, flt)
    params: dict[str, Any] = {**common.params, **ref_w.params, **cur_w.params}
    where = f"({common.sql}) AND (({ref_w.sql}) OR ({cur_w.sql}))"
    groups: tuple[Any, ...] = (0,)
    day = "0"
    if daily:
        # The UTC calendar day as whole days since a UTC midnight: integer arithmetic on
        # epoch_us, no ICU time zone (docs/benchmarks.md, "Analysis and report"), and a
        # bounded integer, so that DuckDB can count into a perfect hash table.
        origin, n_days = _day_range(con, flt, f"({common.sql}) AND ({cur_w.sql})",
                                    {**common.params, **cur_w.params})
        params.update(d_origin=origin, d_last=n_days - 1)
        day = "least(greatest((epoch_us(p.ts) - $d_origin) // 86400000000, 0), $d_last)"
        first = (_EPOCH + timedelta(microseconds=origin)).date()
        groups = tuple(first + timedelta(days=i) for i in range(n_days))
    width = 2 * len(groups) + 1
    key = (f"CASE WHEN coalesce({cur_w.sql}, false) THEN 1 + 2 * {day} + "
           f"CASE WHEN coalesce({ref_w.sql}, false) THEN 1 ELSE 0 END ELSE 0 END")
    segments: tuple[str, ...] = ("",)
    base, cond = where, None
    if split is not None:
        column, segments = split
        value = f"CAST(p.{quote_ident(column)} AS VARCHAR)"
        cond = f"list_contains(${tag}_segments, {value})"
        where = f"{where} AND {cond}"
        params.update({f"{tag}_segments": list(segments), f"{tag}_width": width})
        # The segment index as a CASE over positions (code-made integers): its bounds are then
        # known, so the (segment, window) key still counts into a perfect hash table.
        index = " ".join(f"WHEN {i + 1} THEN {i}" for i in range(len(segments)))
        key = (f"(CASE list_position(${tag}_segments, {value}) {index} ELSE 0 END) "
               f"* ${tag}_width + {key}")
    params[f"{tag}_keymax"] = len(segments) * width - 1
    # Clamped to its known range: DuckDB then knows the key's bounds (statistics) and counts
    # into a perfect hash table instead of hashing (docs/metrics/drift.md, "Performance").
    return _Windows(where=where, key=f"least(greatest({key}, 0), ${tag}_keymax)", params=params,
                    groups=groups, segments=segments, base=base, cond=cond)


@dataclass(frozen=True)
class _Keys:
    """What a key says, per row: segment index, in the reference sample, current sample
    index ``segment * len(groups) + g`` (-1: not current)."""

    segment: np.ndarray
    is_ref: np.ndarray
    unit: np.ndarray


def _decode(win: _Windows, key: np.ndarray) -> _Keys:
    key = key.astype(np.int64)
    segment, part = np.divmod(key, win.width)
    is_ref = (part == 0) | ((part >= 2) & (part % 2 == 0))
    unit = np.where(part >= 1, segment * len(win.groups) + (part - 1) // 2, -1)
    return _Keys(segment, is_ref, unit)


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``sql`` refers to (DuckDB refuses unused ones; the window and key
    parameters are shared by queries that need only some of them)."""
    names = set(_PARAM.findall(sql))
    return {k: v for k, v in params.items() if k in names}


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any],
         what: str) -> list[tuple]:
    try:
        return con.execute(sql, _used(sql, params)).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"drift: {what} failed: {exc}") from exc


def _run_numpy(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any],
               what: str) -> dict[str, np.ndarray]:
    try:
        out = con.execute(sql, _used(sql, params)).fetchnumpy()
    except duckdb.Error as exc:
        raise QueryError(f"drift: {what} failed: {exc}") from exc
    return {name: np.ma.getdata(values) for name, values in out.items()}


@contextlib.contextmanager
def _perfect_hash(con: duckdb.DuckDBPyConnection, bits: int) -> Iterator[None]:
    """Let DuckDB count into a perfect hash table of up to ``bits`` key bits (its default, 12,
    is below the fine histogram's 15 to 21), and put the caller's setting back afterwards."""
    old = con.execute("SELECT current_setting('perfect_ht_threshold')").fetchone()[0]
    if bits <= int(old):
        yield
        return
    con.execute("SET perfect_ht_threshold = $bits", {"bits": bits})
    try:
        yield
    finally:
        con.execute("SET perfect_ht_threshold = $bits", {"bits": int(old)})


# ---------------------------------------------------------------------------------------------
# the queries

@dataclass
class _Counts:
    """Per segment: rows of the reference and of each current group; values per column."""

    n_ref_rows: int = 0
    n_cur_rows: dict[Any, int] = field(default_factory=dict)
    n_ref: dict[str, int] = field(default_factory=dict)
    n_cur: dict[str, dict[Any, int]] = field(default_factory=dict)


def _add_counts(win: _Windows, counts: list[_Counts], col: _Column, keys: _Keys,
                n: np.ndarray, valid: np.ndarray, rows: bool) -> None:
    """Row and value counts of one column's (key, bin) counts; ``rows``: set the row counts
    too (every column's query sees the same rows)."""
    n_groups = len(win.groups)
    for s, c in enumerate(counts):
        here = keys.segment == s
        ref = here & keys.is_ref
        c.n_ref[col.name] = int(n[ref & valid].sum())
        cur_total = np.bincount(keys.unit[here & (keys.unit >= 0)] - s * n_groups,
                                weights=n[here & (keys.unit >= 0)], minlength=n_groups)
        cur_valid = np.bincount(keys.unit[here & valid & (keys.unit >= 0)] - s * n_groups,
                                weights=n[here & valid & (keys.unit >= 0)], minlength=n_groups)
        present = [g for g in range(n_groups) if cur_total[g] > 0]
        c.n_cur[col.name] = {win.groups[g]: int(cur_valid[g]) for g in present}
        if rows:
            c.n_ref_rows = int(n[ref].sum())
            c.n_cur_rows = {win.groups[g]: int(cur_total[g]) for g in present}


def _quantile_ranks(n: int, bins: int) -> list[int]:
    """0-based ranks of the inner edges: the ceil(n i / bins)-th smallest, i = 1 .. bins - 1
    (exact integer arithmetic; DuckDB's quantile_disc with the fraction i / bins)."""
    return sorted({max(1, -(-n * i // bins)) - 1 for i in range(1, bins)})


#: Levels of the sample quantiles that place the fine bins (only their speed depends on them):
#: the range kept for the fine bins (0.1% .. 99.9%) and the shape in between.
_KNOT_LEVELS = [0.001, *[i / 32 for i in range(1, 32)], 0.999]
#: A transform is good enough when its fullest fine bin holds at most this many times the
#: average (estimated from the sample quantiles); cheaper transforms are tried first.
_MAX_PEAK = 4.0


def _knots(con: duckdb.DuckDBPyConnection, win: _Windows, columns: list[_Column]
           ) -> dict[str, list[float] | None]:
    """Per numeric column: sample quantiles at :data:`_KNOT_LEVELS` plus the sample's minimum
    and maximum (finite values), or None without any."""
    numeric = [c for c in columns if c.numeric]
    if not numeric:
        return {}
    values = ", ".join(f"CASE WHEN {c.valid.format(v=c.expr)} AND isfinite({c.expr}) "
                       f"THEN {c.expr} END AS v{i}" for i, c in enumerate(numeric))
    aggs = ", ".join(f"quantile_cont(v{i}, $d_levels), min(v{i}), max(v{i})"
                     for i in range(len(numeric)))
    params = {**win.params, "d_levels": _KNOT_LEVELS}
    # A block sample of the table (whole vectors: almost free), or, when the windows hold too
    # few of its rows, a reservoir sample of the windows' rows (cheap then: they are few).
    sources = ((f"SELECT {values} FROM predictions p TABLESAMPLE {_SAMPLE_PERCENT}% "
                f"(system, 42) WHERE {win.where}"),
               (f"SELECT {values} FROM predictions p WHERE {win.where} "
                f"USING SAMPLE reservoir({_RESERVOIR_ROWS} ROWS) REPEATABLE (42)"))
    for source in sources:
        row = _run(con, f"SELECT count(*), {aggs} FROM ({source})", params,
                   "sampling values to place the fine bins")[0]
        if row[0] >= _MIN_SAMPLE_ROWS:
            break
    out: dict[str, list[float] | None] = {}
    for i, c in enumerate(numeric):
        q, lo, hi = row[1 + 3 * i: 4 + 3 * i]
        out[c.name] = None if q is None else [*q, lo, hi]
    return out


def _shapes(knots: list[float]) -> list[tuple[str, Any, dict[str, float]]]:
    """The candidate transforms t(v), cheapest first: (SQL over ``{v}`` with ``{p}``-prefixed
    parameters, the same in Python, parameters). Each is monotone and uses only correctly
    rounded operations, so v1 <= v2 implies t(v1) <= t(v2)."""
    q = knots[:len(_KNOT_LEVELS)]
    q_lo, q_hi, centre = q[0], q[-1], q[len(q) // 2]
    scale = q[24] - q[8]
    if not scale > 0:
        scale = (q_hi - q_lo) if q_hi > q_lo else 1.0
    return [
        ("{v}", lambda x: x, {}),
        # square roots from one end: right- (left-) skewed values spread more evenly
        ("sqrt(greatest({v} - ${p}_lo, 0))", lambda x: math.sqrt(max(x - q_lo, 0.0)),
         {"lo": q_lo}),
        ("-sqrt(greatest(${p}_hi - {v}, 0))", lambda x: -math.sqrt(max(q_hi - x, 0.0)),
         {"hi": q_hi}),
        # a signed square root around the median: heavy tails on both sides
        ("sign(({v} - ${p}_c) / ${p}_s) * sqrt(abs(({v} - ${p}_c) / ${p}_s))",
         lambda x: math.copysign(math.sqrt(abs((x - centre) / scale)), (x - centre) / scale),
         {"c": centre, "s": scale}),
    ]


def _peak(knots: list[float], t: Any) -> float:
    """How many times the average mass the fullest fine bin would hold under t, from the
    sample quantiles (point masses, where quantiles tie, are left out: one value per bin)."""
    q = knots[:len(_KNOT_LEVELS)]
    ts = [t(x) for x in q]
    span = ts[-1] - ts[0]
    if not (span > 0 and math.isfinite(span)):
        return math.inf
    # Widths as shares of the span: no overflow for tiny or huge values.
    share = np.diff(ts) / span
    mass = np.diff(_KNOT_LEVELS) / (_KNOT_LEVELS[-1] - _KNOT_LEVELS[0])
    dense = share > 0
    if not dense.any():
        return math.inf
    with np.errstate(over="ignore"):
        return float(np.max(mass[dense] / share[dense]))


#: The value and fine-bin columns of :func:`_binned_sql` (names no user column takes).
_V, _B = "__drift_v", "__drift_b"


def _unit_bins(knots: list[float] | None, n_fine: int) -> float | None:
    """For an integer column whose sampled range fits in the inner fine bins: the value of
    fine bin 1 (``base``), so that bin b in [1, n_fine - 2] holds exactly the value
    ``base + b - 1`` (``v - base + 1``, exact in DOUBLE below 2^52). Such a bin needs no
    second pass: its one value and the counts at its end are its ECDF (a quantile edge or a
    KS gap there is read off the counts). Values outside the range go to bins 0 and
    n_fine - 1, which are resolved as usual. None when the range does not fit."""
    if not knots:
        return None
    lo, hi = knots[-2], knots[-1]
    spare = (n_fine - 2) - (hi - lo + 1)
    if spare < 0 or max(abs(lo), abs(hi)) + n_fine >= _EXACT_INT:
        return None
    # Centred, so that values just outside the sample's range still get a bin of their own.
    return float(lo - spare // 2)


def _fine_bin_sql(knots: list[float] | None, n_fine: int, params: dict[str, Any],
                  prefix: str, base: float | None = None, value: str = _V) -> str:
    """An order-preserving fine-bin index of ``v`` in [0, n_fine).

    A transform t (linear, a square root from either end, or a signed square root around the
    median: the cheapest whose fullest bin the sample says is not too full) whose sample
    0.1% .. 99.9% range is cut into n_fine - 2 equal-width bins; anything outside goes to bin
    0 or n_fine - 1. Only monotone, correctly rounded operations (subtract, divide, sqrt,
    multiply, add, clamp, round to an integer), so v1 <= v2 implies bin(v1) <= bin(v2), -inf /
    +inf included. That is all exactness needs: how well the sample fits only changes the
    speed (the rows the second stage reads). ``base`` (:func:`_unit_bins`): one bin per
    integer instead. ``value``: the column holding v.
    """
    p = prefix
    if base is not None:
        params.update({f"{p}_base": base, f"{p}_top": n_fine - 1})
        return f"CAST(least(greatest({value} - ${p}_base + 1, 0), ${p}_top) AS INTEGER)"
    if not knots:
        return "0"
    shapes = _shapes(knots)
    peaks = [_peak(knots, t) for _, t, _ in shapes]
    good = [i for i, pk in enumerate(peaks) if pk <= _MAX_PEAK]
    pick = good[0] if good else int(np.argmin(peaks))
    sql, t, extra = shapes[pick]
    q_lo, q_hi, lo, hi = knots[0], knots[len(_KNOT_LEVELS) - 1], knots[-2], knots[-1]
    if not math.isfinite(peaks[pick]):
        # Too few distinct sample values to shape anything: linear over their range (or
        # around the one value).
        sql, t, extra = shapes[0]
        q_lo, q_hi = (lo, hi) if hi > lo else (lo - 1.0, lo + 1.0)
    t_lo, t_hi = t(q_lo), t(q_hi)
    width = (n_fine - 2) / (t_hi - t_lo) if t_hi > t_lo else math.nan
    offset = 1 - t_lo * width
    if not (math.isfinite(width) and math.isfinite(offset)):
        return "0"
    params.update({f"{p}_{k}": v for k, v in extra.items()})
    params.update({f"{p}_a": width, f"{p}_b": offset, f"{p}_top": n_fine - 1})
    expr = sql.format(v=value, p=p)
    return f"CAST(least(greatest(({expr}) * ${p}_a + ${p}_b, 0), ${p}_top) AS INTEGER)"


def _fine_bins(win: _Windows) -> int:
    """Fine bins per sample for this key range: FINE_BINS for one current window, twice as
    many for days (a day's sample is small, so its gaps inside a bin are relatively larger and
    would send more bins to the second stage), fewer when the perfect hash table (keys x bins)
    would exceed 2^_MAX_TABLE_BITS."""
    wanted = (FINE_BINS + 1) * (2 if len(win.groups) > 1 else 1) - 1
    key_bits = (win.n_keys + 1).bit_length()
    return max(3, min(wanted, (1 << max(_MAX_TABLE_BITS - 1 - key_bits, 2)) - 1))


def _binned_sql(win: _Windows, col: _Column, fine: str, prefix: str,
                only_bins: str | None = None) -> str:
    """The windows' rows as (key ``k``, fine bin ``b``, value ``v``), missing values in bin
    ``$<prefix>_miss``. ``only_bins``: a list parameter; only rows of those bins are kept, and
    before the key is computed (the second stage keeps a few bins of millions of rows)."""
    keep = f"p.{_B} IN (SELECT unnest(${only_bins}))" if only_bins else "true"
    return f"""SELECT {win.key} AS k, p.{_B} AS b, p.{_V} AS v FROM (
  SELECT p.*, CASE WHEN {col.valid.format(v=_V)} THEN {fine} ELSE ${prefix}_miss END AS {_B}
  FROM (SELECT p.*, {col.expr} AS {_V} FROM predictions p WHERE {win.where}) p) p
WHERE {keep}"""


@dataclass(frozen=True)
class _Fine:
    """How one numeric column is cut into fine bins (:func:`_fine_bin_sql`)."""

    col: _Column
    prefix: str                # its parameter names' prefix
    base: float | None         # :func:`_unit_bins`
    first: bool                # the call's first column: it sets the row counts


def _stage1(con: duckdb.DuckDBPyConnection, wins: list[_Windows], fines: list[_Fine],
            knots: dict[str, list[float] | None], n_fine: int,
            params: dict[str, Any]) -> list[list[dict[str, np.ndarray]]]:
    """Counts per (key, fine bin) of every numeric column in every split (``wins``), in one
    scan: one grouping set per (split, column); a query per column read the rows and
    computed their keys once per column, at 1.5 times the cost. Returns, per split, per
    column, the arrays ``k``, ``b``, ``n``. Counts only: a bin's smallest and largest value
    would tell single-valued bins (exact already) apart, but cost a fifth of the query;
    integer columns get one value per bin instead (:func:`_unit_bins`)."""
    values = ", ".join(f"{f.col.expr} AS {_V}{j}" for j, f in enumerate(fines))
    binned = ", ".join(
        f"CASE WHEN {f.col.valid.format(v=f'{_V}{j}')} THEN "
        f"{_fine_bin_sql(knots.get(f.col.name), n_fine, params, f.prefix, f.base, f'{_V}{j}')}"
        f" ELSE ${f.prefix}_miss END AS b{j}" for j, f in enumerate(fines))
    # A row outside a split's values (NULL there) gets that split's key n_keys, dropped below:
    # the splits share the scan, so their own conditions move into their keys.
    keys = ", ".join((w.key if w.cond is None else
                      f"CASE WHEN {w.cond} THEN {w.key} ELSE {w.n_keys} END") + f" AS k{i}"
                     for i, w in enumerate(wins))
    rows = (f"SELECT {keys}, {binned} FROM (SELECT p.*, {values} FROM predictions p "
            f"WHERE {wins[0].base}) p")
    sets = [(i, j) for i in range(len(wins)) for j in range(len(fines))]
    if len(sets) == 1:
        sql = f"SELECT 0 AS i, k0 AS k, b0 AS b, count(*)::BIGINT AS n FROM ({rows}) GROUP BY k0, b0"
    else:
        which = " ".join(f"WHEN grouping(k{i}) = 0 AND grouping(b{j}) = 0 THEN {x}"
                         for x, (i, j) in enumerate(sets))
        sql = (f"SELECT CASE {which} END AS i, "
               f"coalesce({', '.join(f'k{i}' for i in range(len(wins)))}) AS k, "
               f"coalesce({', '.join(f'b{j}' for j in range(len(fines)))}) AS b, "
               f"count(*)::BIGINT AS n FROM ({rows}) GROUP BY GROUPING SETS "
               f"({', '.join(f'(k{i}, b{j})' for i, j in sets)})")
    n_keys = max(w.n_keys for w in wins) + 1
    bits = (n_keys + 1).bit_length() + (n_fine + 2).bit_length() + 1
    with _perfect_hash(con, min(bits, _MAX_TABLE_BITS + 2)):
        # Row order does not matter: the counts are scattered into arrays by key and bin.
        data = _run_numpy(con, sql, params, "fine histograms of "
                          + ", ".join(repr(f.col.name) for f in fines))
    index = data.pop("i")
    out: list[list[dict[str, np.ndarray]]] = [[] for _ in wins]
    for x, (i, j) in enumerate(sets):
        mine = (index == x) & (data["k"] < wins[i].n_keys)
        out[i].append({name: v[mine] for name, v in data.items()})
    return out


@dataclass(frozen=True)
class _Hist:
    """PSI bins of one column: labels and edges, reference counts, current counts per group."""

    labels: tuple[str, ...]
    lower: tuple[float | None, ...]
    upper: tuple[float | None, ...]
    reference: tuple[int, ...]
    current: dict[Any, tuple[int, ...]]
    unseen: bool = False  # the last bin is the unseen-categories bucket

    def kept(self, g: Any) -> list[int]:
        """Bins shown for group g: all, except an empty unseen bucket."""
        last = len(self.labels) - 1
        return [i for i in range(len(self.labels))
                if not (self.unseen and i == last and self.current[g][i] == 0)]


@dataclass(frozen=True)
class _KS:
    statistic: float
    pvalue: float
    method: str


class _Gaps:
    """The running largest and smallest ECDF gap of one pair of samples (scipy's float64
    ``r / n1 - c / n2``) and the count pairs where they occur."""

    def __init__(self) -> None:
        self.dmax = -math.inf
        self.dmin = math.inf
        self.at_max: tuple[int, int] = (0, 0)
        self.at_min: tuple[int, int] = (0, 0)

    def add(self, r_le: np.ndarray, c_le: np.ndarray, n1: int, n2: int) -> None:
        if not len(r_le):
            return
        gap = r_le / n1 - c_le / n2
        i, j = int(np.argmax(gap)), int(np.argmin(gap))
        if gap[i] > self.dmax:
            self.dmax, self.at_max = float(gap[i]), (int(r_le[i]), int(c_le[i]))
        if gap[j] < self.dmin:
            self.dmin, self.at_min = float(gap[j]), (int(r_le[j]), int(c_le[j]))


def _exact_products(n1: int, n2: int) -> type:
    """The dtype in which ``count * n`` products are exact: int64 while n1 n2 < 2^62."""
    return np.int64 if n1 * n2 < (1 << 62) else object


@dataclass
class _Stage1:
    """One numeric column after the fine histogram, for every pair of samples."""

    col: _Column
    fine: str              # the fine-bin SQL (_fine_bin_sql)
    prefix: str            # its parameter names' prefix
    ref: np.ndarray        # (segments, bins) reference counts
    cur: np.ndarray        # (units, bins) current counts
    gaps: dict[int, _Gaps]                 # unit -> gaps so far
    edges: dict[int, dict[int, tuple[float, int, dict[int, int]]]]  # segment -> rank -> edge
    resolve: np.ndarray    # bins to read value by value
    pending: dict[int, list[int]]          # segment -> ranks whose bin must be resolved
    need: dict[int, np.ndarray] = field(default_factory=dict)  # unit -> its bins to resolve
    c_le_at: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _numeric_stage1(win: _Windows, col: _Column, fine: str, prefix: str,
                    data: dict[str, np.ndarray], keys: _Keys, n_fine: int, bins: int,
                    ks: bool, base: float | None = None) -> _Stage1:
    """Counts per sample and fine bin, the KS gaps at the bin ends, and which bins the second
    pass must read; ``base``: bins 1 .. n_fine - 2 hold one value each (:func:`_unit_bins`),
    so their quantile edges and gaps are read off the counts here."""
    n_seg, n_groups = len(win.segments), len(win.groups)
    b, n = data["b"].astype(np.int64), data["n"].astype(np.int64)
    valid = b < n_fine
    ref = np.zeros((n_seg, n_fine), dtype=np.int64)
    sel = valid & keys.is_ref
    np.add.at(ref, (keys.segment[sel], b[sel]), n[sel])
    cur = np.zeros((n_seg * n_groups, n_fine), dtype=np.int64)
    sel = valid & (keys.unit >= 0)
    np.add.at(cur, (keys.unit[sel], b[sel]), n[sel])
    cur_le = np.cumsum(cur, axis=1)
    gaps: dict[int, _Gaps] = {}
    edges: dict[int, dict[int, tuple[float, int, dict[int, int]]]] = {}
    pending: dict[int, list[int]] = {}
    need: dict[int, np.ndarray] = {}
    resolve = np.zeros(n_fine, dtype=bool)
    single = np.zeros(n_fine, dtype=bool)  # bins holding one known value
    if base is not None:
        single[1:n_fine - 1] = True
    for s in range(n_seg):
        r = ref[s]
        r_le = np.cumsum(r)
        n1 = int(r_le[-1])
        units = [u for u in range(s * n_groups, (s + 1) * n_groups) if cur_le[u, -1] > 0]
        if n1 == 0 or not units:
            continue
        edges[s], pending[s] = {}, []
        edge_bins = np.zeros(n_fine, dtype=bool)
        for k in _quantile_ranks(n1, bins):
            # The k-th smallest value is in the bin where the cumulative count passes k.
            at = int(np.searchsorted(r_le, k, side="right"))
            if single[at]:
                edges[s][k] = (base + at - 1, int(r_le[at]),
                               {u: int(cur_le[u, at]) for u in units})
                continue
            pending[s].append(k)
            edge_bins[at] = True
        resolve |= edge_bins
        for u in units:
            need[u] = edge_bins.copy()
        if not ks:
            continue
        for u in units:
            c, c_le = cur[u], cur_le[u]
            n2 = int(c_le[-1])
            pts = (r > 0) | (c > 0)
            g = gaps[u] = _Gaps()
            g.add(r_le[pts], c_le[pts], n1, n2)
            # Gaps as exact integers, r_le n2 - c_le n1: a bin whose bound reaches the
            # largest gap at the bin ends (and is above 0) may hold the maximum inside it, or
            # an equal gap that rounds to a larger float; any other bin provably does not.
            dt = _exact_products(n1, n2)
            rl, cl = r_le.astype(dt), c_le.astype(dt)
            rt, ct = rl - r.astype(dt), cl - c.astype(dt)
            # Only D = max(d_max, -d_min) matters (ks_pvalue): a bin must be read when its
            # bound in either direction reaches the largest gap of *both* directions at the
            # bin ends. A positive gap below the negative side's largest cannot be D, so
            # d_max may stay below its true value then (and vice versa); D and the pair where
            # it occurs stay exact.
            top = max(0, (rl[pts] * n2 - cl[pts] * n1).max(), (cl[pts] * n1 - rl[pts] * n2).max())
            up = rl * n2 - ct * n1
            down = cl * n1 - rt * n2
            need[u] |= pts & ~single & (((up >= top) & (up > 0)) | ((down >= top) & (down > 0)))
            resolve |= need[u]
    return _Stage1(col, fine, prefix, ref, cur, gaps, edges, resolve, pending,
                   {u: np.flatnonzero(m) for u, m in need.items()})


def _stage2_sql(win: _Windows, st: _Stage1, i: int, params: dict[str, Any]) -> str:
    """The rows of the fine bins to resolve of one column (in one split), counted per (key,
    value); ``i`` tells the statement's rows apart in a UNION."""
    params[f"{st.prefix}_bins{i}"] = np.flatnonzero(st.resolve).tolist()
    binned = _binned_sql(win, st.col, st.fine, st.prefix, only_bins=f"{st.prefix}_bins{i}")
    return f"SELECT {i} AS i, k, b, v, count(*)::BIGINT AS n FROM ({binned}) GROUP BY k, b, v"


def _numeric_stage2(win: _Windows, st: _Stage1, rows: dict[str, np.ndarray],
                    keys: _Keys) -> None:
    """Every distinct value of the resolved bins: exact ECDF gaps and quantile edges.

    Each sample pair is evaluated only over the bins it asked for (a day's candidates are a
    small part of all days' together), at every value of either sample there.
    """
    n_groups = len(win.groups)
    # Sorted by value, the values of one fine bin are consecutive (the bins keep the order).
    values, index = np.unique(rows["v"], return_inverse=True)
    n = rows["n"].astype(np.int64)
    bin_of = np.empty(len(values), dtype=np.int64)
    bin_of[index] = rows["b"]
    n1 = st.ref.sum(axis=1)
    n2 = st.cur.sum(axis=1)
    r_lt_bin = np.cumsum(st.ref, axis=1) - st.ref
    c_lt_bin = np.cumsum(st.cur, axis=1) - st.cur

    def running(counts: np.ndarray, bins_: np.ndarray, before_bin: np.ndarray) -> np.ndarray:
        # Cumulative counts at each value (whole bins, values sorted): the values before its
        # fine bin, plus those of the same bin up to it.
        cum = np.cumsum(counts)
        first = np.flatnonzero(np.r_[True, bins_[1:] != bins_[:-1]])
        run = np.repeat(first, np.diff(np.r_[first, len(bins_)]))
        return before_bin[bins_] + cum - cum[run] + counts[run]

    order = np.argsort(keys.unit, kind="stable")
    bounds = np.searchsorted(keys.unit[order], np.arange(len(st.cur) + 1))
    for s in range(len(win.segments)):
        mine = keys.is_ref & (keys.segment == s)
        ref = np.bincount(index[mine], weights=n[mine], minlength=len(values)).astype(np.int64)
        r_le = running(ref, bin_of, r_lt_bin[s])
        units = [u for u in range(s * n_groups, (s + 1) * n_groups) if n2[u] > 0]
        for u in units:
            need = st.need.get(u)
            at = np.flatnonzero(np.isin(bin_of, need)) if need is not None else np.arange(
                len(values))
            rows_u = order[bounds[u]:bounds[u + 1]]
            pos = np.searchsorted(at, index[rows_u])
            ok = (pos < len(at)) & (at[np.minimum(pos, len(at) - 1)] == index[rows_u])
            cur = np.bincount(pos[ok], weights=n[rows_u][ok], minlength=len(at)).astype(np.int64)
            c_le = running(cur, bin_of[at], c_lt_bin[u])
            if u in st.gaps:
                pts = (ref[at] > 0) | (cur > 0)
                st.gaps[u].add(r_le[at][pts], c_le[pts], int(n1[s]), int(n2[u]))
            st.c_le_at[u] = (at, c_le)
        ref_le_bin = np.cumsum(st.ref[s])
        for k in st.pending.get(s, []):
            # The k-th value lies in the bin where the reference's cumulative count passes k;
            # inside that bin (values sorted) it is the first value whose r_le exceeds k.
            inside = np.flatnonzero(bin_of == np.searchsorted(ref_le_bin, k, side="right"))
            i = int(inside[np.searchsorted(r_le[inside], k, side="right")])
            cur_le = {}
            for u in units:
                at, c_le = st.c_le_at[u]
                cur_le[u] = int(c_le[np.searchsorted(at, i)])
            st.edges[s][k] = (float(values[i]), int(r_le[i]), cur_le)


def _numeric_hist(st: _Stage1, s: int, groups: tuple[Any, ...]) -> _Hist:
    """PSI bins of segment s from its quantile edges (equal edges merged)."""
    edges = st.edges[s]
    n_groups = len(groups)
    n1 = int(st.ref[s].sum())
    values = sorted({e[0] for e in edges.values()})
    first = {e[0]: k for k, e in sorted(edges.items(), reverse=True)}
    reference = tuple(int(x) for x in np.diff([0, *[edges[first[v]][1] for v in values], n1]))
    current = {}
    for u in range(s * n_groups, (s + 1) * n_groups):
        n2 = int(st.cur[u].sum())
        if n2 > 0:
            le = [edges[first[v]][2][u] for v in values]
            current[groups[u - s * n_groups]] = tuple(int(x) for x in np.diff([0, *le, n2]))
    lower = (-math.inf, *values)
    upper = (*values, math.inf)
    labels = tuple(f"({_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(hi) else f"({_fmt(lo)}, +inf)"
                   for lo, hi in zip(lower, upper))
    return _Hist(labels, lower, upper, reference, current)


def _fmt(x: float) -> str:
    return "-inf" if x == -math.inf else "+inf" if x == math.inf else f"{x:.6g}"


def _categorical(con: duckdb.DuckDBPyConnection, win: _Windows, col: _Column,
                 counts: list[_Counts], rows: bool) -> dict[int, _Hist]:
    """Category counts per key, in one GROUP BY (NULL: missing); one _Hist per segment."""
    sql = f"""SELECT k, v, count(*)::BIGINT AS n
FROM (SELECT {win.key} AS k, {col.expr} AS v FROM predictions p WHERE {win.where})
GROUP BY k, v ORDER BY k, v NULLS FIRST"""
    data = _run(con, sql, win.params, f"category counts of {col.name!r}")
    key = np.array([r[0] for r in data], dtype=np.int64)
    n = np.array([r[2] for r in data], dtype=np.int64)
    keys = _decode(win, key)
    valid = np.array([r[1] is not None for r in data], dtype=bool)
    _add_counts(win, counts, col, keys, n, valid, rows)
    n_groups = len(win.groups)
    hists: dict[int, _Hist] = {}
    for s in range(len(win.segments)):
        ref: dict[str, int] = {}
        for i, (_k, v, cnt) in enumerate(data):
            if valid[i] and keys.segment[i] == s and keys.is_ref[i]:
                ref[v] = ref.get(v, 0) + cnt
        seen = sorted(ref, key=lambda v: (-ref[v], v))
        index = {v: i for i, v in enumerate(seen)}
        current: dict[Any, list[int]] = {}
        for i, (_k, v, cnt) in enumerate(data):
            u = int(keys.unit[i])
            if valid[i] and keys.segment[i] == s and u >= 0:
                bins_ = current.setdefault(win.groups[u - s * n_groups], [0] * (len(seen) + 1))
                bins_[index.get(v, len(seen))] += cnt
        labels = (*seen, UNSEEN)
        none = (None,) * len(labels)
        hists[s] = _Hist(labels, none, none, (*[ref[v] for v in seen], 0),
                         {g: tuple(c) for g, c in current.items()}, unseen=True)
    return hists


# ---------------------------------------------------------------------------------------------
# assembling results

@dataclass
class _Drift:
    """Everything the public functions assemble their rows from."""

    win: _Windows
    columns: list[_Column]
    counts: list[_Counts]                          # per segment
    hists: dict[tuple[str, int], _Hist]            # (column, segment) -> PSI bins
    ks: dict[tuple[str, int], dict[Any, _KS]]      # (column, segment) -> group -> KS


def _drift(con: duckdb.DuckDBPyConnection, flt: Filter, features: str | Sequence[str] | None,
           bins: int, *, daily: bool = False, ks: bool = True,
           split: tuple[str, tuple[str, ...]] | None = None) -> _Drift:
    """Counts, PSI bins and (``ks``) exact KS of the columns, per segment and group."""
    return _drifts(con, flt, features, bins, [split], daily=daily, ks=ks)[0]


def _drifts(con: duckdb.DuckDBPyConnection, flt: Filter, features: str | Sequence[str] | None,
            bins: int, splits: Sequence[tuple[str, tuple[str, ...]] | None], *,
            daily: bool | Sequence[bool] = False,
            ks: bool | Sequence[bool] = True) -> list[_Drift]:
    """:func:`_drift` for each of ``splits`` (None: no split), sharing the scans; ``daily``
    and ``ks`` for all of them or one per split (the whole window with KS beside its days
    without: :func:`drift_overview`).

    Per call: a block sample (fine-bin placement); one fine-histogram scan for every numeric
    column and split (which also counts rows and missing values); one query resolving the fine
    bins that need it, for every column and split at once; per categorical column and split
    one GROUP BY category.
    """
    flt = resolve_model(con, flt)
    columns = _columns(con, flt, features)
    dailies = [daily] * len(splits) if isinstance(daily, bool) else list(daily)
    kss = [ks] * len(splits) if isinstance(ks, bool) else list(ks)
    wins = [_windows(con, flt, day, split, tag="d" if len(splits) == 1 else f"w{i}")
            for i, (split, day) in enumerate(zip(splits, dailies))]
    knots = _knots(con, wins[0], columns)
    n_fine = min(_fine_bins(w) for w in wins)
    if not any(kss):
        n_fine = min(n_fine, _PSI_FINE_BINS)
    counts = [[_Counts() for _ in w.segments] for w in wins]
    hists: list[dict[tuple[str, int], _Hist]] = [{} for _ in wins]
    fines: list[_Fine] = []
    for i, col in enumerate(columns):
        if not col.numeric:
            for w, c, h in zip(wins, counts, hists):
                for s, hist in _categorical(con, w, col, c, rows=i == 0).items():
                    h[col.name, s] = hist
            continue
        base = _unit_bins(knots.get(col.name), n_fine) if col.integer else None
        fines.append(_Fine(col, f"d{i}", base, i == 0))
    params = {k: v for w in wins for k, v in w.params.items()}
    params.update({f"{f.prefix}_miss": n_fine for f in fines})
    stages: list[tuple[int, _Stage1]] = []
    for w_i, per_col in enumerate(_stage1(con, wins, fines, knots, n_fine, params) if fines else []):
        win = wins[w_i]
        for f, data in zip(fines, per_col):
            keys = _decode(win, data["k"])
            b = data["b"].astype(np.int64)
            _add_counts(win, counts[w_i], f.col, keys, data["n"].astype(np.int64), b < n_fine,
                        f.first)
            fine = _fine_bin_sql(knots.get(f.col.name), n_fine, params, f.prefix, f.base)
            st = _numeric_stage1(win, f.col, fine, f.prefix, data, keys, n_fine, bins, kss[w_i],
                                 f.base)
            if st.edges:
                stages.append((w_i, st))
    todo = [(x, w_i, st) for x, (w_i, st) in enumerate(stages) if st.resolve.any()]
    if todo:
        # One statement for every column and split: the bins to resolve hold few rows, but
        # each column's bins are found by recomputing them over the windows.
        sql = "\nUNION ALL\n".join(_stage2_sql(wins[w_i], st, x, params) for x, w_i, st in todo)
        rows = _run_numpy(con, sql, params, "resolving fine bins value by value")
        for x, w_i, st in todo:
            mine = rows["i"] == x
            part = {name: values[mine] for name, values in rows.items()}
            _numeric_stage2(wins[w_i], st, part, _decode(wins[w_i], part["k"]))
    out_ks: list[dict[tuple[str, int], dict[Any, _KS]]] = [{} for _ in wins]
    for w_i, st in stages:
        groups = wins[w_i].groups
        for s in st.edges:
            hists[w_i][st.col.name, s] = _numeric_hist(st, s, groups)
            n1 = int(st.ref[s].sum())
            out_ks[w_i][st.col.name, s] = {
                groups[u - s * len(groups)]: _KS(*ks_pvalue(
                    g.dmax, g.dmin, n1, int(st.cur[u].sum()), g.at_max, g.at_min))
                for u, g in st.gaps.items() if u // len(groups) == s}
    return [_Drift(w, columns, c, h, k) for w, c, h, k in zip(wins, counts, hists, out_ks)]


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
    _check(bins, eps)
    if not isinstance(feature, str):
        raise QueryError(f"feature must be one column name, got {feature!r}")
    flt = resolve_model(con, flt)
    values = _split_values(con, flt, column)
    rows = []
    if values:
        if column in {c for c, _ in flt.segments}:
            d = _drift(con, flt, [feature], bins, ks=False)
            results = [_results(d, d.columns[0], 0, 0, eps, DEFAULT_WATCH, DEFAULT_ACT)] * len(
                values)
        else:
            d = _drift(con, flt, [feature], bins, ks=False, split=(column, values))
            results = [_results(d, d.columns[0], s, 0, eps, DEFAULT_WATCH, DEFAULT_ACT)
                       for s in range(len(values))]
        rows = [(v, r.psi, r.n_reference, r.n_current) for v, r in zip(values, results)]
    frame = pd.DataFrame(rows, columns=list(SEGMENT_PSI_COLUMNS))
    frame["psi"] = frame["psi"].astype("Float64")
    for name in ("n_reference", "n_current"):
        frame[name] = frame[name].astype("int64")
    return frame


def _split_values(con: duckdb.DuckDBPyConnection, flt: Filter, column: str) -> tuple[str, ...]:
    """The values (as text, sorted) ``column`` takes in either window of ``flt``."""
    if column not in predictions_columns(con):
        raise QueryError(f"no predictions column {column!r} to split by")
    ref_w, cur_w = _window_where(con, flt)
    value = f"CAST(p.{quote_ident(column)} AS VARCHAR)"
    return tuple(r[0] for r in _run(
        con, f"SELECT DISTINCT {value} FROM predictions p WHERE (({ref_w.sql}) OR "
             f"({cur_w.sql})) AND {value} IS NOT NULL ORDER BY 1",
        {**ref_w.params, **cur_w.params}, f"listing the values of {column!r}"))


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
        d = _drift(con, resolve_model(con, flt), features, bins, daily=True, ks=False)
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
    whole, days = _drifts(con, resolve_model(con, flt), features, bins, [None, None],
                          daily=[False, True], ks=[True, False])
    return DriftOverview(
        _ranked(whole, eps, watch, act), DriftByDay(days, (), {}, eps, watch, act).table(),
        {c.name: _distribution(whole, c, eps) for c in whole.columns})
