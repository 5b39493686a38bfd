"""Row rules as SQL: type each raw row into the log contract and give it a reason if bad.

The staging table built here holds, per raw row: its ordinal, the typed contract columns, the
user's extra columns cast to their registered type, a content hash, and ``_lb_reason``
(NULL = acceptable so far) with a human-readable ``_lb_detail``. Reasons are checked in a fixed
order and the first that applies wins, so every row has exactly one.

Conventions (docs/log-contract.md):

* Timestamps: text is parsed as ISO-8601 (date only, with or without a UTC offset) or, when it
  is a plain number, as epoch seconds / milliseconds / microseconds / nanoseconds by magnitude
  (|x| < 1e11 is seconds, < 1e14 ms, < 1e17 us, else ns). Naive values are in the ingest's
  time zone (UTC unless ``--timezone``). Instants outside [1970-01-01, 2200-01-01) are
  ``bad_ts``: they are almost always unit mistakes.
* Scores: NaN and +-inf are stored as such (they are production failures the analysis
  counts); a finite ``p`` outside [0, 1] is ``score_out_of_range``; text that is not a number
  is ``bad_score``. A logit becomes ``p`` through a sigmoid written so it never overflows.
* Labels are canonical text: 1/true/yes -> '1', 0/false/no -> '0', else the trimmed class
  name. A label the model's registered classes do not allow is ``bad_label``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lossboard.ingest.mapping import ResolvedMapping
from lossboard.sql import quote_ident as q
from lossboard.sql import quote_literal

TS_MIN = "1970-01-01 00:00:00+00"
TS_MAX = "2200-01-01 00:00:00+00"


@dataclass(frozen=True)
class ExtraColumn:
    """A user column carried into the data table under its own (or a safe) name."""

    source: str  # name in the file
    target: str  # name in the table
    role: str
    source_type: str
    target_type: str
    staged: str  # name in the staging table


def _is_text(sql_type: str) -> bool:
    return sql_type.upper() == "VARCHAR"


def _blank(col: str, sql_type: str) -> str:
    """SQL true when the raw value is missing (NULL, or empty text)."""
    if _is_text(sql_type):
        return f"({col} IS NULL OR trim({col}) = '')"
    return f"({col} IS NULL)"


def _as_double(col: str, sql_type: str) -> str:
    if _is_text(sql_type):
        return f"TRY_CAST(trim({col}) AS DOUBLE)"
    return f"TRY_CAST({col} AS DOUBLE)"


def _epoch_to_ts(x: str) -> str:
    return (f"CASE WHEN NOT isfinite({x}) OR abs({x}) >= 1e20 THEN NULL "
            f"WHEN abs({x}) >= 1e17 THEN to_timestamp({x} / 1e9) "
            f"WHEN abs({x}) >= 1e14 THEN to_timestamp({x} / 1e6) "
            f"WHEN abs({x}) >= 1e11 THEN to_timestamp({x} / 1e3) "
            f"ELSE to_timestamp({x}) END")


def ts_expr(col: str, sql_type: str) -> str:
    """SQL turning a raw column of ``sql_type`` into TIMESTAMPTZ (NULL when unparsable)."""
    t = sql_type.upper()
    if "TIME ZONE" in t or t.startswith("TIMESTAMPTZ"):
        # TIMESTAMPTZ and its nanosecond variant (pandas writes TIMESTAMPTZ_NS): an instant.
        parsed = f"CAST({col} AS TIMESTAMPTZ)"
    elif t.startswith("TIMESTAMP") or t == "DATE":
        parsed = f"CAST(CAST({col} AS TIMESTAMP) AS TIMESTAMPTZ)"
    elif t in ("VARCHAR",):
        parsed = (f"CASE WHEN regexp_full_match(trim({col}), '[+-]?[0-9]+(\\.[0-9]*)?') "
                  f"THEN {_epoch_to_ts(f'TRY_CAST(trim({col}) AS DOUBLE)')} "
                  f"ELSE TRY_CAST(trim({col}) AS TIMESTAMPTZ) END")
    elif _numeric(t):
        parsed = _epoch_to_ts(f"CAST({col} AS DOUBLE)")
    else:
        parsed = f"TRY_CAST(CAST({col} AS VARCHAR) AS TIMESTAMPTZ)"
    return (f"(CASE WHEN ({parsed}) >= TIMESTAMPTZ '{TS_MIN}' AND ({parsed}) < TIMESTAMPTZ "
            f"'{TS_MAX}' THEN ({parsed}) END)")


def _numeric(t: str) -> bool:
    from lossboard.ingest.mapping import is_numeric_type

    return is_numeric_type(t)


def as_text(col: str, sql_type: str = "VARCHAR") -> str:
    """The value as plain text; a JSON value (mixed-type JSON fields) loses its quotes."""
    if sql_type.upper() == "JSON":
        return f"json_extract_string({col}, '$')"
    return f"CAST({col} AS VARCHAR)"


def _text(col: str, sql_type: str = "VARCHAR") -> str:
    return f"NULLIF(trim({as_text(col, sql_type)}), '')"


#: Label spellings that mean 1 and 0 (compared after trim and lower).
_LABEL_SPELLINGS = (("1", ("1", "1.0", "true", "t", "yes")), ("0", ("0", "0.0", "false", "f", "no")))


def canonical_label(col: str, sql_type: str = "VARCHAR") -> str:
    text = as_text(col, sql_type)
    v = f"lower(trim({text}))"
    # One WHEN per spelling, not `IN (...)` (nor list_contains, rewritten to IN): DuckDB plans
    # an IN list of 5 constants as a hash (mark) join, and a join in the staging CTAS gives
    # up the file's row order, which then cost a sort of every label before the insert.
    whens = " ".join(f"WHEN {quote_literal(spelling)} THEN '{value}'"
                     for value, spellings in _LABEL_SPELLINGS for spelling in spellings)
    return f"CASE {v} {whens} ELSE NULLIF(trim({text}), '') END"


def sigmoid(x: str) -> str:
    # Two branches so exp() only ever sees a non-positive argument: no overflow for huge
    # logits, and +-inf map to exactly 1 / 0. NaN compares greater than everything in DuckDB,
    # so it takes the first branch and stays NaN.
    return (f"CASE WHEN {x} >= 0 THEN 1.0 / (1.0 + exp(-({x}))) "
            f"ELSE exp({x}) / (1.0 + exp({x})) END")


def pii_hash(col: str) -> str:
    """Salted SHA-256 of the value's text, first 20 hex digits (80 bits): enough to count and
    join, useless to reverse. The salt is bound as ``$salt``."""
    return f"left(sha256($salt || CAST({col} AS VARCHAR)), 20)"


_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                            "USMALLINT", "UINTEGER", "UBIGINT"})


def _extra_cast(x: ExtraColumn) -> tuple[str, str]:
    """(value expression, 'cast failed' condition) for one extra column."""
    col = q(x.source)
    if x.role == "pii":
        return pii_hash(col), "false"
    if x.source_type.upper() == x.target_type.upper():
        return col, "false"
    if x.target_type.upper() == "VARCHAR":
        return f"CAST({col} AS VARCHAR)", "false"
    source = f"NULLIF(trim({col}), '')" if _is_text(x.source_type) else col
    value = f"TRY_CAST({source} AS {x.target_type})"
    failed = f"({source} IS NOT NULL AND {value} IS NULL)"
    if x.target_type.upper() in _INTEGER_TYPES:
        # DuckDB rounds '5.5' to 6 when casting to an integer; a fraction is a bad value here.
        failed = f"({failed} OR TRY_CAST({source} AS DOUBLE) <> {value})"
    return value, failed


def _extras_parts(extras: list[ExtraColumn]) -> tuple[list[str], str, str]:
    """Select items for the extras, a 'some cast failed' condition, and a detail expression."""
    items, bad_items = [], []
    for x in extras:
        value, failed = _extra_cast(x)
        items.append(f"{value} AS {q(x.staged)}")
        if failed != "false":
            # The column, the value and the type it fails, as the score rules show theirs.
            shown = quote_literal(f"{x.source} = ")
            wanted = quote_literal(f" is not a {x.target_type}")
            bad_items.append(f"CASE WHEN {failed} THEN {shown} || {_show(q(x.source))} || {wanted} END")
    if not bad_items:
        return items, "false", "NULL"
    detail = f"concat_ws('; ', {', '.join(bad_items)})"
    return items, f"(concat_ws('', {', '.join(bad_items)}) <> '')", detail


@dataclass(frozen=True)
class StagingSql:
    """The CTAS that builds the staging table, and its bind parameters' names."""

    sql: str


