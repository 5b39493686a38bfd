"""Calibration: reliability curves, expected and maximum calibration error.

A model is calibrated when, among the rows it scores ``p``, a fraction ``p`` turns out
positive. The reliability curve bins the scores and sets each bin's mean score against its
observed rate of positives; ECE and MCE summarise the gaps. docs/metrics/calibration.md holds
the definitions; the conventions every function here shares are:

Rows
    Predictions of the Filter joined to a usable label (:func:`base.labelled_rows`). Rows whose
    score is NaN or +-inf (or, multiclass, whose probabilities do not sum to a positive number)
    are excluded from every bin and counted in ``n_nonfinite``. No clipping happens here: the
    1e-15 clip of log loss is not applied, p = 0.0 and p = 1.0 are binned as logged.
Weights
    Every sum is weighted by the row's ``weight`` (1 when not logged): a bin's ``mean_p`` is
    ``sum(w * p) / sum(w)``, its ``frac_positive`` is ``sum(w * y) / sum(w)``. ``n`` stays the
    row count. A bin whose rows all have weight 0 has no mean (treated as empty by ECE / MCE).
Bins, ``strategy='uniform'``
    ``bins`` equal-width bins with edges ``k / bins`` (k = 0 .. bins, computed as one IEEE
    division, so 0.3 is the edge of 10 bins, not ``3 * 0.1``). Each bin is ``[lo, hi)``, the
    last is ``[lo, 1.0]``: 1.0 falls in the last bin, 0.0 in the first. scikit-learn's
    ``calibration_curve`` uses ``(lo, hi]`` instead (a score exactly on an inner edge lands one
    bin lower there).
Bins, ``strategy='quantile'``
    Equal-count bins: the edges are ``quantile_cont(p, k / bins)`` for k = 0 .. bins over the
    selection's finite scores (linear interpolation, the same as ``numpy.percentile`` and
    scikit-learn's quantile strategy), unweighted (weights do not move edges). Equal edges (ties
    in the scores) are merged, so fewer than ``bins`` bins may come back; when every score is
    the same there is one bin ``[p, p]``. Same ``[lo, hi)`` rule, the maximum score in the last
    bin. Interpolated quantiles move when every row is duplicated, so quantile curves are not
    duplication-invariant (uniform ones are).
Empty bins
    Returned, with ``n = 0``, ``weight_sum = 0`` and NULL (``<NA>``) means and band; never
    dropped (scikit-learn drops them) and never silently NaN. With no rows at all, a uniform
    curve still has its ``bins`` rows (all empty); a quantile curve has no edges, so no rows.
Band
    Wilson score interval at 95% (z = 1.959964) for the observed rate, with the Kish effective
    sample size ``n_eff = sum(w)^2 / sum(w^2)`` in place of n (``n_eff = n`` for unit weights;
    NULL band if the squared weights under- or overflow, i.e. weights beyond about 1e+-150).
    It is the interval a well-calibrated bin's ``mean_p`` would usually fall into, and unlike
    the normal (Wald) interval it does not collapse to a point at rates 0 or 1.

One SQL aggregate query per call: the bin index is computed per row in DuckDB and the rows are
grouped by it; Python only receives at most ``bins`` rows per curve.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from lossboard.dashboard.analysis.base import (
    DEFAULT_MIN_SAMPLES,
    Z95,
    labelled_rows,
    model_info,
    resolve_model,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError

STRATEGIES = ("uniform", "quantile")
#: Upper bound on ``bins``: beyond it a curve is noise, and the per-row work grows with it.
MAX_BINS = 1000

#: Columns of :func:`reliability` (and of :func:`per_class_reliability` after ``class``).
CURVE_COLUMNS = ("bin", "bin_lo", "bin_hi", "n", "weight_sum", "mean_p", "frac_positive",
                 "frac_positive_lo", "frac_positive_hi")


@dataclass(frozen=True)
class CalibrationSummary:
    """Expected and maximum calibration error of one reliability curve.

    ``ece`` / ``mce`` are None when there is nothing to measure (no finite-score labelled row,
    or all their weights are 0). ``n`` counts the rows binned, ``n_nonfinite`` the labelled rows
    left out for a NaN / inf score. ``bins`` is the number of bins of the curve (fewer than
    asked when quantile edges merged), ``n_nonempty_bins`` those with positive weight.
    """

    ece: float | None
    mce: float | None
    n: int
    bins: int
    n_nonempty_bins: int
    weight_sum: float
    n_nonfinite: int
    strategy: str
    low_confidence: bool


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_params(bins: object, strategy: object) -> int:
    if not _whole(bins) or not 1 <= bins <= MAX_BINS:
        raise QueryError(f"bins must be a whole number from 1 to {MAX_BINS}, got {bins!r}")
    if strategy not in STRATEGIES:
        raise QueryError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, "
                         f"got {strategy!r}")
    return int(bins)


def _curve_sql(scored: str, groups: str, strategy: str, bins: int) -> tuple[str, dict[str, object]]:
    """The one aggregate query over ``scored`` (columns g, p, y, weight, ok) for each group
    ``g`` of ``groups``, and its own parameters: one row per (g, bin) of the grid, plus per
    group one row with ``bin`` NULL that counts the excluded (not ``ok``) rows, if any."""
    # Edges and quantile levels are k / bins, one IEEE division each, in Python as in SQL: the
    # reported bin_lo / bin_hi are exactly the values the rows are compared with.
    params: dict[str, object] = {"cal_levels": [k / bins for k in range(bins + 1)], "cal_z": Z95}
    if strategy == "uniform":
        params["cal_bins"] = bins
        # floor(p * bins) can land one bin off next to an edge (p * bins is rounded); the
        # two comparisons against the edges themselves (k / bins, as reported) settle it.
        edges = "SELECT g, $cal_levels AS e FROM groups"
        binned = """
  SELECT g, CASE WHEN ok THEN k0 - (p < k0 / $cal_bins)::BIGINT
                          + (k0 < $cal_bins - 1 AND p >= (k0 + 1) / $cal_bins)::BIGINT END AS bin,
         p, y, weight
  FROM (SELECT *, CASE WHEN ok THEN least(greatest(floor(p * $cal_bins), 0), $cal_bins - 1)::BIGINT
                  END AS k0 FROM scored)"""
    else:
        edges = """SELECT g, list_sort(list_distinct(quantile_cont(p, $cal_levels))) AS e
  FROM scored WHERE ok GROUP BY g"""
        # The bin is the number of inner edges at or below p: [lo, hi), the maximum in the
        # last bin (the outer edges are the minimum and the maximum score).
        binned = """
  SELECT s.g, s.p,
         CASE WHEN s.ok THEN len(list_filter(e.e[2:len(e.e) - 1], lambda x: x <= s.p)) END AS bin,
         s.y, s.weight
  FROM scored s LEFT JOIN edges e ON e.g = s.g"""
    sql = f"""
