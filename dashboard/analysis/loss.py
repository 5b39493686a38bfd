"""Log loss and its companions: overall, per time bucket, rolling, per version, per segment.

Every figure is computed in DuckDB from the per-row relation of :func:`base.labelled_rows`
(which defines the per-row loss once) and leaves as a frozen dataclass (:func:`overall`) or a
small pandas frame with the columns listed in :data:`METRIC_COLUMNS` (docs/metrics/loss.md is
the auditor's version of this docstring).

Conventions shared by every function here:

* **Rows.** A figure covers the labelled predictions of the Filter. Rows whose score is NaN or
  ±inf (multiclass: any class, or probabilities summing to 0, which cannot be renormalised)
  are excluded from every metric and counted in ``n_nonfinite``; ``n`` counts the rows that
  are in the metrics, so ``n_labelled = n + n_nonfinite``. ``n_predictions`` counts every
  prediction of the Filter, labelled or not.
* **Weights.** Every mean is weighted by the logged ``weight`` (1 when none was logged):
  ``Σ w·x / Σ w``. ``weighted=False`` treats every weight as 1. When ``Σ w = 0`` (no rows, or
  all weights zero) every mean is ``None``: no data, never NaN.
* **Clipping.** Probabilities are clipped to ``[1e-15, 1 - 1e-15]`` (``base.CLIP_EPS``) before
  any logarithm (log loss, entropy) and nowhere else (Brier, accuracy, AUC use the score as
  logged). ``n_clipped`` counts rows whose true-class probability needed clipping.
* **Time.** Buckets are UTC hours / days, half-open ``[start, end)``. Sums are first taken
  per UTC hour (mergeable: Σw·loss, Σw, Σw², Σw·loss², counts, ...), and every figure is
  derived from those sums, so day buckets, versions, segments and rolling windows all agree
  with a direct row-level computation.
* **Confidence.** ``log_loss_ci_low/high`` is a 95% normal interval on the weighted mean:
  ``se = sqrt(var_w / (n_eff - 1))`` with ``n_eff = (Σw)² / Σw²`` and ``var_w`` the weighted
  population variance of the per-row loss (from the sums, so exact to ~1e-15·mean(ℓ²); a
  variance below 1e-14·mean(ℓ²) is taken as 0); ``None`` when ``n_eff <= 1``.
  ``low_confidence`` is ``n < min_samples``.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import duckdb

from lossboard.dashboard.analysis.base import (
    CLIP_EPS,
    DEFAULT_MIN_SAMPLES,
    Z95,
    ModelInfo,
    columns_with_role,
    labelled_rows,
    model_info,
    prediction_rows,
    resolve_model,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.saturation import BUCKET_US as _BUCKET_US
from lossboard.dashboard.analysis.saturation import bucket_us_sql

if TYPE_CHECKING:  # cube imports this module
    # pandas only for type hints here, imported where a frame is shaped: the ingest's rollup
    # refresh uses this module's SQL alone, and pandas' import was 0.29 s of a 1 s ingest.
    import pandas as pd
    from lossboard.dashboard.analysis.cube import Cube
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

#: Columns every frame of this module carries (per bucket / window / version / segment value).
#: Counts are ``Int64``, figures nullable ``Float64`` (``<NA>`` = no data), reasons ``string``.
METRIC_COLUMNS = (
    "n_predictions", "n_labelled", "n", "n_nonfinite", "n_clipped", "weight_sum", "n_eff",
    "log_loss", "log_loss_se", "log_loss_ci_low", "log_loss_ci_high", "low_confidence",
    "perplexity", "entropy", "loss_minus_entropy", "brier", "accuracy", "fpr", "fnr", "mean_p",
    "mean_y", "calibration_in_the_large",
)
#: Added by every frame except :func:`rolling` (AUC is not a mergeable sum).
AUC_COLUMNS = ("roc_auc", "pr_auc", "roc_auc_reason", "pr_auc_reason")

_COUNTS = ("n_predictions", "n_labelled", "n", "n_nonfinite", "n_clipped")
_REASONS = ("roc_auc_reason", "pr_auc_reason")
_PRESET_WINDOWS = ("1h", "6h", "24h", "7d", "30d")
# The UTC hour / day of ts as a naive UTC TIMESTAMP: the values of
# date_trunc(unit, timezone('UTC', ts)), by epoch arithmetic (saturation.bucket_us_sql), which
# made by_bucket and by_version 30% faster at 10M rows (docs/benchmarks.md, "Analysis and report").
_HOUR = f"make_timestamp({bucket_us_sql('hour')})"
_BUCKETS = {"hour": _HOUR, "day": f"make_timestamp({bucket_us_sql('day')})"}
_UTC_TS = "make_timestamp(epoch_us(ts))"  # = timezone('UTC', ts)



@dataclass(frozen=True)
class LossSummary:
    """The loss figures of one Filter (see the module docstring for the shared conventions).

    Counts: ``n_predictions`` (all predictions of the Filter), ``n_labelled`` (with a usable
    label), ``n`` (labelled and finite: the rows in every metric), ``n_nonfinite`` (labelled,
    NaN/inf score, excluded), ``n_clipped`` (true-class probability outside
    [1e-15, 1 - 1e-15]), ``weight_sum`` (Σw over the ``n`` rows), ``n_eff`` ((Σw)²/Σw²).
    Figures (``None`` when there is no data): ``log_loss`` with ``log_loss_se``,
    ``log_loss_ci_low``/``high``; ``perplexity`` = exp(log_loss); ``entropy`` (loss a calibrated
    model would expect) and ``loss_minus_entropy``; ``brier``; ``accuracy``;
    binary only: ``fpr``, ``fnr``, ``mean_p``, ``mean_y``, ``calibration_in_the_large`` =
    mean_p - mean_y, ``roc_auc``, ``pr_auc``. ``roc_auc_reason`` / ``pr_auc_reason`` say why an
    AUC is ``None`` (``no_data``, ``no_positive_labels``, ``no_negative_labels``,
    ``multiclass``). ``low_confidence`` = n < min_samples.
    """

    model: str
    task: str
    weighted: bool
    threshold: float
    min_samples: int
    n_predictions: int
    n_labelled: int
    n: int
    n_nonfinite: int
    n_clipped: int
    weight_sum: float
    n_eff: float | None
    log_loss: float | None
    log_loss_se: float | None
    log_loss_ci_low: float | None
    log_loss_ci_high: float | None
    low_confidence: bool
    perplexity: float | None
    entropy: float | None
    loss_minus_entropy: float | None
    brier: float | None
    accuracy: float | None
    fpr: float | None
    fnr: float | None
    mean_p: float | None
    mean_y: float | None
    calibration_in_the_large: float | None
    roc_auc: float | None
    pr_auc: float | None
    roc_auc_reason: str | None
    pr_auc_reason: str | None

    @property
    def no_data(self) -> bool:
        """True when no row carries weight: every figure is ``None``."""
        return self.log_loss is None


# ---------------------------------------------------------------------------- validation
def _check_filter(flt: object) -> None:
    if not isinstance(flt, Filter):
        raise QueryError(f"flt must be a Filter, got {type(flt).__name__}")


def _check_min_samples(min_samples: object) -> int:
    if (isinstance(min_samples, bool) or not isinstance(min_samples, numbers.Integral)
            or min_samples < 0):
        raise QueryError(f"min_samples must be an integer >= 0, got {min_samples!r}")
    return int(min_samples)


def _check_threshold(threshold: object) -> float:
    if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
            or not 0.0 <= float(threshold) <= 1.0):
        raise QueryError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise QueryError(f"{name} must be True or False, got {value!r}")
    return value


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise QueryError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def window_hours(window: str) -> int:
    """Hours in a window spec: ``'<N>h'`` or ``'<N>d'`` (presets 1h, 6h, 24h, 7d, 30d).

    >>> window_hours("7d")
    168
    """
    match = re.fullmatch(r"([1-9][0-9]{0,4})([hd])", window) if isinstance(window, str) else None
    if match is None:
        raise QueryError(f"window must be like {', '.join(_PRESET_WINDOWS)} (<N>h or <N>d), "
                         f"got {window!r}")
    return int(match[1]) * (24 if match[2] == "d" else 1)


# ---------------------------------------------------------------------------- SQL pieces
def _clip(expr: str) -> str:
    return f"least(greatest({expr}, {CLIP_EPS!r}), (1 - {CLIP_EPS!r}))"


def _row_sql(info: ModelInfo, key: str, weighted: bool, passthrough: str = "") -> str:
    """Per-row relation ``r`` over ``lr`` (labelled rows): key, hour, w, ok, clipped, loss, p,
    y, brier, entropy, correct, pred1."""
    w = "weight" if weighted else "1.0"
    if info.task == "binary":
        pc = _clip("p")
        brier = "(p - y) * (p - y)"
        # H(p) with p clipped as in the loss, so a calibrated model's expected loss is H.
        entropy = f"-({pc} * ln({pc}) + (1 - {pc}) * ln(1 - {pc}))"
        pred1 = "CASE WHEN p >= $ls_threshold THEN 1.0 ELSE 0.0 END"
        correct = "CASE WHEN (p >= $ls_threshold) = (y = 1) THEN 1.0 ELSE 0.0 END"
        source = "lr"
    else:
        q = _clip("x / _lb_tot")
        # scikit-learn's brier_score_loss(scale_by_half='auto') halves only for 2 classes.
        half = "0.5 * " if len(info.classes) == 2 else ""
        brier = (f"{half}list_sum(list_transform(probs, "
                 "lambda x, i: pow(x / _lb_tot - (i = _lb_k)::DOUBLE, 2)))")
        entropy = f"-list_sum(list_transform(probs, lambda x: {q} * ln({q})))"
        pred1, correct = "0.0", "y"
        source = ("(SELECT *, list_sum(probs) AS _lb_tot, "
                  "list_position($ls_classes, label) AS _lb_k FROM lr)")
    return (f"SELECT {key} AS key, {_HOUR} AS hour, {w} AS w, score_ok AS ok, clipped, loss, p, y, "
            f"{brier} AS brier, {entropy} AS entropy, {correct} AS correct, {pred1} AS pred1"
            f"{passthrough} FROM {source}")


def hourly_sums_sql(labelled: str | None = None, names: tuple[str, ...] | None = None) -> str:
    """The mergeable sums of a group of ``r`` rows (``names``, default all of ``_SUM_NAMES``).
    ``labelled``: a condition that keeps only labelled rows, for a relation holding unlabelled
    ones too (:mod:`cube`); ``r`` of :func:`_relations` holds labelled rows only.

    Conditions are ``CASE WHEN`` inside the aggregate, not ``FILTER (WHERE ...)``: the same
    values are summed (a sum of none is NULL, made 0), but DuckDB 2.0 runs a FILTER per
    aggregate and it cost 1.7-2.3x the CASE form per aggregate at 10M rows (benchmarks.md)."""
    def cond(extra: str | None) -> str | None:
        both = " AND ".join(c for c in (labelled, extra) if c)
        return both or None

    def count(extra: str | None) -> str:
        c = cond(extra)
        return f"count(CASE WHEN {c} THEN 1 END)" if c else "count(*)"

    def total(expr: str) -> str:
        return f"coalesce(sum(CASE WHEN {cond('ok')} THEN {expr} END), 0)"

    sums = {
        "n_labelled": count(None), "n": count("ok"), "n_nonfinite": count("NOT ok"),
        "n_clipped": count("clipped"),
        "sw": total("w"), "sw2": total("w * w"), "s_loss": total("w * loss"),
        "s_loss2": total("w * loss * loss"), "s_brier": total("w * brier"),
        "s_entropy": total("w * entropy"), "s_correct": total("w * correct"),
        "s_p": total("w * p"), "s_y": total("w * y"), "s_neg": total("w * (1 - y)"),
        "s_fp": total("w * pred1 * (1 - y)"), "s_fn": total("w * (1 - pred1) * y"),
    }
    return ",\n  ".join(f"{sums[name]} AS {name}" for name in (names or _SUM_NAMES))


_SUM_NAMES = ("n_labelled", "n", "n_nonfinite", "n_clipped", "sw", "sw2", "s_loss", "s_loss2",
              "s_brier", "s_entropy", "s_correct", "s_p", "s_y", "s_neg", "s_fp", "s_fn")
_HOURLY_SUMS = hourly_sums_sql()


# var_w = E_w[ℓ²] - E_w[ℓ]², from the mergeable sums. It is exact to a few ulps of E_w[ℓ²],
# so a value within 1e-14·E_w[ℓ²] of zero (all losses equal) is rounding noise and taken as 0.
_VAR_W = """(CASE WHEN s_loss2 / sw - log_loss * log_loss <= 1e-14 * (s_loss2 / sw) THEN 0
  ELSE s_loss2 / sw - log_loss * log_loss END)"""


def _metrics_sql(binary: bool) -> str:
    """Figures from the sums (columns named as in ``_SUM_NAMES`` plus n_predictions)."""
    only_binary = (lambda e: e) if binary else (lambda e: "NULL::DOUBLE")
    return f"""CAST(n_predictions AS BIGINT) AS n_predictions,
  CAST(n_labelled AS BIGINT) AS n_labelled, CAST(n AS BIGINT) AS n,
  CAST(n_nonfinite AS BIGINT) AS n_nonfinite, CAST(n_clipped AS BIGINT) AS n_clipped,
  CAST(sw AS DOUBLE) AS weight_sum,
  CASE WHEN sw2 > 0 THEN sw * sw / sw2 END AS n_eff,
  CASE WHEN sw > 0 THEN s_loss / sw END AS log_loss,
  CASE WHEN n_eff > 1 THEN sqrt({_VAR_W} / (n_eff - 1)) END AS log_loss_se,
  log_loss - $ls_z * log_loss_se AS log_loss_ci_low,
  log_loss + $ls_z * log_loss_se AS log_loss_ci_high,
  n < $ls_min_samples AS low_confidence,
  exp(log_loss) AS perplexity,
  CASE WHEN sw > 0 THEN s_entropy / sw END AS entropy,
  log_loss - entropy AS loss_minus_entropy,
  CASE WHEN sw > 0 THEN s_brier / sw END AS brier,
  CASE WHEN sw > 0 THEN s_correct / sw END AS accuracy,
  {only_binary("CASE WHEN s_neg > 0 THEN s_fp / s_neg END")} AS fpr,
  {only_binary("CASE WHEN s_y > 0 THEN s_fn / s_y END")} AS fnr,
  {only_binary("CASE WHEN sw > 0 THEN s_p / sw END")} AS mean_p,
  {only_binary("CASE WHEN sw > 0 THEN s_y / sw END")} AS mean_y,
  {only_binary("CASE WHEN sw > 0 THEN (s_p - s_y) / sw END")} AS calibration_in_the_large"""


# One point per distinct score, so a tie is one step (a diagonal ROC segment: the trapezoid
# rule of roc_auc_score; one precision value for the whole tie in average_precision_score).
# Zero-weight rows are left out, as scikit-learn does. AUC = Σ_s neg_s·(TP_above_s + pos_s/2)
# / (P·N); AP = Σ_s (pos_s / P) · TP_cum_s / (TP_cum_s + FP_cum_s), scores descending.
# One key (overall): no PARTITION BY (7.5 -> 6.4 s at 10M in one run on a busy machine;
# an earlier quiet A/B saw only noise, docs/benchmarks.md), kept as it costs nothing.
_AUC_CTES = """, auc_in AS (
  SELECT key, p AS s, coalesce(sum(w) FILTER (WHERE y = 1), 0) AS wpos,
         coalesce(sum(w) FILTER (WHERE y = 0), 0) AS wneg
  FROM r WHERE ok AND w > 0 GROUP BY key, p
), auc_cum AS (
  SELECT key, wpos, wneg, sum(wpos) OVER by_score AS tp, sum(wneg) OVER by_score AS fp
  FROM auc_in WINDOW by_score AS ({partition}ORDER BY s DESC)
), auc AS (
  SELECT key, sum(wpos) AS pos, sum(wneg) AS neg, sum(wneg * (tp - wpos / 2)) AS roc_num,
         sum(wpos * tp / (tp + fp)) AS ap_num
  FROM auc_cum GROUP BY key
)"""
# The overall AUC with unit weights (the common case: no weights logged) by ranks instead:
# the running sums above are DuckDB window aggregates over a RANGE frame, which cost 2.4 of
# the 3.3 s of the AUC at 10M rows, while rank() and cume_dist() share one plain sort (0.6 s).
# ROC AUC is the Mann-Whitney U: (Σ_positives midrank - P(P+1)/2) / (P·N), midrank of a tie =
# (its first rank + its last rank) / 2, the last rank being cume_dist·n (rounded: an integer).
# AP = (1/P) Σ_positives TP_ge / n_ge, with n_ge = rows scoring >= s = n - first rank + 1 and
# TP_ge = positives scoring >= s = P - (first rank among positives) + 1: each positive of a
# tie adds the tie's precision once, which is the tie's pos_s/P weight in the formula above.
# Same ties rule and same figures as the window version (to ~1e-15, summation order).
_RANK_AUC = """, auc_rows AS (
  SELECT p, y, rank() OVER by_p AS rmin, cume_dist() OVER by_p AS cd
  FROM r WHERE ok WINDOW by_p AS (ORDER BY p)
), auc_pos AS (
  SELECT rmin, cd, rank() OVER (ORDER BY p) AS rpos FROM auc_rows WHERE y = 1
)
SELECT sum((rmin + round(cd * $ls_n)) / 2) AS rank_sum,
       sum(($ls_pos - rpos + 1) / ($ls_n - rmin + 1)) AS precision_sum