def staging_sql(mapping: ResolvedMapping, raw_types: dict[str, str], extras: list[ExtraColumn],
                n_classes: int | None, ordinal: str = "rowid") -> StagingSql:
    """``CREATE TABLE staged AS ...`` over the raw rows ``raw`` for ``mapping.kind``.

    ``ordinal`` is the column of ``raw`` that numbers its rows in file order from 0: ``rowid``
    when ``raw`` is a table the file was copied into, the reader's file row number when
    ``raw`` is a view over the file (:func:`lossboard.ingest.readers.raw_view`).

    Parameters bound by the caller: ``$salt`` (PII), ``$ingest_ts`` (label time when the file has
    none), ``$model`` / ``$model_version`` (constants, may be NULL), ``$classes`` (VARCHAR[]),
    and for labels the model registry as three parallel lists: ``$registry_models``,
    ``$registry_tasks`` and ``$registry_classes``, and ``$registry_labels``, the labels any
    registered model accepts (:func:`registry_labels`).
    """
    builder = {"predictions": _predictions, "labels": _labels, "kpi": _kpi}[mapping.kind]
    return StagingSql(builder(mapping, raw_types, extras, n_classes, ordinal))


def registry_labels(models: list[tuple[str, str, list[str] | None]]) -> list[str]:
    """Every label some registered model accepts: '0' and '1' for a binary model, the classes
    of a multiclass one; sorted, each once. ``models``: (model, task, classes) rows."""
    labels: set[str] = set()
    for _, task, classes in models:
        labels.update(("0", "1") if task == "binary" else (classes or ()))
    return sorted(labels)


