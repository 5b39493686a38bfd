"""The relations every metric starts from, and the per-row loss definition.

Every analysis module builds its SQL on :func:`labelled_rows` (predictions with a usable label,
one row per prediction, with ``y``, the clipped probability and the per-row loss) or
:func:`prediction_rows` (all predictions in the filter, labelled or not). Keeping the per-row
definitions here means log loss is defined once (docs/metrics.md, "Log loss").

Per-row columns of :func:`labelled_rows`:

``ts, model_version, weight`` as stored; ``label`` canonical text, ``label_ts`` and
``label_ts_source``; ``score_ok`` (the score is
finite: NaN / inf rows are excluded from every loss and counted instead); ``clipped`` (the
probability of the true class needed clipping); ``p`` (binary: probability of class 1 as
logged; multiclass: probability of the top class after renormalising); ``p_true`` (probability
given to the true class, renormalised, before clipping); ``y`` (binary: 1.0 / 0.0; multiclass:
1.0 when the top class is the true class); ``loss`` = -ln of the
clipped probability of the true class (binary: clip p to [1e-15, 1 - 1e-15], then p or 1 - p;
multiclass: renormalise, then clip the true class's share), NULL when not ``score_ok``; plus
any user columns asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import duckdb

from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

#: Probabilities are clipped to [CLIP_EPS, 1 - CLIP_EPS] before the log (docs/metrics.md).
CLIP_EPS = 1e-15
#: Windows with fewer labelled rows than this are flagged ``low_confidence``.
DEFAULT_MIN_SAMPLES = 1000
#: z for a two-sided 95% normal interval.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model."""

    model: str
    task: str  # binary | multiclass
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Rows:
    """A SQL relation (to use as a subquery) and its bind parameters."""

    sql: str
    params: dict[str, object]


def predictions_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Column name -> type of the predictions table."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'predictions' ORDER BY ordinal_position").fetchall()
    return {r[0]: r[1] for r in rows}


def columns_with_role(con: duckdb.DuckDBPyConnection, role: str) -> list[tuple[str, str]]:
    """(name, sql_type) of the registered predictions columns with ``role``, by name."""
    return [(r[0], r[1]) for r in con.execute(
        "SELECT name, sql_type FROM columns WHERE kind = 'predictions' AND role = ? ORDER BY name",
        [role]).fetchall()]


def segment_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The registered segment columns of the predictions table, by name."""
    return [name for name, _ in columns_with_role(con, "segment")]


def model_info(con: duckdb.DuckDBPyConnection, model: str) -> ModelInfo:
    row = con.execute("SELECT task, classes FROM models WHERE model = ?", [model]).fetchone()
    if row is None:
        known = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
        raise QueryError(f"no model {model!r} in the database (models: {', '.join(known) or 'none'})")
    return ModelInfo(model=model, task=row[0], classes=tuple(row[1] or ()))


def resolve_model(con: duckdb.DuckDBPyConnection, flt: Filter) -> Filter:
    """The filter with its model set: left out, it is the database's only model."""
    if flt.model is not None:
        model_info(con, flt.model)
        return flt
    models = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
    if len(models) == 1:
        return replace(flt, model=models[0])
    if not models:
        raise QueryError("the database holds no predictions yet; ingest some with `lossboard ingest`")
    raise QueryError(f"the database holds several models ({', '.join(models)}); choose one "
                     "with --model (or the model selector)")


def _user_columns(con: duckdb.DuckDBPyConnection, extra: Sequence[str]) -> str:
    known = predictions_columns(con)
    for col in extra:
        if col not in known:
            raise QueryError(f"no predictions column {col!r}")
    return "".join(f", p.{quote_ident(c)}" for c in extra)


def prediction_rows(con: duckdb.DuckDBPyConnection, flt: Filter,
                    extra_columns: Sequence[str] = ()) -> Rows:
    """All predictions of the filter (labelled or not): ts, model_version, p, logit, probs,
    weight, score_ok, plus ``extra_columns``."""
    flt = resolve_model(con, flt)
    where = flt.where(predictions_columns(con), alias="p")
    score_ok = ("isfinite(p.p)" if model_info(con, flt.model).task == "binary"
                else "coalesce(list_bool_and(list_transform(p.probs, lambda x: isfinite(x))), false) "
                     "AND list_sum(p.probs) > 0")
    sql = (f"SELECT p.ts, p.model, p.model_version, p.p, p.logit, p.probs, p.weight, "
           f"{score_ok} AS score_ok{_user_columns(con, extra_columns)} "
           f"FROM predictions p WHERE {where.sql}")
    return Rows(sql, where.params)