WITH scored AS ({scored}),
groups AS ({groups}),
edges AS ({edges}),
grid AS (
  SELECT g, bin, e[bin + 1] AS bin_lo, e[least(bin + 2, len(e))] AS bin_hi
  FROM (SELECT g, e, unnest(range(0, greatest(len(e) - 1, 1))) AS bin FROM edges)
),
binned AS ({binned}
),
agg AS (
  SELECT g, bin, count(*) AS n, sum(weight) AS w, sum(weight * weight) AS w2,
         sum(weight * p) AS wp, sum(weight * y) AS wy
  FROM binned GROUP BY g, bin
),
curve AS (
  SELECT grid.g, grid.bin, grid.bin_lo, grid.bin_hi, coalesce(agg.n, 0) AS n,
         coalesce(agg.w, 0.0) AS weight_sum,
         agg.wp / nullif(agg.w, 0) AS mean_p, agg.wy / nullif(agg.w, 0) AS frac_positive,
         -- Kish effective n; NULL (no band) if the weights' squares under- or overflow.
         CASE WHEN isfinite(agg.w * agg.w / agg.w2) AND agg.w * agg.w / agg.w2 > 0
              THEN agg.w * agg.w / agg.w2 END AS n_eff
  FROM grid LEFT JOIN agg ON agg.g = grid.g AND agg.bin = grid.bin
  UNION ALL
  SELECT g, NULL, NULL, NULL, n, w, NULL, NULL, NULL FROM agg WHERE bin IS NULL
)
SELECT g, bin, bin_lo, bin_hi, n, weight_sum, mean_p, frac_positive,
       -- CASE rather than greatest/least, which would turn a NULL bound into 0 or 1.
       CASE WHEN lo < 0 THEN 0.0 ELSE lo END AS frac_positive_lo,
       CASE WHEN hi > 1 THEN 1.0 ELSE hi END AS frac_positive_hi