def _field(mapping: ResolvedMapping, raw_types: dict[str, str], name: str) -> tuple[str, str] | None:
    col = mapping.fields.get(name)
    if col is None:
        return None
    return q(col), raw_types[col]


def _reason_case(rules: list[tuple[str, str, str]]) -> tuple[str, str]:
    reason = "CASE " + " ".join(f"WHEN {cond} THEN '{code}'" for cond, code, _ in rules) + " END"
    detail = "CASE " + " ".join(f"WHEN {cond} THEN {det}" for cond, _, det in rules) + " END"
    return reason, detail


def _show(col: str) -> str:
    """A raw value as text for a detail message."""
    return f"coalesce(CAST({col} AS VARCHAR), 'NULL')"


def _pass_raw(col: str, name: str) -> str:
    """Select item carrying a raw column through the inner select as ``_lb_<name>_src``, so
    that a detail message can show it with :func:`_raw`."""
    return f"{col} AS _lb_{name}_src"


def _raw(name: str) -> str:
    """The raw value passed by :func:`_pass_raw`, as text, for a detail message.

    Rendered in the outer select, inside the detail ``CASE``, so DuckDB turns a value into
    text only for the rows whose rule fires: rendering every row's timestamp and score as
    text in the inner select cost 2 of the 6 s of staging 10M Parquet predictions
    (docs/benchmarks.md).
    """
    return _show(f"_lb_{name}_src")