FROM auc_pos"""
_AUC_SELECT = """CASE WHEN pos > 0 AND neg > 0 THEN roc_num / (pos * neg) END AS roc_auc,
  CASE WHEN pos > 0 THEN ap_num / pos END AS pr_auc,
  CASE WHEN coalesce(pos, 0) + coalesce(neg, 0) = 0 THEN 'no_data'
       WHEN pos = 0 THEN 'no_positive_labels' WHEN neg = 0 THEN 'no_negative_labels'
  END AS roc_auc_reason,
  CASE WHEN coalesce(pos, 0) + coalesce(neg, 0) = 0 THEN 'no_data'
       WHEN pos = 0 THEN 'no_positive_labels' END AS pr_auc_reason"""


def _params(info: ModelInfo, *parts: dict[str, object], **mine: object) -> dict[str, object]:
    params: dict[str, object] = {}
    for part in parts:
        params.update(part)  # labelled_rows and prediction_rows bind the same Filter values
    params.update({f"ls_{k}": v for k, v in mine.items()})
    if info.task != "binary":
        params["ls_classes"] = list(info.classes)
    return params


def _cursor(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object],
            what: str) -> duckdb.DuckDBPyConnection:
    # DuckDB refuses parameters a query does not use: bind only those that appear.
    used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
    try:
        return con.execute(sql, used)
    except duckdb.Error as exc:
        raise QueryError(f"{what}: {exc}") from exc


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object],
             what: str) -> pd.DataFrame:
    cursor = _cursor(con, sql, params, what)
    try:
        return cursor.df()
    except duckdb.Error as exc:
        raise QueryError(f"{what}: {exc}") from exc


def _relations(con: duckdb.DuckDBPyConnection, flt: Filter, key: str, weighted: bool,
               extra_columns: tuple[str, ...]) -> tuple[ModelInfo, str, dict[str, object]]:
    """CTEs ``lr`` (labelled rows), ``r`` (per-row figures), ``hourly`` (sums per key and UTC
    hour) and ``preds`` (key, hour, ts of every prediction), and their parameters."""
    _check_filter(flt)
    flt = resolve_model(con, flt)
    info = model_info(con, flt.model)
    lab = labelled_rows(con, flt, extra_columns + (() if info.task == "binary" else ("probs",)))
    pred = prediction_rows(con, flt, extra_columns)
    sql = f"""WITH lr AS ({lab.sql}),