FROM (
  SELECT *, (frac_positive + z2n / 2 - half) / (1 + z2n) AS lo,
            (frac_positive + z2n / 2 + half) / (1 + z2n) AS hi
  FROM (
    SELECT *, $cal_z * sqrt(frac_positive * (1 - frac_positive) / n_eff
                            + z2n / (4 * n_eff)) AS half
    FROM (SELECT *, $cal_z * $cal_z / n_eff AS z2n FROM curve)
  )
)
ORDER BY g, bin NULLS LAST"""
    return sql, params


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object],
         what: str) -> pd.DataFrame:
    try:
        frame = con.execute(sql, params).df()
    except duckdb.Error as exc:
        raise QueryError(f"calibration: computing {what} failed: {exc}") from exc
    frame["n"] = frame["n"].astype("int64")
    frame["weight_sum"] = frame["weight_sum"].astype("float64")
    for col in ("mean_p", "frac_positive", "frac_positive_lo", "frac_positive_hi"):
        # NULL for an empty bin stays visibly missing (<NA>), never a bare NaN.
        frame[col] = pd.array(frame[col].to_numpy(dtype="float64", na_value=np.nan),
                              dtype="Float64")
    return frame


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The grid rows, and the excluded-row count per group."""
    excluded = frame["bin"].isna()
    nonfinite = frame.loc[excluded].set_index("g")["n"]
    curve = frame.loc[~excluded].reset_index(drop=True)
    curve["bin"] = curve["bin"].astype("int64")
    curve["bin_lo"] = curve["bin_lo"].astype("float64")
    curve["bin_hi"] = curve["bin_hi"].astype("float64")
    return curve, nonfinite


def _top_label_curve(con: duckdb.DuckDBPyConnection, flt: Filter, bins: int,
                     strategy: str) -> tuple[pd.DataFrame, int]:
    rows = labelled_rows(con, flt)
    scored = (f"SELECT 0 AS g, p, y, weight, coalesce(score_ok, false) AS ok "
              f"FROM ({rows.sql})")
    sql, params = _curve_sql(scored, "SELECT 0 AS g", strategy, bins)
    frame = _run(con, sql, {**rows.params, **params}, "the reliability curve")
    curve, nonfinite = _split(frame)
    return curve[list(CURVE_COLUMNS)], int(nonfinite.sum())


def reliability(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = 10,
                strategy: str = "uniform") -> pd.DataFrame:
    """The reliability curve: per score bin, the mean score against the observed rate.

    Binary models: ``p`` is the logged probability of class 1 and ``y`` the label. Multiclass
    models: the top-label curve, ``p`` the top class's probability (renormalised to sum 1) and
    ``y`` = 1 when the top class is the true class.

    For bin b over the finite-score labelled rows i in it (weights w_i)::

        mean_p_b        = sum_i w_i p_i / sum_i w_i
        frac_positive_b = sum_i w_i y_i / sum_i w_i
        [frac_positive_lo_b, frac_positive_hi_b] = Wilson 95% interval of frac_positive_b
                                                   with n = (sum w)^2 / sum w^2

    Parameters
    ----------
    con : an open (read) connection.
    flt : the Filter; ``flt.model`` may be left out when the database holds one model.
    bins : int, 1 .. 1000, default 10. The number of bins asked for.
    strategy : ``'uniform'`` (equal width, edges k / bins) or ``'quantile'`` (equal count,
        edges at the k / bins quantiles of the selection's finite scores, linear
        interpolation, duplicate edges merged).

    Bins are ``[lo, hi)``; the last bin also holds its upper edge (1.0 for uniform bins, the
    maximum score for quantile bins). No clipping: p = 0 and p = 1 are binned as they are.

    Returns
    -------
    DataFrame ordered by ``bin``, columns: ``bin`` (0-based index), ``bin_lo``, ``bin_hi``,
    ``n`` (rows), ``weight_sum``, ``mean_p``, ``frac_positive``, ``frac_positive_lo``,
    ``frac_positive_hi`` (the last four nullable ``Float64``: ``<NA>`` for an empty bin, which
    is kept with ``n = 0``; scikit-learn drops empty bins). ``attrs['n_nonfinite']`` counts
    the labelled rows left out for a NaN / inf score. No labelled rows: ``bins`` empty rows
    (uniform) or no rows (quantile: no edges without scores).

    Example
    -------
    Scores 0.1, 0.2, 0.7 with labels 0, 1, 1 and ``bins=2``: bin 0 = [0, 0.5) has n = 2,
    mean_p = 0.15, frac_positive = 0.5; bin 1 = [0.5, 1] has n = 1, mean_p = 0.7,
    frac_positive = 1.0 (Wilson band [0.2065, 1.0]).
    """
    bins = _check_params(bins, strategy)
    curve, nonfinite = _top_label_curve(con, flt, bins, strategy)
    curve.attrs["n_nonfinite"] = nonfinite
    return curve