def _predictions(m: ResolvedMapping, raw_types: dict[str, str], extras: list[ExtraColumn],
                 n_classes: int | None, ordinal: str) -> str:
    rid_col, rid_t = _field(m, raw_types, "request_id")  # type: ignore[misc]
    ts_col, ts_t = _field(m, raw_types, "ts")  # type: ignore[misc]
    inner: list[str] = [
        f"{ordinal} AS _lb_ord",
        f"{_text(rid_col, rid_t)} AS request_id",
        f"{ts_expr(ts_col, ts_t)} AS ts",
        f"{_blank(ts_col, ts_t)} AS _lb_ts_blank",
        f"{_pass_raw(ts_col, 'ts')}",
    ]
    for fld, param in (("model", "$model"), ("model_version", "$model_version")):
        f = _field(m, raw_types, fld)
        inner.append(f"coalesce({_text(*f)}, {param}) AS {fld}" if f else f"{param} AS {fld}")

    score_rules: list[tuple[str, str, str]] = []
    p_col = _field(m, raw_types, "p")
    logit_col = _field(m, raw_types, "logit")
    if m.class_probs or _field(m, raw_types, "probs"):
        if m.class_probs:
            cols = [(q(c), raw_types[c]) for _, c in m.class_probs]
            inner.append("list_value(" + ", ".join(_as_double(c, t) for c, t in cols) + ") AS probs")
            inner.append("(" + " AND ".join(_blank(c, t) for c, t in cols) + ") AS _lb_score_blank")
            inner.append("(" + " OR ".join(f"(NOT {_blank(c, t)} AND {_as_double(c, t)} IS NULL)"
                                          for c, t in cols) + ") AS _lb_score_bad")
            inner.append("(" + " OR ".join(_blank(c, t) for c, t in cols) + ") AS _lb_score_partial")
            inner += [_pass_raw(c, f"score{i}") for i, (c, _) in enumerate(cols)]
            shown = "concat_ws(', ', " + ", ".join(_raw(f"score{i}") for i in range(len(cols))) + ")"
        else:
            pc, pt = _field(m, raw_types, "probs")  # type: ignore[misc]
            src = f"trim({pc})" if _is_text(pt) else pc
            inner.append(f"TRY_CAST({src} AS DOUBLE[]) AS probs")
            inner.append(f"{_blank(pc, pt)} AS _lb_score_blank")
            inner.append(f"(NOT {_blank(pc, pt)} AND (TRY_CAST({src} AS DOUBLE[]) IS NULL OR "
                         f"len(TRY_CAST({src} AS DOUBLE[])) <> $n_classes)) AS _lb_score_bad")
            inner.append(f"list_contains(TRY_CAST({src} AS DOUBLE[]), NULL) AS _lb_score_partial")
            inner.append(_pass_raw(pc, "score"))
            shown = _raw("score")
        inner += ["CAST(NULL AS DOUBLE) AS p", "CAST(NULL AS DOUBLE) AS logit"]
        score_rules = [
            ("_lb_score_blank", "missing_score", "'no class probabilities'"),
            ("_lb_score_bad", "bad_score", f"'class probabilities: ' || {shown}"),
            ("_lb_score_partial", "missing_score", f"'a class probability is missing: ' || {shown}"),
            ("list_bool_or(list_transform(probs, lambda x: isfinite(x) AND (x < 0 OR x > 1)))",
             "score_out_of_range", f"'class probabilities outside [0, 1]: ' || {shown}"),
        ]
    else:
        sc, st = p_col if p_col else logit_col  # type: ignore[misc]
        name = "p" if p_col else "logit"
        inner.append(f"{_as_double(sc, st)} AS _lb_score")
        inner.append(f"{_blank(sc, st)} AS _lb_score_blank")
        inner.append(_pass_raw(sc, "score"))
        if p_col:
            inner.append(f"{_as_double(sc, st)} AS p")
            if logit_col:
                inner.append(f"{_as_double(*logit_col)} AS logit")
            else:
                inner.append("CAST(NULL AS DOUBLE) AS logit")
        else:
            inner.append(f"{sigmoid(_as_double(sc, st))} AS p")
            inner.append(f"{_as_double(sc, st)} AS logit")
        inner.append("CAST(NULL AS DOUBLE[]) AS probs")
        score_rules = [
            ("_lb_score_blank", "missing_score", f"'{name} is empty'"),
            ("_lb_score IS NULL", "bad_score", f"'{name} is not a number: ' || {_raw('score')}"),
        ]
        if p_col:
            score_rules.append(("isfinite(_lb_score) AND (_lb_score < 0 OR _lb_score > 1)",
                                "score_out_of_range", f"'p = ' || {_raw('score')} || ' is outside [0, 1]'"))
    w = _field(m, raw_types, "weight")
    if w:
        inner.append(f"coalesce({_as_double(*w)}, 1.0) AS weight")
        inner.append(f"(NOT {_blank(*w)} AND ({_as_double(*w)} IS NULL OR NOT isfinite("
                     f"{_as_double(*w)}) OR {_as_double(*w)} < 0)) AS _lb_weight_bad")
        inner.append(_pass_raw(w[0], "weight"))
    else:
        inner += ["1.0 AS weight", "false AS _lb_weight_bad", "NULL AS _lb_weight_src"]
    extra_items, extra_bad, extra_detail = _extras_parts(extras)
    inner += extra_items
    inner += [f"{extra_bad} AS _lb_extra_bad", f"{extra_detail} AS _lb_extra_detail"]

    rules = [
        ("request_id IS NULL", "missing_request_id", "'request id is empty'"),
        ("_lb_ts_blank", "missing_ts", "'timestamp is empty'"),
        ("ts IS NULL", "bad_ts", f"'not a timestamp in [1970, 2200): ' || {_raw('ts')}"),
        ("model IS NULL", "missing_model", "'model is empty and no --model given'"),
        ("model_version IS NULL", "missing_model_version",
         "'model version is empty and no --model-version given'"),
        *score_rules,
        ("_lb_weight_bad", "bad_weight", f"'weight must be a finite number >= 0: ' || {_raw('weight')}"),
        ("_lb_extra_bad", "bad_value", "_lb_extra_detail"),
    ]
    reason, detail = _reason_case(rules)
    staged_extras = ", ".join(q(x.staged) for x in extras)
    return f"""CREATE TABLE staged AS
SELECT _lb_ord, _lb_ord + 1 AS _lb_row_number, request_id, ts, model, model_version, p, logit, probs, weight,
       hash(request_id, model, model_version, ts, p, logit, probs, weight) AS _lb_row_hash,
       {reason} AS _lb_reason, {detail} AS _lb_detail{', ' + staged_extras if extras else ''}
FROM (SELECT {', '.join(inner)} FROM raw)"""