r AS ({_row_sql(info, key, weighted)}),
hourly AS (SELECT key, hour, {_HOURLY_SUMS} FROM r GROUP BY key, hour),
preds AS (SELECT {key} AS key, {_HOUR} AS hour, {_UTC_TS} AS ts FROM ({pred.sql}))"""
    return info, sql, {**lab.params, **pred.params}


def _grouped(con: duckdb.DuckDBPyConnection, flt: Filter, *, key: str, keys: str,
             key_columns: str, order_by: str, extra_columns: tuple[str, ...] = (),
             min_samples: int, threshold: float, weighted: bool, auc: bool,
             what: str, cube: Cube | None = None, cube_dim: str = "",
             cube_key: str = "'all'") -> tuple[ModelInfo, pd.DataFrame]:
    """Figures per value of ``key`` (a SQL expression over both row relations).

    ``keys`` is a relation with one column ``key``: the rows of the result (left-joined, so a
    key without labelled rows appears with zero counts). ``key_columns`` is the SELECT list
    that turns ``joined.key``, ``joined.first_ts``, ``joined.last_ts`` into leading columns.
    """
    info, sql, params = _relations(con, flt, key, weighted, extra_columns)
    binary = info.task == "binary"
    # One key (overall): the AUC is a second statement that can use ranks (_RANK_AUC).
    separate_auc = binary and auc and key == "'all'"
    with_auc = binary and auc and not separate_auc
    owned = None
    if cube is None and weighted and threshold == 0.5 and not with_auc and not extra_columns:
        # No cube given: one of the Filter alone from the hourly rollup, when it is current.
        from lossboard.dashboard.analysis import cube as cube_module
        owned = cube = cube_module.from_rollup(con, flt)
    try:
        return _grouped_sql(con, flt, info, sql, params, key=key, keys=keys,
                            key_columns=key_columns, order_by=order_by, min_samples=min_samples,
                            threshold=threshold, weighted=weighted, binary=binary,
                            separate_auc=separate_auc, with_auc=with_auc, what=what, cube=cube,
                            cube_dim=cube_dim, cube_key=cube_key)
    finally:
        if owned is not None:
            owned.drop(con)


def _grouped_sql(con: duckdb.DuckDBPyConnection, flt: Filter, info: ModelInfo, sql: str,
                 params: dict[str, object], *, key: str, keys: str, key_columns: str,
                 order_by: str, min_samples: int, threshold: float, weighted: bool,
                 binary: bool, separate_auc: bool, with_auc: bool, what: str,
                 cube: Cube | None, cube_dim: str, cube_key: str) -> tuple[ModelInfo, pd.DataFrame]:
    rows_sql = sql
    span = "SELECT key, count(*) AS n_predictions, min(ts) AS first_ts, max(ts) AS last_ts FROM preds GROUP BY key"
    if (cube is not None and weighted and threshold == 0.5 and not with_auc
            and cube.covers(resolve_model(con, flt))):
        # The same sums, read from the cube's slots instead of the rows (cube.py).
        where, cube_params = cube.where(flt, cube_dim)
        sql = f"""WITH hourly AS (SELECT {cube_key} AS key, * FROM {quote_ident(cube.table)} WHERE {where}),
