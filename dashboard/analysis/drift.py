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
direct KS, so the full sort is avoided. One aggregate query counts every requested column per
window (missing rates, finite range, a small reservoir sample). Then per numeric column:
(1) a fine histogram over an order-preserving transform of the value gives the exact ECDFs at
every fine-bin end, hence a lower bound on D and, per fine bin, an upper bound of the gap inside
it; (2) only the fine bins that could hold the maximum or hold a quantile edge are read again
and resolved value by value. Exact, because every fine-bin end is a data value and a skipped bin
provably holds no larger gap; only counts per bin reach Python.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
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
from lossboard.dashboard.analysis.filters import Filter
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
#: Fine bins of the two-stage KS. More bins: a dearer first pass, fewer rows in the second
#: (docs/metrics/drift.md, "Performance").
FINE_BINS = 1 << 16
#: Reservoir size per window for the sample that centres and scales the fine bins.
_KNOT_SAMPLE = 4096

REASONS = ("empty_reference_window", "empty_current_window", "no_reference_values",
           "no_current_values")
_NUMERIC_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|"
                           r"UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL)\b", re.I)


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
                               "{v} IS NOT NULL AND NOT isnan({v})"))
        else:
            out.append(_Column(name, "categorical", f"CAST({col} AS VARCHAR)", "{v} IS NOT NULL"))
    return out


@dataclass(frozen=True)
class _Windows:
    """Rows of either window: ``is_ref`` and the current group ``g`` (NULL: not current)."""

    where: str
    is_ref: str
    group: str
    params: dict[str, Any]


def _windows(con: duckdb.DuckDBPyConnection, flt: Filter, daily: bool) -> _Windows:
    ref = flt.reference()
    cols = predictions_columns(con)
    cur_w = flt.where(cols, alias="p", prefix="cur")
    ref_w = ref.where(cols, alias="p", prefix="ref")
    # The UTC calendar day, whatever the session's TimeZone: make_timestamp(epoch_us(ts)) is
    # timezone('UTC', ts) without ICU, which made daily_drift 35% faster at 10M rows
    # (docs/benchmarks.md, "Analysis and report").
    g = "CAST(make_timestamp(epoch_us(p.ts)) AS DATE)" if daily else "0"
    return _Windows(where=f"({ref_w.sql}) OR ({cur_w.sql})", is_ref=f"coalesce({ref_w.sql}, false)",
                    group=f"CASE WHEN {cur_w.sql} THEN {g} END",
                    params={**ref_w.params, **cur_w.params})


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any],
         what: str) -> list[tuple]:
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"drift: {what} failed: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# the queries

@dataclass
class _Counts:
    """Per window: rows; per column: values (non-missing); numeric: finite range and knots."""

    n_ref_rows: int = 0
    n_cur_rows: dict[Any, int] = field(default_factory=dict)
    n_ref: dict[str, int] = field(default_factory=dict)
    n_cur: dict[str, dict[Any, int]] = field(default_factory=dict)
    lo: dict[str, float | None] = field(default_factory=dict)
    hi: dict[str, float | None] = field(default_factory=dict)
    knots: dict[str, list[list[float]]] = field(default_factory=dict)


#: Levels of the sample quantiles that place the fine bins (only their speed depends on them):
#: the range kept for the fine bins, and the centre and scale of the transform.
_KNOT_LEVELS = [0.001, 0.25, 0.5, 0.75, 0.999]


