"""How drift.py's numbers are obtained: the windows, the fine histograms and the resolving
pass (docs/metrics/drift.md, "How it is computed"). The definitions, and the public functions
that assemble results from these counts, are in :mod:`drift`.

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
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
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
_NUMERIC_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|"
                           r"UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL)\b", re.I)
_INTEGER_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|"
                           r"UINTEGER|UBIGINT|UHUGEINT)$", re.I)
#: Integers up to this magnitude are exact in a DOUBLE, and so is ``v - base + 1``.
_EXACT_INT = float(1 << 52)


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


# ---------------------------------------------------------------------------------------------
# windows and columns

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