preds AS (SELECT key, make_timestamp(first_us) AS ts FROM hourly)"""
        span = ("SELECT key, sum(n_predictions) AS n_predictions, make_timestamp(min(first_us)) "
                "AS first_ts, make_timestamp(max(last_us)) AS last_ts FROM hourly GROUP BY key")
        params = {**params, **cube_params}
    sums = ", ".join(f"coalesce(s.{c}, 0) AS {c}" for c in _SUM_NAMES)
    if with_auc:
        auc_select = _AUC_SELECT
        auc_join = "LEFT JOIN auc ON auc.key IS NOT DISTINCT FROM joined.key"
    else:
        reason = "'not_computed'" if binary else "'multiclass'"
        auc_select = (f"NULL::DOUBLE AS roc_auc, NULL::DOUBLE AS pr_auc, "
                      f"{reason} AS roc_auc_reason, {reason} AS pr_auc_reason")
        auc_join = ""
    sql += f""",
sums AS (SELECT key, {", ".join(f"sum({c}) AS {c}" for c in _SUM_NAMES)} FROM hourly GROUP BY key),
span AS ({span}),
keys AS ({keys}),
joined AS (
  SELECT keys.*, span.first_ts, span.last_ts, coalesce(span.n_predictions, 0) AS n_predictions,
         {sums}
  FROM keys LEFT JOIN span ON span.key IS NOT DISTINCT FROM keys.key
  LEFT JOIN sums s ON s.key IS NOT DISTINCT FROM keys.key
){_AUC_CTES.format(partition="" if key == "'all'" else "PARTITION BY key ") if with_auc else ""}
SELECT {key_columns}, {_metrics_sql(binary)}, {auc_select}{", s_y AS _pos, sw2 AS _sw2" if separate_auc else ""}
FROM joined {auc_join}
ORDER BY {order_by}"""
    params = _params(info, params, threshold=threshold, min_samples=min_samples, z=Z95,
                     model=info.model)
    frame = _execute(con, sql, params, what)
    if separate_auc:
        row = frame.iloc[0]
        figures = _overall_auc(con, rows_sql, params, n=int(row["n"]), pos=float(row["_pos"]),
                               sw=float(row["weight_sum"]), sw2=float(row["_sw2"]), what=what)
        frame = frame.drop(columns=["_pos", "_sw2"])
        for name, value in zip(AUC_COLUMNS, figures):
            frame[name] = [value]
    return info, _typed(frame)


def _overall_auc(con: duckdb.DuckDBPyConnection, rows_sql: str, params: dict[str, object], *,
                 n: int, pos: float, sw: float, sw2: float, what: str
                 ) -> tuple[float | None, float | None, str | None, str | None]:
    """(roc_auc, pr_auc, roc_auc_reason, pr_auc_reason) of the relation ``r`` in ``rows_sql``.

    Unit weights (Σw = Σw² = n, which holds only when every weight is exactly 1) take the rank
    formulas of _RANK_AUC; other weights the weighted window sums of _AUC_CTES."""
    if sw == n and sw2 == n:
        neg = n - pos
        if n == 0:
            return None, None, "no_data", "no_data"
        if pos == 0:
            return None, None, "no_positive_labels", "no_positive_labels"
        rank_sum, precision_sum = _cursor(
            con, rows_sql + _RANK_AUC, {**params, "ls_n": float(n), "ls_pos": pos}, what).fetchone()
        pr_auc = precision_sum / pos
        if neg == 0:
            return None, pr_auc, "no_negative_labels", None
        return (rank_sum - pos * (pos + 1) / 2) / (pos * neg), pr_auc, None, None
    row = _cursor(con, rows_sql + _AUC_CTES.format(partition="") + f"\nSELECT {_AUC_SELECT} FROM auc",
                  params, what).fetchone()
    return row if row is not None else (None, None, "no_data", "no_data")


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as Int64, figures as nullable Float64 (no data is <NA>, never NaN), reasons as
    nullable strings, times as UTC."""
    import pandas as pd  # lazily: see the module's TYPE_CHECKING import

    types: dict[str, str] = {}
    for col in frame.columns:
        if col in _COUNTS:
            types[col] = "Int64"
        elif col in _REASONS:
            types[col] = "string"
        elif col == "low_confidence":
            types[col] = "bool"
        elif col in METRIC_COLUMNS or col in ("roc_auc", "pr_auc"):
            types[col] = "Float64"
    frame = frame.astype(types)
    for col in ("bucket_start", "bucket_end", "window_start", "window_end", "first_seen",
                "first_ts", "last_ts"):
        if col in frame.columns:
            frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------------------- public API