def _labels(m: ResolvedMapping, raw_types: dict[str, str], extras: list[ExtraColumn],
            n_classes: int | None, ordinal: str) -> str:
    rid_col, rid_t = _field(m, raw_types, "request_id")  # type: ignore[misc]
    lab_col, lab_t = _field(m, raw_types, "label")  # type: ignore[misc]
    inner = [
        f"{ordinal} AS _lb_ord",
        f"{_text(rid_col, rid_t)} AS request_id",
        f"{canonical_label(lab_col, lab_t)} AS label",
        _pass_raw(lab_col, "label"),
    ]
    mf = _field(m, raw_types, "model")
    inner.append(f"coalesce({_text(*mf)}, $model) AS model" if mf else "$model AS model")
    lt = _field(m, raw_types, "label_ts")
    if lt:
        inner += [f"coalesce({ts_expr(*lt)}, CASE WHEN {_blank(*lt)} THEN $ingest_ts END) AS label_ts",
                  f"CASE WHEN {_blank(*lt)} THEN 'ingest_time' ELSE 'file' END AS label_ts_source",
                  _pass_raw(lt[0], "ts")]
        ts_shown = _raw("ts")
    else:
        inner += ["$ingest_ts AS label_ts", "'ingest_time' AS label_ts_source"]
        ts_shown = "NULL"  # never shown: the ingest time is always a valid label time
    extra_items, extra_bad, extra_detail = _extras_parts(extras)
    inner += extra_items
    inner += [f"{extra_bad} AS _lb_extra_bad", f"{extra_detail} AS _lb_extra_detail"]
    # The model registry is looked up in maps built from bound lists, not joined: a join
    # does not keep the file's row order, which then cost a sort of every label before the
    # insert (docs/benchmarks.md). A model missing from the registry looks up NULL, as the
    # LEFT JOIN it replaces gave.
    names = "CAST($registry_models AS VARCHAR[])"
    task = f"map_extract_value(MAP({names}, CAST($registry_tasks AS VARCHAR[])), s.model)"
    classes = f"map_extract_value(MAP({names}, CAST($registry_classes AS VARCHAR[][])), s.model)"
    # A label without a model applies to every model that scored its request, so it must be
    # a label of at least one registered model ($registry_labels: their union). A MAP lookup,
    # not list_contains, for the no-join reason above.
    any_label = "CAST($registry_labels AS VARCHAR[])"
    known = f"map_extract_value(MAP({any_label}, {any_label}), label)"
    rules = [
        ("request_id IS NULL", "missing_request_id", "'request id is empty'"),
        ("label IS NULL", "bad_label", "'label is empty'"),
        (f"s.model IS NULL AND len({any_label}) > 0 AND {known} IS NULL", "bad_label",
         f"'no registered model has this label (labels: ' || array_to_string({any_label}, ', ') "
         "|| '); got ' || " + _raw("label")),
        (f"{task} = 'binary' AND label NOT IN ('0', '1')", "bad_label",
         "'model ' || s.model || ' is binary; label must be 0 or 1, got ' || " + _raw("label")),
        (f"{task} = 'multiclass' AND NOT list_contains({classes}, label)", "bad_label",
         f"'model ' || s.model || ' has classes ' || array_to_string({classes}, ', ') "
         "|| '; got ' || " + _raw("label")),
        ("label_ts IS NULL", "bad_ts", "'label time is not a timestamp in [1970, 2200): ' || " + ts_shown),
        ("_lb_extra_bad", "bad_value", "_lb_extra_detail"),
    ]
    reason, detail = _reason_case(rules)
    staged_extras = ", ".join(q(x.staged) for x in extras)
    return f"""CREATE TABLE staged AS
SELECT _lb_ord, _lb_ord + 1 AS _lb_row_number, request_id, s.model AS model, label, label_ts, label_ts_source,
       hash(label) AS _lb_row_hash,
       {reason} AS _lb_reason, {detail} AS _lb_detail{', ' + staged_extras if extras else ''}
FROM (SELECT {', '.join(inner)} FROM raw) s"""