def calibration_errors(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = 10,
                       strategy: str = "uniform",
                       min_samples: int = DEFAULT_MIN_SAMPLES) -> CalibrationSummary:
    """Expected and maximum calibration error of the :func:`reliability` curve.

    Over the bins b with positive weight (W_b = sum of weights in b, W = sum over all bins)::

        ECE = sum_b (W_b / W) * |mean_p_b - frac_positive_b|
        MCE = max_b |mean_p_b - frac_positive_b|

    With unit weights W_b / W = n_b / N. Binary models use the probability of class 1;
    multiclass models the top label (confidence against accuracy). Bins, edges, the treatment
    of NaN / inf and of p = 0 / 1 are those of :func:`reliability`; ECE depends on them (more
    bins, larger ECE on the same data), so compare ECEs only at equal ``bins`` and
    ``strategy``. ``low_confidence`` is ``n < min_samples``. No finite-score labelled row, or
    all weights 0: ``ece = mce = None``.

    Example
    -------
    Scores 0.1, 0.2, 0.7, labels 0, 1, 1, ``bins=2``: gaps |0.15 - 0.5| = 0.35 and
    |0.7 - 1| = 0.3, so ECE = (2/3) 0.35 + (1/3) 0.3 = 1/3 and MCE = 0.35.
    """
    bins = _check_params(bins, strategy)
    if not _whole(min_samples) or min_samples < 0:
        raise QueryError(f"min_samples must be a whole number >= 0, got {min_samples!r}")
    curve, nonfinite = _top_label_curve(con, flt, bins, strategy)
    n = int(curve["n"].sum())
    weights = curve["weight_sum"].to_numpy(dtype="float64")
    total = float(weights.sum())
    filled = weights > 0
    ece = mce = None
    if filled.any():
        gap = np.abs(curve["mean_p"].to_numpy(dtype="float64", na_value=np.nan)[filled]
                     - curve["frac_positive"].to_numpy(dtype="float64", na_value=np.nan)[filled])
        ece = float(np.sum(weights[filled] / total * gap))
        mce = float(np.max(gap))
    return CalibrationSummary(ece=ece, mce=mce, n=n, bins=len(curve),
                              n_nonempty_bins=int(filled.sum()), weight_sum=total,
                              n_nonfinite=nonfinite, strategy=strategy,
                              low_confidence=n < min_samples)


def per_class_reliability(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = 10,
                          strategy: str = "uniform") -> pd.DataFrame:
    """One-vs-rest reliability curves, one per class.

    For class k: ``p`` = the probability of k renormalised to sum 1 (``probs[k] / sum(probs)``)
    and ``y`` = 1 when the label is k. Binary models have the classes ``'0'`` (p = 1 - p) and
    ``'1'`` (the :func:`reliability` curve). Each class is binned on its own (quantile edges
    come from that class's scores); everything else as in :func:`reliability`.

    Returns
    -------
    DataFrame ordered by the model's class order, then ``bin``; columns ``class`` followed by
    the columns of :func:`reliability`. ``attrs['n_nonfinite']`` counts the labelled rows left
    out (the same rows for every class). No labelled rows: per class ``bins`` empty rows
    (uniform) or no rows (quantile).

    Example
    -------
    Classes a, b, c; one row probs (0.5, 0.3, 0.2), label a; ``bins=2``: class a has its row in
    bin 1 ([0.5, 1]) with frac_positive 1; classes b and c have it in bin 0 with frac 0.
    """
    bins = _check_params(bins, strategy)
    flt = resolve_model(con, flt)
    info = model_info(con, flt.model)
    if info.task == "binary":
        classes = ["0", "1"]
        rows = labelled_rows(con, flt)
        prob = "CASE WHEN c.g = 1 THEN 1 - r.p ELSE r.p END"
    else:
        classes = list(info.classes)
        rows = labelled_rows(con, flt, extra_columns=["probs"])
        prob = "r.probs[c.g] / list_sum(r.probs)"
    groups = "SELECT unnest($cal_classes) AS class, unnest(range(1, len($cal_classes) + 1)) AS g"
    scored = (f"SELECT c.g, {prob} AS p, (r.label = c.class)::DOUBLE AS y, r.weight, "
              f"coalesce(r.score_ok, false) AS ok FROM ({rows.sql}) r CROSS JOIN ({groups}) c")
    sql, params = _curve_sql(scored, groups, strategy, bins)
    frame = _run(con, sql, {**rows.params, **params, "cal_classes": classes},
                 "the per-class reliability curves")
    curve, nonfinite = _split(frame)
    curve.insert(0, "class", pd.Series([classes[g - 1] for g in curve["g"]], dtype="string"))
    curve = curve[["class", *CURVE_COLUMNS]]
    # Every class sees the same rows, so each counts the same excluded rows once.
    curve.attrs["n_nonfinite"] = int(nonfinite.max()) if len(nonfinite) else 0
    return curve