def overall(con: duckdb.DuckDBPyConnection, flt: Filter, *,
            min_samples: int = DEFAULT_MIN_SAMPLES, threshold: float = 0.5,
            weighted: bool = True, auc: bool = True, cube: Cube | None = None) -> LossSummary:
    """Every loss figure of the Filter's labelled predictions, as one :class:`LossSummary`.

    Per row *i* with weight *w_i* (``weighted=False``: 1), over the ``n`` labelled rows with a
    finite score (NaN/inf rows are counted in ``n_nonfinite`` and excluded everywhere):

    * ``log_loss`` = Σ w_i·ℓ_i / Σ w_i with ℓ_i = -ln clip(p_true,i), natural log,
      clip to [1e-15, 1 - 1e-15] (binary: clip p, then p or 1 - p, as scikit-learn, so a
      confidently wrong row costs -ln(1 - (1 - 1e-15)) = 34.539; multiclass: renormalise the
      probabilities to sum 1, then clip the true class's share). ``perplexity`` = exp(log_loss).
    * ``log_loss_se`` = sqrt(var_w / (n_eff - 1)), var_w = Σ w(ℓ - log_loss)² / Σ w,
      n_eff = (Σ w)² / Σ w²; ``log_loss_ci_low/high`` = log_loss ∓ 1.96·se; ``None`` when
      n_eff <= 1 (one row, or one row with weight).
    * ``brier``: binary mean (p - y)² (no clipping; equals scikit-learn's brier_score_loss);
      multiclass mean Σ_k (q_k - 1[k = true])² over renormalised q (scikit-learn 1.9's
      ``scale_by_half='auto'``: range [0, 2] for >= 3 classes, halved for 2).
    * ``accuracy``: binary mean 1[(p >= threshold) == y]; multiclass: the top class (first one
      on ties) is the true class. Binary only: ``fpr`` = Σw·1[p >= t, y = 0] / Σw·1[y = 0],
      ``fnr`` = Σw·1[p < t, y = 1] / Σw·1[y = 1] (``None`` when the denominator is 0),
      ``mean_p``, ``mean_y``, ``calibration_in_the_large`` = mean_p - mean_y (> 0: predicts too
      high on average).
    * ``entropy`` = mean H, H = -[p̃ ln p̃ + (1 - p̃) ln(1 - p̃)], p̃ = clip(p) (multiclass
      H = -Σ_k q̃_k ln q̃_k, q̃ = clip(q)): the loss a calibrated model expects on these rows.
      ``loss_minus_entropy`` = log_loss - entropy: its growth means "the model got worse",
      growth of entropy means "the data got harder" (it is ~0 for a calibrated model, and may
      be negative for an underconfident one). Not segments.excess_loss (a segment vs the rest).
    * ``roc_auc``, ``pr_auc`` (binary): exact, over distinct scores, ties as scikit-learn's
      ``roc_auc_score`` / ``average_precision_score`` (with ``sample_weight``); ``None`` with
      ``roc_auc_reason`` / ``pr_auc_reason`` in ``no_data``, ``no_positive_labels``,
      ``no_negative_labels`` (ROC only; AP with only positives is 1), ``multiclass``,
      ``not_computed`` (``auc=False``: AUC is the one figure that needs a sort of the rows).

    Empty input: ``n = 0`` (or Σw = 0) gives every figure ``None`` and ``no_data`` True.
    ``low_confidence`` = n < ``min_samples``. ``threshold`` in [0, 1] only affects accuracy,
    fpr, fnr (binary).

    Example: two rows, p = 0.8 with y = 1 and p = 0.4 with y = 0, weights 1:
    log_loss = (-ln 0.8 - ln 0.6) / 2 = 0.3670, brier = (0.04 + 0.16) / 2 = 0.1, accuracy = 1,
    roc_auc = 1, calibration_in_the_large = 0.6 - 0.5 = 0.1.

    >>> with read_connection(db) as con:                               # doctest: +SKIP
    ...     s = overall(con, Filter(model="fraud", start="2026-10-21"))
    ...     print(s.n, round(s.log_loss, 3), s.low_confidence)
    """
    min_samples = _check_min_samples(min_samples)
    threshold = _check_threshold(threshold)
    weighted = _check_bool(weighted, "weighted")
    info, frame = _grouped(con, flt, key="'all'", keys="SELECT 'all' AS key",
                           key_columns="joined.key", order_by="1", min_samples=min_samples,
                           threshold=threshold, weighted=weighted, auc=_check_bool(auc, "auc"),
                           what="computing the overall log loss", cube=cube)
    import pandas as pd  # lazily: see the module's TYPE_CHECKING import

    row = frame.iloc[0]
    values: dict[str, object] = {}
    for name in (f.name for f in fields(LossSummary)):
        if name not in frame.columns:
            continue
        value = row[name]
        if pd.isna(value):
            values[name] = None
        elif name in _COUNTS:
            values[name] = int(value)
        elif name in _REASONS:
            values[name] = str(value)
        elif name == "low_confidence":
            values[name] = bool(value)
        else:
            values[name] = float(value)
    return LossSummary(model=info.model, task=info.task, weighted=weighted, threshold=threshold,
                       min_samples=min_samples, **values)