def _kpi(m: ResolvedMapping, raw_types: dict[str, str], extras: list[ExtraColumn],
         n_classes: int | None, ordinal: str) -> str:
    ts_col, ts_t = _field(m, raw_types, "ts")  # type: ignore[misc]
    kpi_col, kpi_t = _field(m, raw_types, "kpi")  # type: ignore[misc]
    val_col, val_t = _field(m, raw_types, "value")  # type: ignore[misc]
    extra_items, extra_bad, extra_detail = _extras_parts(extras)
    inner = [
        f"{ordinal} AS _lb_ord",
        f"{ts_expr(ts_col, ts_t)} AS ts",
        f"{_blank(ts_col, ts_t)} AS _lb_ts_blank",
        _pass_raw(ts_col, "ts"),
        f"{_text(kpi_col, kpi_t)} AS kpi",
        f"{_as_double(val_col, val_t)} AS value",
        f"{_blank(val_col, val_t)} AS _lb_value_blank",
        _pass_raw(val_col, "value"),
        *extra_items,
        f"{extra_bad} AS _lb_extra_bad",
        f"{extra_detail} AS _lb_extra_detail",
    ]
    rules = [
        ("_lb_ts_blank", "missing_ts", "'timestamp is empty'"),
        ("ts IS NULL", "bad_ts", f"'not a timestamp in [1970, 2200): ' || {_raw('ts')}"),
        ("kpi IS NULL", "missing_kpi", "'kpi name is empty'"),
        ("_lb_value_blank OR value IS NULL", "bad_value", f"'kpi value is not a number: ' || {_raw('value')}"),
        ("_lb_extra_bad", "bad_value", "_lb_extra_detail"),
    ]
    reason, detail = _reason_case(rules)
    staged_extras = ", ".join(q(x.staged) for x in extras)
    return f"""CREATE TABLE staged AS
SELECT _lb_ord, _lb_ord + 1 AS _lb_row_number, ts, kpi, value, hash(value) AS _lb_row_hash,
       {reason} AS _lb_reason, {detail} AS _lb_detail{', ' + staged_extras if extras else ''}
FROM (SELECT {', '.join(inner)} FROM raw)"""


