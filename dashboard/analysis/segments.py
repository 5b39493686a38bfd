"""Where: which segment values carry the loss, and which explain a change in it.

Two tables answer "where" (docs/metrics/segments.md):

* :func:`excess_loss` — per value of a segment column, its log loss against the loss of all
  other rows in the filter (``excess_loss = log_loss − log_loss_rest``), with Welch's t-test of
  the difference and n, ranked by excess loss;
* :func:`loss_change` — per value, its contribution to the change in the global log loss
  between the reference window and the selected window, split exactly into a *mix* effect
  (the value's share of traffic moved) and a *performance* effect (its own loss moved).

Both come from one GROUP BY of mergeable moments (:mod:`lossboard.dashboard.analysis.stats`);
"the rest" is the total minus the value, so no second scan is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from lossboard.dashboard.analysis import base
from lossboard.dashboard.analysis.cube import Cube
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.stats import Moments, moments_sql, welch
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

EXCESS_COLUMNS = ["column", "value", "n_labelled", "weight_sum", "log_loss", "log_loss_rest",
                  "excess_loss", "ci_low", "ci_high", "t_statistic", "p_value", "significant",
                  "low_confidence"]
CHANGE_COLUMNS = ["column", "value", "share_reference", "share_current", "log_loss_reference",
                  "log_loss_current", "contribution", "mix_effect", "performance_effect",
                  "n_reference", "n_current"]


# Defined in base so the ingest's rollup refresh need not import this module (scipy, 0.4 s).
segment_columns = base.segment_columns


def _check_column(con: duckdb.DuckDBPyConnection, column: str) -> None:
    if column not in base.predictions_columns(con):
        raise QueryError(f"no predictions column {column!r}; segment columns: "
                         f"{', '.join(segment_columns(con)) or 'none'}")


def _moments_by_value(con: duckdb.DuckDBPyConnection, flt: Filter, column: str,
                      cube: Cube | None = None) -> dict[str | None, Moments]:
    if cube is not None and column in cube.segment_columns and cube.covers(base.resolve_model(con, flt)):
        # The five moments are the cube's n, Σw, Σw², Σw·ℓ, Σw·ℓ² (loss.hourly_sums_sql, with
        # the weights as logged, as moments_sql); a value is a row when it has labelled rows.
        where, params = cube.where(flt, column)
        result = con.execute(
            f"SELECT value, sum(n), sum(sw), sum(sw2), sum(s_loss), sum(s_loss2) "
            f"FROM {quote_ident(cube.table)} WHERE {where} GROUP BY value "
            f"HAVING sum(n_labelled) > 0 ORDER BY value NULLS LAST", params).fetchall()
    else:
        rows = base.labelled_rows(con, flt, [column])
        col = quote_ident(column)
        result = con.execute(
            f"SELECT CAST({col} AS VARCHAR) AS value, {moments_sql('loss')} "
            f"FROM ({rows.sql}) GROUP BY ALL ORDER BY value NULLS LAST", rows.params).fetchall()
    return {r[0]: Moments(int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in result}


def excess_loss(con: duckdb.DuckDBPyConnection, flt: Filter, column: str, *,
                min_samples: int = base.DEFAULT_MIN_SAMPLES, alpha: float = 0.05,
                cube: Cube | None = None) -> pd.DataFrame:
    """Rank the values of segment ``column`` by excess log loss over the rest of the filter.

    For value v with rows V and the other rows R (same filter):
    ``excess_loss = L(V) − L(R)``, L the weighted mean of the clipped per-row log loss
    (base.py); ``ci_low``/``ci_high`` a 95% normal interval of L(V); ``t_statistic`` and the
    two-sided ``p_value`` of Welch's t-test of L(V) − L(R) (stats.welch, equal to
    ``scipy.stats.ttest_ind(V, R, equal_var=False)`` for unit weights); ``significant`` =
    p_value < alpha; ``low_confidence`` = n_labelled < min_samples. NaN/inf scores are
    excluded. NULL segment values form their own row with value None.

    Rows are ordered by excess_loss descending (values with no loss last), then value.
    Empty filter → an empty frame with these columns.

    Example: a value with losses [1, 1] against the rest [0.5, 0.5] has excess_loss 0.5.
    """
    if not 0 < alpha < 1:
        raise QueryError(f"alpha must be in (0, 1), got {alpha!r}")
    _check_column(con, column)
    by_value = _moments_by_value(con, flt, column, cube)
    total = sum(by_value.values(), Moments(0, 0.0, 0.0, 0.0, 0.0))
    records = []
    for value, m in by_value.items():
        rest = total - m
        test = welch(m, rest)
        se = m.se
        mean = m.mean
        records.append({
            "column": column, "value": value, "n_labelled": m.n, "weight_sum": m.sum_w,
            "log_loss": mean, "log_loss_rest": rest.mean,
            "excess_loss": None if test is None else test.difference,
            "ci_low": None if se is None or mean is None else mean - base.Z95 * se,
            "ci_high": None if se is None or mean is None else mean + base.Z95 * se,
            "t_statistic": None if test is None else test.t_statistic,
            "p_value": None if test is None else test.p_value,
            "significant": bool(test is not None and test.p_value is not None and test.p_value < alpha),
            "low_confidence": m.n < min_samples,
        })
    frame = pd.DataFrame.from_records(records, columns=EXCESS_COLUMNS)
    if frame.empty:
        return frame
    key = frame["excess_loss"].astype(float).fillna(float("-inf"))
    return frame.iloc[key.sort_values(ascending=False, kind="stable").index].reset_index(drop=True)


def excess_loss_all(con: duckdb.DuckDBPyConnection, flt: Filter,
                    columns: Sequence[str] | None = None, **params: object) -> pd.DataFrame:
    """:func:`excess_loss` for every segment column (or ``columns``), stacked, ranked by
    excess loss across columns: the single "where" table."""
    frames = [excess_loss(con, flt, c, **params) for c in (columns or segment_columns(con))]
    # Segment columns are registered per file kind, not per model: a column that another
    # model's files brought is all NULL here and says nothing about "where".
    frames = [f for f in frames if not f.empty and f["value"].notna().any()]
    if not frames:
        return pd.DataFrame(columns=EXCESS_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    key = out["excess_loss"].astype(float).fillna(float("-inf"))
    return out.iloc[key.sort_values(ascending=False, kind="stable").index].reset_index(drop=True)


def loss_change(con: duckdb.DuckDBPyConnection, flt: Filter, column: str, *,
                cube: Cube | None = None) -> pd.DataFrame:
    """Contribution of each value of ``column`` to the change in global log loss from the
    reference window (``flt.reference()``) to the selected window (``flt``).

    With weight shares s and losses L per value (0 = reference, 1 = current), the global loss is
    Σ s·L, so its change is exactly Σ_v (s1·L1 − s0·L0) = Σ_v contribution_v, and each
    contribution splits exactly into ``mix_effect = (s1 − s0)·(L0 + L1)/2`` and
    ``performance_effect = (L1 − L0)·(s0 + s1)/2``. A value absent from one window takes the
    other window's loss there (so its whole contribution is mix). Ordered by |contribution|
    descending, then value.

    Example: one value, loss 0.2 → 0.3 at a constant share of 1: contribution 0.1, all
    performance.
    """
    _check_column(con, column)
    ref = _moments_by_value(con, flt.reference(), column, cube)
    cur = _moments_by_value(con, flt, column, cube)
    w_ref = sum(m.sum_w for m in ref.values())
    w_cur = sum(m.sum_w for m in cur.values())
    records = []
    for value in sorted(set(ref) | set(cur), key=lambda v: (v is None, v)):
        m0, m1 = ref.get(value), cur.get(value)
        s0 = m0.sum_w / w_ref if m0 is not None and w_ref > 0 else 0.0
        s1 = m1.sum_w / w_cur if m1 is not None and w_cur > 0 else 0.0
        l0 = m0.mean if m0 is not None else None
        l1 = m1.mean if m1 is not None else None
        if l0 is None and l1 is None:
            continue
        l0_eff = l0 if l0 is not None else l1
        l1_eff = l1 if l1 is not None else l0
        records.append({
            "column": column, "value": value, "share_reference": s0, "share_current": s1,
            "log_loss_reference": l0, "log_loss_current": l1,
            "contribution": s1 * l1_eff - s0 * l0_eff,
            "mix_effect": (s1 - s0) * (l0_eff + l1_eff) / 2,
            "performance_effect": (l1_eff - l0_eff) * (s0 + s1) / 2,
            "n_reference": 0 if m0 is None else m0.n, "n_current": 0 if m1 is None else m1.n,
        })
    frame = pd.DataFrame.from_records(records, columns=CHANGE_COLUMNS)
    if frame.empty:
        return frame
    order = frame["contribution"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)