def by_bucket(con: duckdb.DuckDBPyConnection, flt: Filter, *, bucket: str = "day",
              min_samples: int = DEFAULT_MIN_SAMPLES, threshold: float = 0.5,
              weighted: bool = True, auc: bool = True, cube: Cube | None = None) -> pd.DataFrame:
    """The figures of :func:`overall` per UTC time bucket (``bucket`` = ``'hour'`` or ``'day'``).

    Columns: ``bucket_start``, ``bucket_end`` (UTC, half-open ``[start, end)``), then
    :data:`METRIC_COLUMNS` and :data:`AUC_COLUMNS` with :func:`overall`'s definitions (log loss
    clipped to [1e-15, 1 - 1e-15], weighted means, NaN/inf rows counted and excluded). A row's
    bucket is the one its prediction time ``ts`` falls in (not the label's time).

    Empty buckets: every bucket from the first to the last one holding a prediction of the
    Filter is present, in time order; a bucket without labelled rows is an explicit zero-count
    row (``n = 0``, figures ``<NA>``, AUC reason ``no_data``). No predictions: no rows.
    ``auc=False`` skips the per-bucket AUC (one sort per bucket; reason ``not_computed``).

    Example: rows at 10:15 (p = 0.8, y = 1) and 12:40 (p = 0.4, y = 0), ``bucket='hour'``:
    three rows, 10:00 with log_loss 0.2231, 11:00 with n = 0 and log_loss <NA>, 12:00 with
    0.5108.
    """
    bucket = _check_choice(bucket, "bucket", ("hour", "day"))
    step = "INTERVAL 1 HOUR" if bucket == "hour" else "INTERVAL 1 DAY"
    _, frame = _grouped(
        con, flt, key=_BUCKETS[bucket],
        keys=("SELECT unnest(generate_series(lo, hi, " + step + ")) AS key "
              "FROM (SELECT min(key) AS lo, max(key) AS hi FROM preds)"),
        key_columns=f"joined.key AS bucket_start, joined.key + {step} AS bucket_end",
        order_by="bucket_start", min_samples=_check_min_samples(min_samples),
        threshold=_check_threshold(threshold), weighted=_check_bool(weighted, "weighted"),
        auc=_check_bool(auc, "auc"), what=f"computing log loss per {bucket}", cube=cube,
        cube_key=f"make_timestamp(slot - ((slot % {_BUCKET_US[bucket]}) + {_BUCKET_US[bucket]}) % {_BUCKET_US[bucket]})")
    return frame