def _counts(con: duckdb.DuckDBPyConnection, win: _Windows, columns: list[_Column]) -> _Counts:
    # Grouped by (is_ref, g) with the missing values turned into NULLs in the projection: plain
    # aggregates, no FILTER clauses (30 filtered aggregates over 10M rows cost 5 s, this 0.4 s).
    values = ", ".join(f"{c.expr} AS v{i}" for i, c in enumerate(columns))
    inner, aggs = [], []
    for i, c in enumerate(columns):
        inner.append(f"CASE WHEN {c.valid.format(v=f'v{i}')} THEN v{i} END AS m{i}")
        aggs.append(f"count(m{i})")
        if c.numeric:
            inner.append(f"CASE WHEN isfinite(v{i}) THEN v{i} END AS f{i}")
            aggs.append(f"min(f{i}), max(f{i}), "
                        f"reservoir_quantile(f{i}, $d_levels, {_KNOT_SAMPLE})")
    sql = f"""SELECT is_ref, g, count(*), {', '.join(aggs)}
FROM (SELECT is_ref, g, {', '.join(inner)} FROM (
  SELECT {win.is_ref} AS is_ref, {win.group} AS g, {values} FROM predictions p WHERE {win.where}))
GROUP BY is_ref, g ORDER BY is_ref, g NULLS FIRST"""
    params = dict(win.params)
    if any(c.numeric for c in columns):
        params["d_levels"] = _KNOT_LEVELS
    rows = _run(con, sql, params, "counting values per window")
    out = _Counts()
    for c in columns:
        out.knots[c.name] = []
        out.n_ref[c.name], out.n_cur[c.name], out.lo[c.name], out.hi[c.name] = 0, {}, None, None
    for row in rows:
        is_ref, g, n_rows, rest = row[0], row[1], row[2], list(row[3:])
        if is_ref:
            out.n_ref_rows += n_rows
        if g is not None:
            out.n_cur_rows[g] = out.n_cur_rows.get(g, 0) + n_rows
        for c in columns:
            n = rest.pop(0)
            if is_ref:
                out.n_ref[c.name] += n
            if g is not None:
                out.n_cur[c.name][g] = out.n_cur[c.name].get(g, 0) + n
            if c.numeric:
                lo, hi, sample = rest.pop(0), rest.pop(0), rest.pop(0)
                if lo is not None:
                    out.lo[c.name] = lo if out.lo[c.name] is None else min(lo, out.lo[c.name])
                    out.hi[c.name] = hi if out.hi[c.name] is None else max(hi, out.hi[c.name])
                    out.knots[c.name].append(sample)
    return out


