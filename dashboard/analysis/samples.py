"""Debug view: the worst individual predictions, and where in feature space the loss is.

:func:`top_loss_samples` lists the k labelled predictions with the highest per-row log loss
together with everything logged about them; :func:`error_heatmap` averages the loss over a
grid of two features' buckets. Both start from ``base.labelled_rows`` (one definition of the
per-row loss: natural log, probability of the true class clipped to [1e-15, 1 - 1e-15]), so
rows with a NaN / ±inf score (loss undefined) are left out and counted. docs/metrics/debug.md
has every definition.

PII columns are shown as stored: the ingest replaced their values by a salted hash
(docs/log-contract.md), and nothing here can or tries to reverse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis.base import columns_with_role, labelled_rows, resolve_model
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.saturation import run_query, typed
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

#: Cells of the error heatmap with fewer rows than this are flagged ``low_confidence``. Lower
#: than the window default (1,000): a 5 x 5 grid splits a window 25 ways, and 30 rows is the
#: usual minimum for a mean to be read at all (its standard error is then ~18% of the spread).
DEFAULT_CELL_MIN_SAMPLES = 30
OTHER = "(other)"
MISSING = "(missing)"

_ROLES = ("segment", "feature", "activation", "pii")
_HEATMAP_ROLES = ("segment", "feature", "activation")
_NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT",
                  "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "DECIMAL")

TOP_LOSS_COLUMNS = ("rank", "request_id", "ts", "model_version", "p", "label", "p_true", "loss",
                    "clipped", "weight", "label_ts")


# --------------------------------------------------------------------------- top-k
@dataclass(frozen=True)
class TopLossSamples:
    """:func:`top_loss_samples`' result.

    ``rows``: :data:`TOP_LOSS_COLUMNS` then the user columns, segment columns first, then
    features, activations, PII (each group by name), ordered by ``rank``. ``n_scored``: labelled
    predictions with a finite score (the population ranked); ``n_nonfinite``: labelled
    predictions left out because their score is NaN / ±inf. The ``*_columns`` fields name the
    user columns present in ``rows``, by role.
    """

    k: int
    n_scored: int
    n_nonfinite: int
    rows: pd.DataFrame
    segment_columns: tuple[str, ...]
    feature_columns: tuple[str, ...]
    activation_columns: tuple[str, ...]
    pii_columns: tuple[str, ...]


def top_loss_samples(con: duckdb.DuckDBPyConnection, flt: Filter, *, k: int = 50,
                     keep_empty_columns: bool = False) -> TopLossSamples:
    """The ``k`` labelled predictions of the filter with the highest log loss.

    Order: ``loss`` descending, ties broken by ``ts`` ascending then ``request_id`` ascending
    (so the list is the same on every run and the older request of two equal losses comes
    first); ``rank`` is the 1-based position in that order (tied losses get distinct ranks).
    ``loss`` is ``base.labelled_rows``' per-row log loss (clipped at 1e-15), so confidently
    wrong rows come first: 34.539576 for p = 1 with label 0, 34.538776 for p = 0 with label 1.
    Unweighted: ``weight`` is shown, not applied. Rows with a NaN / ±inf score have no loss and
    are not ranked (``n_nonfinite`` counts them).

    User columns with role segment, feature, activation or pii are attached as stored (PII is
    a salted hash). Unless ``keep_empty_columns``, a user column that is NULL in every returned
    row (typically another model's column) is dropped.

    Example: losses [0.1, 2.3, 2.3, 0.7] with k = 2 give the two 2.3 rows, older first.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10_000:
        raise QueryError(f"k must be an integer in [1, 10000], got {k!r}")
    flt = resolve_model(con, flt)
    by_role = {role: [name for name, _ in columns_with_role(con, role)] for role in _ROLES}
    user = [c for role in _ROLES for c in by_role[role]]
    rows = labelled_rows(con, flt, extra_columns=["request_id", *user])
    params: dict[str, Any] = dict(rows.params, tl_k=k)
    user_sql = "".join(f", {quote_ident(c)}" for c in user)
    sql = f"""
SELECT row_number() OVER (ORDER BY loss DESC, ts, request_id) AS rank, *
FROM (SELECT request_id, ts, model_version, p, label, p_true, loss, clipped, weight,
             label_ts{user_sql}
      FROM ({rows.sql})
      WHERE loss IS NOT NULL
      ORDER BY loss DESC, ts, request_id
      LIMIT $tl_k)
ORDER BY rank"""
    frame = run_query(con, sql, params, "finding the highest-loss predictions")
    try:
        counts = con.execute(
            f"SELECT count(*) FILTER (WHERE score_ok), count(*) FILTER (WHERE NOT score_ok) "
            f"FROM ({rows.sql})", rows.params).fetchone()
    except duckdb.Error as exc:
        raise QueryError(f"counting the labelled predictions: {exc}") from exc
    if not keep_empty_columns:
        empty = [c for c in user if frame[c].isna().all()] if len(frame) else list(user)
        frame = frame.drop(columns=empty)
        user = [c for c in user if c not in empty]
    kept = set(user)
    return TopLossSamples(
        k=k, n_scored=counts[0], n_nonfinite=counts[1], rows=frame.reset_index(drop=True),
        **{f"{role}_columns": tuple(c for c in by_role[role] if c in kept) for role in _ROLES})


# --------------------------------------------------------------------------- heatmap
@dataclass(frozen=True)
class ErrorHeatmap:
    """:func:`error_heatmap`'s result.

    ``x_bins`` / ``y_bins``: ``bin, label, lo, hi, n`` per axis bucket, in display order
    (numeric: ascending ``[lo, hi)``, the last bin closed; categorical: by count then name,
    then ``(other)``; ``(missing)`` last when present; ``lo`` / ``hi`` NA for categories).
    ``cells``: every (x bin, y bin) pair — ``x_bin, x_label, y_bin, y_label, n, weight_sum,
    mean_loss, low_confidence`` — by x_bin then y_bin; ``sum(cells.n) == n``.
    """

    x: str
    y: str
    x_kind: str  # numeric | categorical
    y_kind: str
    n: int
    n_nonfinite: int
    mean_loss: float | None
    min_samples: int
    x_bins: pd.DataFrame
    y_bins: pd.DataFrame
    cells: pd.DataFrame


def _column_kind(con: duckdb.DuckDBPyConnection, column: str, what: str) -> str:
    row = con.execute("SELECT role, sql_type FROM columns WHERE kind = 'predictions' AND name = ?",
                      [column]).fetchone()
    if row is None or row[0] not in _HEATMAP_ROLES:
        known = [r[0] for r in con.execute(
            "SELECT name FROM columns WHERE kind = 'predictions' AND role IN "
            "('segment', 'feature', 'activation') ORDER BY name").fetchall()]
        raise QueryError(f"{what}: {column!r} is not a segment, feature or activation column "
                         f"(choose one of: {', '.join(known) or 'none'})")
    return "numeric" if row[1].upper().startswith(_NUMERIC_TYPES) else "categorical"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class _Axis:
    value_sql: str  # the column as it is binned (DOUBLE or VARCHAR)
    code_sql: str  # bin code of ``value_sql``, over the alias ``{v}``
    params: dict[str, Any]
    bins: pd.DataFrame  # bin, label, lo, hi


def _numeric_axis(con: duckdb.DuckDBPyConnection, src: str, params: dict[str, Any], col: str,
                  bins: int, prefix: str) -> _Axis:
    """Quantile bins of ``col`` over the heatmap's rows."""
    probs = [i / bins for i in range(1, bins)]
    v = f"CAST({quote_ident(col)} AS DOUBLE)"
    ok = f"FILTER (WHERE NOT isnan({v}))"
    q = f"quantile_cont({v}, {probs!r}) {ok}" if probs else "NULL::DOUBLE[]"
    qs, vmin, vmax, n_missing = con.execute(
        f"SELECT {q}, min({v}) {ok}, max({v}) {ok}, "
        f"count(*) FILTER (WHERE {v} IS NULL OR isnan({v})) FROM ({src})", params).fetchone()
    # Equal quantiles (ties) collapse into one edge, and an edge at the minimum would leave an
    # always-empty first bin: both are dropped, so there may be fewer than ``bins`` bins.
    edges = sorted({e for e in (qs or []) if vmin is not None and e > vmin})
    rows: list[tuple[int, str, float | None, float | None]] = []
    if vmin is not None:
        bounds = [vmin, *edges, vmax]
        for i in range(len(edges) + 1):
            last = i == len(edges)
            rows.append((i, f"[{_fmt(bounds[i])}, {_fmt(bounds[i + 1])}{']' if last else ')'}",
                         bounds[i], bounds[i + 1]))
    missing_code = len(rows)
    if n_missing:
        rows.append((missing_code, MISSING, None, None))
    # Bin = number of inner edges <= value, so [e_i, e_i+1); edges are bound parameters.
    count = " + ".join(f"CAST({{v}} >= ${prefix}{i} AS INTEGER)" for i in range(len(edges)))
    code = f"CASE WHEN {{v}} IS NULL OR isnan({{v}}) THEN {missing_code} ELSE {count or '0'} END"
    return _Axis(v, code, {f"{prefix}{i}": e for i, e in enumerate(edges)},
                 pd.DataFrame(rows, columns=["bin", "label", "lo", "hi"]))


def _categorical_axis(con: duckdb.DuckDBPyConnection, src: str, params: dict[str, Any], col: str,
                      top: int, prefix: str) -> _Axis:
    """The ``top`` most frequent values of ``col`` over the heatmap's rows, then (other)."""
    v = f"CAST({quote_ident(col)} AS VARCHAR)"
    cats, has_other, has_missing = con.execute(
        f"SELECT coalesce(list(c ORDER BY n DESC, c) FILTER (WHERE c IS NOT NULL), [])"
        f"[1:{int(top)}],"
        f" count(c) > {int(top)}, coalesce(bool_or(c IS NULL), false) "
        f"FROM (SELECT {v} AS c, count(*) AS n FROM ({src}) GROUP BY c)", params).fetchone()
    rows: list[tuple[int, str, float | None, float | None]] = [
        (i, c, None, None) for i, c in enumerate(cats)]
    other_code = len(rows)
    if has_other:
        rows.append((other_code, OTHER, None, None))
    missing_code = len(rows)
    if has_missing:
        rows.append((missing_code, MISSING, None, None))
    code = (f"CASE WHEN {{v}} IS NULL THEN {missing_code} "
            f"ELSE coalesce(list_position(${prefix}cats, {{v}}) - 1, {other_code}) END")
    return _Axis(v, code, {f"{prefix}cats": cats},
                 pd.DataFrame(rows, columns=["bin", "label", "lo", "hi"]))


def error_heatmap(con: duckdb.DuckDBPyConnection, flt: Filter, x: str, y: str, *, bins: int = 5,
                  top: int = 8, min_samples: int = DEFAULT_CELL_MIN_SAMPLES) -> ErrorHeatmap:
    """Mean log loss over a grid of two columns' buckets (segments, features or activations).

    Rows: the filter's labelled predictions with a finite score (``n``; ``n_nonfinite`` left
    out). Axes, computed in SQL over those rows:

    * numeric column: quantile bins. Inner edges ``quantile_cont(x, i / bins)`` for
      i = 1 .. bins - 1 (numpy.quantile 'linear'), duplicates and edges equal to the minimum
      dropped; bin = number of edges <= x, so bins are ``[e_i, e_i+1)`` from the minimum, the
      last one closed at the maximum. NULL / NaN values go to ``(missing)``;
    * categorical column: the ``top`` most frequent values (ties by value), every other value
      in ``(other)``, NULL in ``(missing)``.

    Per cell: ``n`` rows, ``weight_sum = sum(w)``, ``mean_loss = sum(w * loss) / sum(w)``
    (weighted, like every loss in lossboard; ``<NA>`` when the cell is empty or its weights sum
    to 0), ``low_confidence = n < min_samples`` (default 30, see
    :data:`DEFAULT_CELL_MIN_SAMPLES`). Empty cells are listed with ``n = 0``.

    Example: x = device_os (ios, android), y = amount (2 bins): 4 cells whose ``n`` add up to
    the number of labelled rows with a finite score.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 100:
        raise QueryError(f"bins must be an integer in [1, 100], got {bins!r}")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 100:
        raise QueryError(f"top must be an integer in [1, 100], got {top!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
        raise QueryError(f"min_samples must be a non-negative integer, got {min_samples!r}")
    flt = resolve_model(con, flt)
    kinds = {"x": _column_kind(con, x, "error heatmap x"),
             "y": _column_kind(con, y, "error heatmap y")}
    rows = labelled_rows(con, flt, extra_columns=list(dict.fromkeys([x, y])))
    src = f"SELECT * FROM ({rows.sql}) WHERE loss IS NOT NULL"
    params: dict[str, Any] = dict(rows.params)
    try:
        n, n_nonfinite, mean_loss = con.execute(
            f"SELECT count(*) FILTER (WHERE score_ok), count(*) FILTER (WHERE NOT score_ok), "
            f"sum(weight * loss) FILTER (WHERE score_ok) / "
            f"nullif(sum(weight) FILTER (WHERE score_ok), 0) FROM ({rows.sql})",
            params).fetchone()
        axes = {}
        for axis, col in (("x", x), ("y", y)):
            make = _numeric_axis if kinds[axis] == "numeric" else _categorical_axis
            axes[axis] = make(con, src, rows.params, col, bins if make is _numeric_axis else top,
                              f"hm_{axis}")
    except duckdb.Error as exc:
        raise QueryError(f"binning {x} x {y} for the error heatmap: {exc}") from exc
    ax, ay = axes["x"], axes["y"]
    x_bins, y_bins = ax.bins, ay.bins
    params.update(ax.params)
    params.update(ay.params)
    params.update(hm_nx=len(x_bins), hm_ny=len(y_bins), hm_min=min_samples)
    sql = f"""
WITH r AS (SELECT {ax.value_sql} AS xv, {ay.value_sql} AS yv, weight, loss FROM ({src})),
c AS (SELECT {ax.code_sql.format(v='xv')} AS x_bin, {ay.code_sql.format(v='yv')} AS y_bin,
             count(*) AS n, sum(weight) AS weight_sum, sum(weight * loss) AS sum_wloss
      FROM r GROUP BY ALL)
SELECT gx.x_bin, gy.y_bin, coalesce(c.n, 0) AS n, coalesce(c.weight_sum, 0.0) AS weight_sum,
       c.sum_wloss / nullif(c.weight_sum, 0) AS mean_loss,
       coalesce(c.n, 0) < $hm_min AS low_confidence
FROM range($hm_nx) gx(x_bin) CROSS JOIN range($hm_ny) gy(y_bin)
LEFT JOIN c ON c.x_bin = gx.x_bin AND c.y_bin = gy.y_bin
ORDER BY gx.x_bin, gy.y_bin"""
    cells = run_query(con, sql, params, f"averaging the loss over {x} x {y}")
    cells = typed(cells, ("mean_loss",))
    cells.insert(1, "x_label", cells["x_bin"].map(dict(zip(x_bins["bin"], x_bins["label"]))))
    cells.insert(3, "y_label", cells["y_bin"].map(dict(zip(y_bins["bin"], y_bins["label"]))))
    for frame in (x_bins, y_bins):
        frame["lo"] = frame["lo"].astype("Float64")
        frame["hi"] = frame["hi"].astype("Float64")
    x_bins["n"] = cells.groupby("x_bin")["n"].sum().reindex(x_bins["bin"]).to_numpy()
    y_bins["n"] = cells.groupby("y_bin")["n"].sum().reindex(y_bins["bin"]).to_numpy()
    x_bins["n"], y_bins["n"] = x_bins["n"].astype("Int64"), y_bins["n"].astype("Int64")
    return ErrorHeatmap(x=x, y=y, x_kind=kinds["x"], y_kind=kinds["y"], n=n,
                        n_nonfinite=n_nonfinite,
                        mean_loss=None if mean_loss is None else float(mean_loss),
                        min_samples=min_samples, x_bins=x_bins, y_bins=y_bins, cells=cells)