def by_version(con: duckdb.DuckDBPyConnection, flt: Filter, *,
               min_samples: int = DEFAULT_MIN_SAMPLES, threshold: float = 0.5,
               weighted: bool = True, auc: bool = True, cube: Cube | None = None) -> pd.DataFrame:
    """The figures of :func:`overall` per model version of the Filter.

    Columns: ``model_version``, ``first_seen`` (UTC, the version's first prediction in the
    whole database, ignoring the Filter), ``first_ts`` and ``last_ts`` (UTC, its first and last
    prediction in the Filter), then :data:`METRIC_COLUMNS` and :data:`AUC_COLUMNS` with
    :func:`overall`'s definitions. One row per version with a prediction in the Filter (a
    version without labels has ``n = 0`` and figures ``<NA>``), ordered by ``first_seen`` then
    name, so a canary follows the version it is compared with.

    Example: v1 rows (0.8, y=1), (0.4, y=0) and v2 row (0.9, y=0): v1 log_loss 0.3670,
    v2 log_loss -ln 0.1 = 2.3026.
    """
    _check_filter(flt)
    flt = resolve_model(con, flt)
    # Ordered by the version's first prediction in the whole database, not in the Filter: in
    # a window that starts after both are live, a canary would otherwise come out first.
    seen = ("SELECT model_version AS key, timezone('UTC', min(ts)) AS first_seen FROM predictions "
            "WHERE model = $ls_model GROUP BY model_version")
    _, frame = _grouped(
        con, flt, key="model_version",
        keys=f"SELECT * FROM (SELECT DISTINCT key FROM preds) JOIN ({seen}) USING (key)",
        key_columns=("joined.key AS model_version, joined.first_seen, joined.first_ts, "
                     "joined.last_ts"),
        order_by="first_seen, model_version", min_samples=_check_min_samples(min_samples),
        threshold=_check_threshold(threshold), weighted=_check_bool(weighted, "weighted"),
        auc=_check_bool(auc, "auc"), what="computing log loss per model version", cube=cube,
        cube_dim="model_version", cube_key="value")
    return frame


def by_segment(con: duckdb.DuckDBPyConnection, flt: Filter, column: str, *,
               min_samples: int = DEFAULT_MIN_SAMPLES, threshold: float = 0.5,
               weighted: bool = True, auc: bool = True) -> pd.DataFrame:
    """The figures of :func:`overall` per value of the segment column ``column``.

    Columns: ``segment`` (the column's name), ``value`` (the value as text, as the Filter
    matches segments, so ``Filter(segments=((segment, value),))`` drills down; ``<NA>`` for
    predictions without a value, which form their own row), then :data:`METRIC_COLUMNS` and
    :data:`AUC_COLUMNS` with :func:`overall`'s definitions. One row per value with a
    prediction in the Filter, ordered by value (missing last).

    ``column`` must be registered with role ``segment`` (``lossboard columns``).

    Example: region eu rows (0.8, y=1), (0.4, y=0) and us row (0.9, y=0): eu log_loss 0.3670,
    us 2.3026.
    """
    _check_filter(flt)
    segments = [name for name, _ in columns_with_role(con, "segment")]
    if column not in segments:
        raise QueryError(f"column must be a segment column ({', '.join(segments) or 'none'}); "
                         f"got {column!r}")
    # A user column named like one that labelled_rows computes (y, loss, clipped, ...) would be
    # renamed by DuckDB and the breakdown would silently use the computed one instead.
    lab = labelled_rows(con, resolve_model(con, flt))
    computed = {d[0] for d in _cursor(con, f"SELECT * FROM ({lab.sql}) LIMIT 0", lab.params,
                                      f"checking column {column!r}").description}
    if column in computed:
        raise QueryError(f"column {column!r} has the name of a column lossboard computes per row "
                         f"({', '.join(sorted(computed))}); rename it to break down by it")
    _, frame = _grouped(
        con, flt, key=f"CAST({quote_ident(column)} AS VARCHAR)", extra_columns=(column,),
        keys="SELECT DISTINCT key FROM preds",
        key_columns="joined.key AS value",
        order_by="value NULLS LAST", min_samples=_check_min_samples(min_samples),
        threshold=_check_threshold(threshold), weighted=_check_bool(weighted, "weighted"),
        auc=_check_bool(auc, "auc"), what=f"computing log loss per {column}")
    import pandas as pd  # lazily: see the module's TYPE_CHECKING import

    frame["value"] = frame["value"].astype("string")
    frame.insert(0, "segment", pd.array([column] * len(frame), dtype="string"))
    return frame