def _quantile_ranks(n: int, bins: int) -> list[int]:
    """0-based ranks of the inner edges: the ceil(n i / bins)-th smallest, i = 1 .. bins - 1
    (exact integer arithmetic; DuckDB's quantile_disc with the fraction i / bins)."""
    return sorted({max(1, -(-n * i // bins)) - 1 for i in range(1, bins)})


def _fine_bin_sql(lo: float | None, hi: float | None, samples: list[list[float]],
                  params: dict[str, Any]) -> str:
    """An order-preserving fine-bin index of ``v`` in [0, FINE_BINS).

    ``t = sign(z) sqrt(|z|)`` with ``z = (v - centre) / scale`` (sample median and
    interquartile range, so heavy tails are spread less thinly); the sample's 0.1% .. 99.9%
    range of t is cut into FINE_BINS - 2 equal-width bins and anything outside goes to bin 0 or
    FINE_BINS - 1. Only monotone, correctly rounded operations (subtract, divide, sqrt,
    multiply, floor, clamp), so v1 <= v2 implies bin(v1) <= bin(v2), -inf / +inf included.
    That is all exactness needs: how well the sample fits only changes the speed.
    """
    if lo is None or not hi > lo or not samples:
        return "0"
    q_lo = min(x[0] for x in samples)
    q_hi = max(x[4] for x in samples)
    centre = float(np.median([x[2] for x in samples]))
    scale = float(np.median([x[3] - x[1] for x in samples]))
    if not scale > 0:
        scale = (q_hi - q_lo) if q_hi > q_lo else (hi - lo)

    def t(x: float) -> float:
        z = (x - centre) / scale
        return math.copysign(math.sqrt(abs(z)), z)

    t_lo, t_hi = (t(q_lo), t(q_hi)) if q_hi > q_lo else (t(lo), t(hi))
    if not t_hi > t_lo:
        return "0"
    params.update(d_c=centre, d_s=scale, d_tlo=t_lo, d_w=(FINE_BINS - 2) / (t_hi - t_lo))
    z = "((v - $d_c) / $d_s)"
    tz = f"CASE WHEN {z} < 0 THEN -sqrt(-{z}) ELSE sqrt({z}) END"
    return (f"CAST(least(greatest(floor(({tz} - $d_tlo) * $d_w) + 1, 0), {FINE_BINS - 1}) "
            f"AS INTEGER)")


def _base_sql(win: _Windows, col: _Column, fine: str) -> str:
    return f"""base AS (
  SELECT v, is_ref::INTEGER AS ref, g, {fine} AS bin FROM (
    SELECT {col.expr} AS v, {win.is_ref} AS is_ref, {win.group} AS g
    FROM predictions p WHERE {win.where}
  ) WHERE {col.valid.format(v='v')}
)"""


# Stage 1: the fine histogram. Names: r / c = reference / current values in a fine bin, r_le /
# c_le = values up to the bin's end (its largest value, a data value), r_lt / c_lt = values
# before the bin; n1 / n2 = the sample sizes. Gaps are compared as integers (r_le n2 - c_le n1:
# exact) and reported as scipy computes them, r_le / n1 - c_le / n2 in float64. A bin must be
# resolved value by value when it holds two or more distinct values and either the gap inside
# it could reach the largest gap at the bin ends (and exceed 0, so that two identical samples
# resolve nothing), or it holds a quantile edge. A bin with one distinct value is exact already.
_STAGE1 = """
WITH {base},
h AS (SELECT g, bin, sum(ref)::BIGINT AS r, count(g)::BIGINT AS c, min(v) AS v_lo, max(v) AS v_hi
      FROM base GROUP BY g, bin),
bins AS (SELECT bin, sum(r)::BIGINT AS r, min(v_lo) = max(v_hi) AS single, min(v_lo) AS v
         FROM h GROUP BY bin),
refcum AS (SELECT bin, r, sum(r) OVER (ORDER BY bin ROWS UNBOUNDED PRECEDING) AS r_le
           FROM bins WHERE r > 0),
curbins AS (SELECT g, bin, c FROM h WHERE g IS NOT NULL AND c > 0),
sizes AS (SELECT g, sum(c)::HUGEINT AS n2, (SELECT sum(r) FROM bins)::HUGEINT AS n1
          FROM curbins GROUP BY g),
grid AS (
  SELECT coalesce(x.g, y.g) AS g, coalesce(x.bin, y.bin) AS bin,
         coalesce(x.r, 0) AS r, coalesce(y.c, 0) AS c
  FROM (SELECT s.g, rc.bin, rc.r FROM sizes s CROSS JOIN refcum rc) x
  FULL JOIN curbins y ON x.g = y.g AND x.bin = y.bin
),
pts AS (
  SELECT t.g, t.bin, t.n1, t.n2, b.single, b.v, t.r_le, t.c_le,
         t.r_le - t.r AS r_lt, t.c_le - t.c AS c_lt
  FROM (
    SELECT grid.*, n1, n2, sum(r) OVER w AS r_le, sum(c) OVER w AS c_le
    FROM grid JOIN sizes USING (g)
    WINDOW w AS (PARTITION BY g ORDER BY bin ROWS UNBOUNDED PRECEDING)
  ) t JOIN bins b ON t.bin = b.bin
),
edge AS (
  SELECT g, any_value(n1) AS n1, any_value(n2) AS n2,
         greatest(max(r_le * n2 - c_le * n1), 0) AS lp,
         greatest(max(c_le * n1 - r_le * n2), 0) AS lm,
         max(r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS dmax,
         arg_max([r_le, c_le], r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS at_max,
         min(r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS dmin,
         arg_min([r_le, c_le], r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS at_min
  FROM pts GROUP BY g
),
qbins AS (SELECT rc.bin, q.k FROM refcum rc, (SELECT unnest($d_q) AS k) q
          WHERE rc.r_le - rc.r <= q.k AND q.k < rc.r_le)
SELECT 'ks' AS part, g, n1::BIGINT AS x, n2::BIGINT AS n2, dmax, at_max, dmin, at_min,
       NULL::DOUBLE AS v
FROM edge
UNION ALL
SELECT 'cand', p.g, p.bin, NULL, NULL, [p.r_lt, p.c_lt], NULL, NULL, NULL
FROM pts p JOIN edge e USING (g)
WHERE NOT p.single AND (
      (p.r_le * p.n2 - p.c_lt * p.n1 >= e.lp AND p.r_le * p.n2 - p.c_lt * p.n1 > 0)
   OR (p.c_le * p.n1 - p.r_lt * p.n2 >= e.lm AND p.c_le * p.n1 - p.r_lt * p.n2 > 0)
   OR p.bin IN (SELECT bin FROM qbins))
UNION ALL
SELECT 'q', p.g, q.k, NULL, NULL, [p.r_le, p.c_le], NULL, NULL, p.v
FROM pts p JOIN qbins q ON p.bin = q.bin WHERE p.single
ORDER BY part, g, x"""

# Stage 2: the rows of the bins to resolve, value by value, with their cumulative counts.
_STAGE2 = """
WITH {base},
cand AS (SELECT unnest($d_cg) AS g, unnest($d_cb) AS bin, unnest($d_crl) AS r_lt,
                unnest($d_ccl) AS c_lt),
sizes AS (SELECT unnest($d_sg) AS g, unnest($d_n1)::HUGEINT AS n1, unnest($d_n2)::HUGEINT AS n2),
picked AS (SELECT v, ref, g, bin FROM base WHERE bin IN (SELECT DISTINCT bin FROM cand)),
s2 AS (
  SELECT cd.g, cd.bin, x.v, sum(x.ref)::BIGINT AS r,
         (count(*) FILTER (WHERE x.g = cd.g))::BIGINT AS c
  FROM picked x JOIN cand cd ON x.bin = cd.bin
  WHERE x.ref = 1 OR x.g = cd.g GROUP BY cd.g, cd.bin, x.v
),
s3 AS (
  SELECT s2.g, s2.bin, s2.v, s2.r, z.n1, z.n2,
         cd.r_lt + sum(s2.r) OVER w AS r_le, cd.c_lt + sum(s2.c) OVER w AS c_le
  FROM s2 JOIN cand cd ON s2.g = cd.g AND s2.bin = cd.bin JOIN sizes z ON s2.g = z.g
  WINDOW w AS (PARTITION BY s2.g, s2.bin ORDER BY s2.v ROWS UNBOUNDED PRECEDING)
)
SELECT 'ks' AS part, g, NULL::BIGINT AS k, max(r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS dmax,
       arg_max([r_le, c_le], r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS at_max,
       min(r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS dmin,
       arg_min([r_le, c_le], r_le::DOUBLE / n1 - c_le::DOUBLE / n2) AS at_min, NULL::DOUBLE AS v
FROM s3 GROUP BY g
UNION ALL
SELECT 'q', s3.g, q.k, NULL, [s3.r_le, s3.c_le], NULL, NULL, s3.v
FROM s3, (SELECT unnest($d_q) AS k) q WHERE s3.r_le - s3.r <= q.k AND q.k < s3.r_le
ORDER BY part, g, k"""


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


def _numeric(con: duckdb.DuckDBPyConnection, win: _Windows, col: _Column, counts: _Counts,
             bins: int) -> tuple[_Hist, dict[Any, _KS]]:
    """PSI bins and exact KS of one numeric column, per current group, in two queries."""
    n1 = counts.n_ref[col.name]
    ranks = _quantile_ranks(n1, bins)
    params: dict[str, Any] = {**win.params, "d_q": ranks}
    fine = _fine_bin_sql(counts.lo[col.name], counts.hi[col.name], counts.knots[col.name], params)
    base = _base_sql(win, col, fine)
    # (dmax, at_max, dmin, at_min) per group; quantile rank -> (value, r_le, c_le per group).
    gaps: dict[Any, list] = {}
    sizes: dict[Any, tuple[int, int]] = {}
    cands: list[tuple] = []
    edges: dict[int, float] = {}
    ref_le: dict[int, int] = {}
    cur_le: dict[Any, dict[int, int]] = {}

    def take_q(g: Any, k: int, le: list[int], v: float) -> None:
        edges[k], ref_le[k] = v, le[0]
        cur_le.setdefault(g, {})[k] = le[1]

    def take_gaps(g: Any, dmax: float, at_max: list, dmin: float, at_min: list) -> None:
        old = gaps.get(g)
        if old is None or dmax > old[0]:
            old = gaps[g] = [dmax, at_max, *(old[2:] if old else (dmin, at_min))]
        if dmin < old[2]:
            old[2:] = [dmin, at_min]

    for part, g, x, n2, dmax, at_max, dmin, at_min, v in _run(
            con, _STAGE1.format(base=base), params, f"fine histogram of {col.name!r}"):
        if part == "ks":
            if x != n1:
                raise QueryError(f"drift: {col.name!r}: {x} reference values, {n1} counted")
            sizes[g] = (x, n2)
            take_gaps(g, dmax, at_max, dmin, at_min)
        elif part == "cand":
            cands.append((g, x, *at_max))
        else:
            take_q(g, x, at_max, v)
    if cands:
        params.update(d_cg=[c[0] for c in cands], d_cb=[c[1] for c in cands],
                      d_crl=[c[2] for c in cands], d_ccl=[c[3] for c in cands],
                      d_sg=list(sizes), d_n1=[s[0] for s in sizes.values()],
                      d_n2=[s[1] for s in sizes.values()])
        for part, g, k, dmax, at_max, dmin, at_min, v in _run(
                con, _STAGE2.format(base=base), params, f"KS and edges of {col.name!r}"):
            if part == "ks":
                take_gaps(g, dmax, at_max, dmin, at_min)
            else:
                take_q(g, k, at_max, v)
    ks = {g: _KS(*ks_pvalue(d[0], d[2], *sizes[g], tuple(d[1]), tuple(d[3])))
          for g, d in gaps.items()}
    # Equal edges (ties at the quantiles) merge: same value, same counts.
    values = sorted(set(edges.values()))
    first = {v: k for k, v in sorted(edges.items(), reverse=True)}
    reference = tuple(int(x) for x in np.diff([0, *[ref_le[first[v]] for v in values], n1]))
    current = {g: tuple(int(x) for x in np.diff([0, *[le[first[v]] for v in values], sizes[g][1]]))
               for g, le in cur_le.items()}
    lower = (-math.inf, *values)
    upper = (*values, math.inf)
    labels = tuple(f"({_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(hi) else f"({_fmt(lo)}, +inf)"
                   for lo, hi in zip(lower, upper))
    return _Hist(labels, lower, upper, reference, current), ks


def _fmt(x: float) -> str:
    return "-inf" if x == -math.inf else "+inf" if x == math.inf else f"{x:.6g}"


def _categorical(con: duckdb.DuckDBPyConnection, win: _Windows, col: _Column) -> _Hist:
    sql = f"""SELECT g, v, sum(is_ref::INTEGER)::BIGINT AS a, count(g)::BIGINT AS b
FROM (SELECT {col.expr} AS v, {win.is_ref} AS is_ref, {win.group} AS g
      FROM predictions p WHERE {win.where})
WHERE {col.valid.format(v='v')} GROUP BY g, v ORDER BY g NULLS FIRST, v"""
    rows = _run(con, sql, win.params, f"category counts of {col.name!r}")
    ref: dict[str, int] = {}
    for _g, v, a, _b in rows:
        ref[v] = ref.get(v, 0) + a
    seen = sorted((v for v, a in ref.items() if a > 0), key=lambda v: (-ref[v], v))
    index = {v: i for i, v in enumerate(seen)}
    current: dict[Any, list[int]] = {}
    for g, v, _a, b in rows:
        if g is None:
            continue
        counts = current.setdefault(g, [0] * (len(seen) + 1))
        counts[index.get(v, len(seen))] += b
    labels = (*seen, UNSEEN)
    none = (None,) * len(labels)
    return _Hist(labels, none, none, (*[ref[v] for v in seen], 0),
                 {g: tuple(c) for g, c in current.items()}, unseen=True)


# ---------------------------------------------------------------------------------------------
# assembling results

def _drift(con: duckdb.DuckDBPyConnection, flt: Filter, features: str | Sequence[str] | None,
           bins: int, daily: bool
           ) -> tuple[list[_Column], _Counts, dict[str, _Hist], dict[str, dict[Any, _KS]]]:
    flt = resolve_model(con, flt)
    columns = _columns(con, flt, features)
    win = _windows(con, flt, daily)
    counts = _counts(con, win, columns)
    hists: dict[str, _Hist] = {}
    ks: dict[str, dict[Any, _KS]] = {}
    for col in columns:
        if not counts.n_ref[col.name] or not any(counts.n_cur[col.name].values()):
            continue
        if col.numeric:
            hists[col.name], ks[col.name] = _numeric(con, win, col, counts, bins)
        else:
            hists[col.name] = _categorical(con, win, col)
    return columns, counts, hists, ks


def _result(col: _Column, counts: _Counts, hist: _Hist | None, ks: _KS | None, g: Any,
            eps: float, watch: float, act: float) -> DriftResult:
    n_ref_rows = counts.n_ref_rows
    n_cur_rows = counts.n_cur_rows.get(g, 0)
    n_ref = counts.n_ref[col.name]
    n_cur = counts.n_cur[col.name].get(g, 0)
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


def _frame(results: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(results, columns=list(columns))
    for name in ("psi", "ks_statistic", "ks_pvalue", "missing_rate_reference",
                 "missing_rate_current", "missing_rate_change"):
        frame[name] = frame[name].astype("Float64")
    return frame


def feature_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = DEFAULT_BINS,
                  eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH, act: float = DEFAULT_ACT,
                  features: str | Sequence[str] | None = None) -> pd.DataFrame:
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

    Example: reference ``[50, 50]`` and current ``[25, 75]`` in two bins give
    ``PSI = (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.274653``.
    """
    _check(bins, eps, watch, act)
    columns, counts, hists, ks = _drift(con, flt, features, bins, daily=False)
    results = [asdict(_result(c, counts, hists.get(c.name), ks.get(c.name, {}).get(0), 0,
                              eps, watch, act)) for c in columns]
    results.sort(key=lambda r: (r["psi"] is None, -(r["psi"] or 0.0), r["feature"]))
    return _frame(results, DRIFT_COLUMNS)


def score_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = DEFAULT_BINS,
                eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH,
                act: float = DEFAULT_ACT) -> DriftResult:
    """Drift of the model's score (binary: p; multiclass: the top class's renormalised
    probability), with the conventions of :func:`feature_drift`; NaN / inf scores are
    missing. ``feature`` is :data:`SCORE`, ``kind`` ``'score'``."""
    _check(bins, eps, watch, act)
    columns, counts, hists, ks = _drift(con, flt, [SCORE], bins, daily=False)
    return _result(columns[0], counts, hists.get(SCORE), ks.get(SCORE, {}).get(0), 0, eps,
                   watch, act)


def daily_drift(con: duckdb.DuckDBPyConnection, flt: Filter, *,
                feature: str | Sequence[str] | None = None, bins: int = DEFAULT_BINS,
                eps: float = DEFAULT_EPS, watch: float = DEFAULT_WATCH,
                act: float = DEFAULT_ACT) -> pd.DataFrame:
    """Drift of each UTC day of ``flt`` against the whole reference window (for heatmaps).

    ``feature``: one name, several, or None for every registered feature (:data:`SCORE` is the
    score). The PSI bins are the reference's, the same for every day; KS is exact per day.
    Days of the current window without any row are left out. Columns: ``day`` (date), then
    :data:`DRIFT_COLUMNS`; ordered by ``feature``, ``day``.
    """
    _check(bins, eps, watch, act)
    columns, counts, hists, ks = _drift(con, flt, feature, bins, daily=True)
    results = []
    for col in columns:
        for day in sorted(counts.n_cur_rows):
            row = asdict(_result(col, counts, hists.get(col.name), ks.get(col.name, {}).get(day),
                                 day, eps, watch, act))
            results.append({"day": day, **row})
    frame = _frame(results, ("day", *DRIFT_COLUMNS))
    return frame.sort_values(["feature", "day"], kind="stable").reset_index(drop=True)


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
    columns, counts, hists, _ = _drift(con, flt, [feature], bins, daily=False)
    result = _result(columns[0], counts, hists.get(feature), None, 0, eps, DEFAULT_WATCH,
                     DEFAULT_ACT)
    if result.reason is not None:
        frame = pd.DataFrame({c: [] for c in DISTRIBUTION_COLUMNS})
        frame.attrs["reason"] = result.reason
        return frame
    hist = hists[feature]
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