def labelled_rows(con: duckdb.DuckDBPyConnection, flt: Filter,
                  extra_columns: Sequence[str] = ()) -> Rows:
    """Predictions of the filter that have a usable label, with the per-row loss.

    The label is the copy the ingest keeps on each prediction (``predictions.label``,
    ingest/schema.py ``LABEL_COPY_COLUMNS``): no join.

    A label is usable when it is valid for the model (0/1 for binary, one of the classes for
    multiclass); labels written before the model was registered can be neither, and are left
    out here (the labels page counts them).
    """
    return _scored(con, flt, _user_columns(con, extra_columns), labelled_only=True)


def scored_rows(con: duckdb.DuckDBPyConnection, flt: Filter,
                aliased: Sequence[tuple[str, str]] = ()) -> Rows:
    """Every prediction of the filter, labelled or not, with :func:`labelled_rows`'s per-row
    columns plus ``labelled`` (a usable label exists) and ``us`` (epoch microseconds of ts);
    the per-row figures are meaningless where ``labelled`` is false. ``aliased``: (alias,
    column) pairs of user columns to add under a name of lossboard's choosing (no clash with
    the computed names). One scan feeds every sum of :mod:`cube`."""
    known = predictions_columns(con)
    for _, col in aliased:
        if col not in known:
            raise QueryError(f"no predictions column {col!r}")
    extra = "epoch_us(p.ts) AS us" + "".join(f", p.{quote_ident(c)} AS {quote_ident(a)}"
                                             for a, c in aliased)
    return _scored(con, flt, ", " + extra, labelled_only=False)


def _scored(con: duckdb.DuckDBPyConnection, flt: Filter, user: str, *, labelled_only: bool) -> Rows:
    flt = resolve_model(con, flt)
    info = model_info(con, flt.model)
    where = flt.where(predictions_columns(con), alias="p")
    params: dict[str, object] = dict(where.params)
    lo, hi = f"{CLIP_EPS!r}", f"(1 - {CLIP_EPS!r})"
    if info.task == "binary":
        # Clip p (the probability of class 1), then take 1 - p for label 0: the same order of
        # operations as scikit-learn, so a confidently wrong row costs -ln(1 - (1 - 1e-15)) =
        # 34.539 in both (1 - (1 - 1e-15) is 9.992e-16 in binary floating point, not 1e-15).
        pc = f"least(greatest(p.p, {lo}), {hi})"
        per_row = (f"p.p AS p, (p.label = '1')::DOUBLE AS y, isfinite(p.p) AS score_ok, "
                   f"CASE WHEN p.label = '1' THEN p.p ELSE 1 - p.p END AS p_true, "
                   f"CASE WHEN p.label = '1' THEN {pc} ELSE 1 - {pc} END AS p_true_clipped, "
                   f"(p.p < {lo} OR p.p > {hi}) AS needs_clip")
        label_ok = "p.label IN ('0', '1')"
    else:
        params["lb_classes"] = list(info.classes)
        total = "list_sum(p.probs)"
        k = "list_position($lb_classes, p.label)"
        true_prob = f"p.probs[{k}] / {total}"
        per_row = (f"list_max(p.probs) / {total} AS p, "
                   f"(list_position(p.probs, list_max(p.probs)) = {k})::DOUBLE AS y, "
                   f"coalesce(list_bool_and(list_transform(p.probs, lambda x: isfinite(x))), false) "
                   f"AND {total} > 0 AS score_ok, "
                   f"{true_prob} AS p_true, "
                   f"least(greatest({true_prob}, {lo}), {hi}) AS p_true_clipped, "
                   f"({true_prob} < {lo} OR {true_prob} > {hi}) AS needs_clip")
        label_ok = "list_contains($lb_classes, p.label)"
    if labelled_only:
        condition, labelled = f"{where.sql} AND {label_ok}", ""
    else:
        condition, labelled = where.sql, f", coalesce({label_ok}, false) AS labelled"
    sql = f"""SELECT * EXCLUDE (p_true_clipped, needs_clip),
       CASE WHEN score_ok THEN -ln(p_true_clipped) END AS loss,
       score_ok AND needs_clip AS clipped
FROM (
  SELECT p.ts, p.model_version, p.weight, p.label, p.label_ts, p.label_ts_source, {per_row}{labelled}{user}
  FROM predictions p
  WHERE {condition}
)"""
    return Rows(sql, params)