def rolling(con: duckdb.DuckDBPyConnection, flt: Filter, *, window: str = "24h",
            step: str = "hour", min_samples: int = DEFAULT_MIN_SAMPLES,
            threshold: float = 0.5, weighted: bool = True, cube: Cube | None = None) -> pd.DataFrame:
    """The figures of :func:`overall` (except AUC) over rolling windows of ``window``.

    ``window``: ``'<N>h'`` or ``'<N>d'`` (the dashboard's presets: 1h, 6h, 24h, 7d, 30d);
    ``step``: ``'hour'`` (a window ends on every UTC hour boundary) or ``'day'`` (on every UTC
    midnight). Columns: ``window_start``, ``window_end`` (UTC, half-open
    ``[window_end - window, window_end)``), then :data:`METRIC_COLUMNS` with :func:`overall`'s
    definitions (log loss clipped to [1e-15, 1 - 1e-15], weighted, NaN/inf counted and
    excluded). AUC is not a mergeable sum and is not computed here.

    Exactness: the per-UTC-hour sums (Σw·ℓ, Σw, Σw², Σw·ℓ², counts, ...) are summed by a
    DuckDB window over a ``RANGE`` frame of ``window`` hours, so every figure equals the
    row-level computation over the window exactly (up to float summation order), because
    every window ends on an hour boundary.

    Rows: one per step from the first window ending after the first prediction of the Filter
    to the first ending at or after the last one, in time order; windows without labelled rows
    are explicit (``n = 0``, figures ``<NA>``). Windows only see rows inside the Filter, so the
    first ones after the Filter's start hold less than a full window (their ``n`` shows it).

    Example: rows at 10:15 (p = 0.8, y = 1) and 12:40 (p = 0.4, y = 0), ``window='2h'``:
    windows ending 11:00 (0.2231), 12:00 (0.2231), 13:00 (n = 1, 0.5108).
    """
    hours = window_hours(window)
    step = _check_choice(step, "step", ("hour", "day"))
    min_samples = _check_min_samples(min_samples)
    threshold = _check_threshold(threshold)
    weighted = _check_bool(weighted, "weighted")
    info, sql, params = _relations(con, flt, "'all'", weighted, ())
    pred_hours = "SELECT hour, count(*) AS n_predictions FROM preds GROUP BY hour"
    if cube is not None and weighted and threshold == 0.5 and cube.covers(resolve_model(con, flt)):
        # The same hourly sums, from the cube's slots (cube.py).
        where, cube_params = cube.where(flt)
        m = _BUCKET_US["hour"]
        sums = ", ".join(f"sum({c}) AS {c}" for c in _SUM_NAMES)
        sql = f"""WITH preds AS (SELECT make_timestamp(slot - ((slot % {m}) + {m}) % {m}) AS hour, *
               FROM {quote_ident(cube.table)} WHERE {where}),
hourly AS (SELECT hour, {sums} FROM preds GROUP BY hour)"""
        pred_hours = "SELECT hour, sum(n_predictions) AS n_predictions FROM preds GROUP BY hour"
        params = {**params, **cube_params}
    if step == "hour":
        lo, hi, keep = "min(hour)", "max(hour)", "true"
    else:
        lo = "date_trunc('day', min(hour))"
        hi = "date_trunc('day', max(hour)) + INTERVAL 23 HOUR"
        keep = "date_part('hour', window_end) = 0"
    dense = ", ".join(f"coalesce(h.{c}, 0) AS {c}" for c in _SUM_NAMES)
    summed = ", ".join(f"sum({c}) OVER frame_w AS {c}" for c in ("n_predictions",) + _SUM_NAMES)
    sql += f""",
pred_hours AS ({pred_hours}),
grid AS (SELECT unnest(generate_series(lo, hi, INTERVAL 1 HOUR)) AS hour
         FROM (SELECT {lo} AS lo, {hi} AS hi FROM preds)),
dense AS (
  SELECT grid.hour, coalesce(ph.n_predictions, 0) AS n_predictions, {dense}
  FROM grid LEFT JOIN pred_hours ph ON ph.hour = grid.hour LEFT JOIN hourly h ON h.hour = grid.hour
),
rolled AS (
  SELECT hour + INTERVAL 1 HOUR AS window_end, {summed}
  FROM dense
  WINDOW frame_w AS (ORDER BY hour
                     RANGE BETWEEN to_hours(CAST($ls_window_hours AS BIGINT) - 1) PRECEDING
                     AND CURRENT ROW)
)
SELECT window_end - to_hours(CAST($ls_window_hours AS BIGINT)) AS window_start, window_end,
  {_metrics_sql(info.task == "binary")}
FROM rolled WHERE {keep}
ORDER BY window_end"""
    params = _params(info, params, threshold=threshold, min_samples=min_samples, z=Z95,
                     window_hours=hours)
    return _typed(_execute(con, sql, params, f"computing the rolling {window} log loss"))