#: Columns that identify "the same row" per kind, and the reason a different second copy gets.
#: ``{t}`` stands for a table alias prefix ("" inside the staging table, "e." / "s." in joins).
DEDUPE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "predictions": (("{t}model", "{t}request_id"), "conflicting_duplicate"),
    "labels": (("coalesce({t}model, '')", "{t}request_id"), "conflicting_label"),
    "kpi": (("{t}kpi", "{t}ts"), "conflicting_duplicate"),
}


def key_match(kind: str, left: str, right: str) -> str:
    """SQL condition: rows ``left`` and ``right`` (aliases) have the same dedupe key.

    For labels, a label without a model applies to every model of the request (that is how the
    analysis joins it), so it collides with any label of the same request: otherwise one
    prediction could end up with two labels.
    """
    if kind == "labels":
        return (f"{left}.request_id = {right}.request_id AND ({left}.model IS NULL OR "
                f"{right}.model IS NULL OR {left}.model = {right}.model)")
    keys, _ = DEDUPE_KEYS[kind]
    return " AND ".join(f"{k.format(t=left + '.')} = {k.format(t=right + '.')}" for k in keys)


def within_file_dedupe_sql(kind: str) -> str:
    """Mark later copies of a key inside the file: same content -> 'duplicate', different ->
    the kind's conflict reason. The first copy (lowest row ordinal) stays.

    Only keys seen more than once are windowed, so a clean file costs one hash aggregate.
    """
    templates, conflict = DEDUPE_KEYS[kind]
    keys = [k.format(t="") for k in templates]
    s_keys = [k.format(t="s.") for k in templates]
    join = " AND ".join(f"({k}) IS NOT DISTINCT FROM d._k{i}" for i, k in enumerate(s_keys))
    dup_keys = ", ".join(f"{k} AS _k{i}" for i, k in enumerate(keys))
    # An explicit SEMI JOIN rather than a correlated EXISTS: with an expression key (labels'
    # coalesce(model, '')) DuckDB planned the EXISTS as a delim join with two extra
    # file-sized hash aggregates; this took 7-8 s instead of 12.5-14 s on 9M labels, same
    # rows marked (docs/benchmarks.md).
    return f"""UPDATE staged SET
  _lb_reason = CASE WHEN x.same THEN 'duplicate' ELSE '{conflict}' END,
  _lb_detail = CASE WHEN x.same THEN 'identical to row ' || x.first_row ELSE
               'differs from row ' || x.first_row || ' of the same file, which was kept' END
FROM (
  SELECT s._lb_ord, s._lb_row_hash = first_value(s._lb_row_hash) OVER w AS same,
         first_value(s._lb_row_number) OVER w AS first_row, row_number() OVER w AS rn
  FROM staged s
  SEMI JOIN (SELECT {dup_keys} FROM staged WHERE _lb_reason IS NULL
             GROUP BY ALL HAVING count(*) > 1) d ON {join}
  WHERE s._lb_reason IS NULL
  WINDOW w AS (PARTITION BY {", ".join(s_keys)} ORDER BY s._lb_ord)
) x
WHERE x.rn > 1 AND staged._lb_ord = x._lb_ord"""
