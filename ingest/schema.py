"""The database's tables, the column roles and the schema version.

Every later feature reads these tables, so they are a contract (docs/log-contract.md):

``predictions``
    one row per (model, request_id): ``ts`` (TIMESTAMPTZ, UTC), ``model``, ``model_version``,
    the score as ``p`` (probability of class 1; for a logit input, its sigmoid), ``logit``
    (as logged, else NULL) or ``probs`` (per-class probabilities in the model's class order,
    see ``models``), ``weight`` (1 when not logged), then the user's own columns (segments,
    features, activations, hashed PII, attributes) under their own names.
``labels``
    one row per (model, request_id); ``model`` NULL means "applies to any model" (label files
    without a model column). ``label`` is canonical text: '0'/'1' for binary outcomes, the class
    name otherwise. ``label_ts_source`` is 'file' or 'ingest_time' (the file had no label time).
``kpis``
    business KPI series, one row per (kpi, ts).
``quarantine``
    rows that were read but not accepted, with a stable reason code and the raw row as JSON
    (PII hashed).
``ingest_runs``
    one row per file per ``lossboard ingest`` invocation: counts, timings, status. The identity
    ``n_read = n_accepted + n_duplicate + n_quarantined`` holds on every row.
``columns``
    the registry of user columns per kind: role, type, where the role came from.
``models``
    per model: binary or multiclass, the class names in probability order.
``meta``
    key/value: schema version, the PII salt (created once, never shown), creation time.

Bookkeeping columns on data tables (``file_id``, ``row_number``, ``row_hash``) start with
``_lb_`` so they never collide with a user's column name.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from lossboard.errors import SchemaError

SCHEMA_VERSION = 3

KINDS = ("predictions", "labels", "kpi")
KIND_TABLE = {"predictions": "predictions", "labels": "labels", "kpi": "kpis"}

#: Roles a user column can have. ``pii`` values are stored as salted hashes only.
ROLES = ("segment", "feature", "activation", "pii", "attribute", "ignored")

#: Stable reason codes for quarantined rows (docs/log-contract.md explains each).
REASONS = (
    "missing_request_id",
    "missing_ts",
    "bad_ts",
    "missing_score",
    "bad_score",
    "score_out_of_range",
    "bad_weight",
    "missing_model",
    "missing_model_version",
    "bad_label",
    "missing_kpi",
    "bad_value",
    "malformed_row",
    "conflicting_duplicate",
    "conflicting_label",
)

#: Contract columns of each data table, in storage order, with their SQL types.
CONTRACT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "predictions": (
        ("request_id", "VARCHAR NOT NULL"),
        ("ts", "TIMESTAMPTZ NOT NULL"),
        ("model", "VARCHAR NOT NULL"),
        ("model_version", "VARCHAR NOT NULL"),
        ("p", "DOUBLE"),
        ("logit", "DOUBLE"),
        ("probs", "DOUBLE[]"),
        ("weight", "DOUBLE NOT NULL"),
    ),
    "labels": (
        ("request_id", "VARCHAR NOT NULL"),
        ("model", "VARCHAR"),
        ("label", "VARCHAR NOT NULL"),
        ("label_ts", "TIMESTAMPTZ NOT NULL"),
        ("label_ts_source", "VARCHAR NOT NULL"),
    ),
    "kpi": (
        ("ts", "TIMESTAMPTZ NOT NULL"),
        ("kpi", "VARCHAR NOT NULL"),
        ("value", "DOUBLE"),
    ),
}

BOOKKEEPING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_lb_file_id", "BIGINT NOT NULL"),
    ("_lb_row_number", "BIGINT NOT NULL"),
    ("_lb_row_hash", "UBIGINT NOT NULL"),
)

#: Names the analysis computes per row next to the user's columns (dashboard/analysis/base.py);
#: a user column with one of these names would be shadowed there, so it is stored renamed.
ANALYSIS_NAMES = frozenset({"y", "loss", "clipped", "score_ok", "p_true", "p_true_clipped",
                            "needs_clip"})

#: Each prediction carries a copy of its label (NULL while none has come), written by the ingest
#: (:func:`copy_labels`), so the read path never joins predictions to labels: at 10M rows that
#: join cost ~1 s per analysis query, a scan of these columns ~0.05 s (docs/benchmarks.md).
#: The ``labels`` table stays the record of what was ingested; the copy is the raw label string
#: (whether it is usable for the model is the analysis layer's business). A label never
#: changes once stored (a different one for the same request is quarantined as
#: ``conflicting_label``), so the copy cannot go stale.
LABEL_COPY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("label", "VARCHAR"),
    ("label_ts", "TIMESTAMPTZ"),
    ("label_ts_source", "VARCHAR"),
    # The label's own model (NULL for a label given for every model): counts labels without
    # a prediction from predictions alone (dashboard/analysis/health.py), no anti-join.
    ("label_model", "VARCHAR"),
)

#: ``rowid`` too: a stored column of that name would hide DuckDB's row id, which the label
#: copy writes by (:func:`copy_labels`).
RESERVED_NAMES = frozenset(
    name for cols in CONTRACT_COLUMNS.values() for name, _ in cols
) | frozenset(name for name, _ in BOOKKEEPING_COLUMNS + LABEL_COPY_COLUMNS) | ANALYSIS_NAMES | {
    "rowid"}


#: Labels for up to this fraction of the stored predictions are copied by UPDATEs on rowid;
#: more by rewriting the predictions table in one pass. An UPDATE costs what it touches, a
#: rewrite what is stored, so a day's labels onto a month of predictions must not rewrite the
#: month. Measured at 10M stored predictions (DuckDB 2.0.1, whole ingest, docs/benchmarks.md):
#: the last day's 311k labels 0.8 s by UPDATE against 5.7 s by rewrite; labels for 45% of
#: the predictions, spread over the month, 7.9 against 12.0 s; 63%, 11.3 against 12.4 s;
#: 90%, 17.4 against 15.3 s.
UPDATE_MAX_FRACTION = 0.7
#: One UPDATE joins at most about this many labels: the 9M labels in one UPDATE took 13.8 s
#: (its join spilled past the ingest's memory_limit), in 16 rowid ranges 4.5 s.
UPDATE_CHUNK_ROWS = 600_000


def _data_table_ddl(kind: str) -> str:
    cols = CONTRACT_COLUMNS[kind] + BOOKKEEPING_COLUMNS
    if kind == "predictions":
        cols += LABEL_COPY_COLUMNS
    body = ",\n  ".join(f"{name} {sql_type}" for name, sql_type in cols)
    return f"CREATE TABLE IF NOT EXISTS {KIND_TABLE[kind]} (\n  {body}\n)"


#: The time ranges whose hourly rollup (lossboard.dashboard.analysis.rollup) no longer matches
#: the rows: written in each file's transaction, cleared by the rollup's refresh.
ROLLUP_DIRTY_DDL = """CREATE TABLE IF NOT EXISTS rollup_dirty (
  model VARCHAR NOT NULL,
  lo TIMESTAMPTZ NOT NULL,
  hi TIMESTAMPTZ NOT NULL
)"""

_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    "CREATE SEQUENCE IF NOT EXISTS ingest_file_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS ingest_runs (
  file_id BIGINT PRIMARY KEY,
  run_id VARCHAR NOT NULL,
  path VARCHAR NOT NULL,
  content_hash VARCHAR,
  kind VARCHAR,
  status VARCHAR NOT NULL,          -- ok | rejected | skipped
  n_read BIGINT NOT NULL,
  n_accepted BIGINT NOT NULL,
  n_duplicate BIGINT NOT NULL,
  n_quarantined BIGINT NOT NULL,
  n_unmatched_labels BIGINT,
  n_label_before_prediction BIGINT,
  mapping JSON,
  message VARCHAR,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ NOT NULL,
  seconds_read DOUBLE,
  seconds_merge DOUBLE,
  seconds_total DOUBLE
)""",
    """CREATE TABLE IF NOT EXISTS quarantine (
  file_id BIGINT NOT NULL,
  source_file VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,
  row_number BIGINT,
  reason VARCHAR NOT NULL,
  detail VARCHAR,
  raw JSON
)""",
    """CREATE TABLE IF NOT EXISTS columns (
  kind VARCHAR NOT NULL,
  name VARCHAR NOT NULL,
  role VARCHAR NOT NULL,
  sql_type VARCHAR NOT NULL,
  role_source VARCHAR NOT NULL,     -- flag | config | inferred | override
  first_file_id BIGINT,
  PRIMARY KEY (kind, name)
)""",
    """CREATE TABLE IF NOT EXISTS models (
  model VARCHAR PRIMARY KEY,
  task VARCHAR NOT NULL,            -- binary | multiclass
  classes VARCHAR[],
  first_file_id BIGINT
)""",
    _data_table_ddl("predictions"),
    ROLLUP_DIRTY_DDL,
    _data_table_ddl("labels"),
    _data_table_ddl("kpi"),
    # Labels match predictions on request_id and model; a label without a model applies to
    # every model that scored that request. The match is materialized on the predictions
    # (LABEL_COPY_COLUMNS, kept by the ingest), so this view is a filter, not a join.
    """CREATE OR REPLACE VIEW labelled AS
SELECT p.*, p.label_ts < p.ts AS label_before_prediction
FROM predictions p WHERE p.label IS NOT NULL""",
    """CREATE OR REPLACE VIEW unmatched_labels AS
SELECT l.* FROM labels l
WHERE NOT EXISTS (
  SELECT 1 FROM predictions p
  WHERE p.request_id = l.request_id AND (l.model IS NULL OR l.model = p.model)
)""",
)


@dataclass(frozen=True)
class ColumnInfo:
    """One user column as registered in the ``columns`` table."""

    kind: str
    name: str
    role: str
    sql_type: str
    role_source: str


def create_schema(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> None:
    """Create every table and view if missing, the PII salt once, and check the version.

    ``catalog`` names an attached database to create the schema in (the ingest attaches the
    main database to its staging connection); ``None`` means the connection's own database.
    """
    if catalog is not None:
        con.execute(f"USE {catalog}")
    try:
        views = [ddl for ddl in _DDL if ddl.startswith("CREATE OR REPLACE VIEW")]
        for ddl in _DDL:
            if ddl not in views:
                con.execute(ddl)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?), ('pii_salt', ?), "
                "('created_at', CAST(now() AS VARCHAR))",
                [str(SCHEMA_VERSION), secrets.token_hex(16)],
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise SchemaError(
                f"the database has schema version {row[0]}, newer than this lossboard "
                f"understands ({SCHEMA_VERSION}); upgrade lossboard"
            )
        elif int(row[0]) < SCHEMA_VERSION:
            _migrate(con, int(row[0]))
        # Views last: DuckDB binds a view when it is created, so it must see migrated tables.
        for ddl in views:
            con.execute(ddl)
    finally:
        if catalog is not None:
            con.execute("USE memory")


def _migrate(con: duckdb.DuckDBPyConnection, version: int) -> None:
    """Upgrade the schema in one transaction. v1 -> v2: copy labels onto predictions.
    v2 -> v3: ``rollup_dirty`` (created by the DDL before this runs; nothing to convert)."""
    con.execute("BEGIN TRANSACTION")
    try:
        if version < 2:
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = 'predictions'").fetchall()}
            clash = sorted(have & {name for name, _ in LABEL_COPY_COLUMNS})
            if clash:  # schema 1 did not reserve these names for itself
                raise SchemaError(f"cannot upgrade: predictions already has columns {clash}, "
                                  "which schema 2 uses for the copy of each label; rename them "
                                  "in a copy of the database and upgrade that")
            for name, sql_type in LABEL_COPY_COLUMNS:
                con.execute(f"ALTER TABLE predictions ADD COLUMN {name} {sql_type}")
            copy_all_labels(con)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def label_matches_sql(predictions: str, labels: str, where: str = "true", extra: str = "") -> str:
    """``(rid, label, label_ts, label_ts_source, label_model, ts)`` for every prediction
    (``rid`` its rowid, ``ts`` its time; ``label_model`` the label's own model) that a label
    of ``labels`` matches: same request_id, and the same model
    or a label without one. The ingest keeps at most one such label per prediction (a
    model-less label collides with every label of its request). ``where`` may restrict ``p``
    (the predictions) or ``l`` (the labels), ``extra`` add columns; both are SQL written by
    the caller, never user input."""
    return (f"SELECT p.rowid AS rid, l.label, l.label_ts, l.label_ts_source, "
            f"l.model AS label_model, p.ts{extra} "
            f"FROM {predictions} p JOIN {labels} l ON l.request_id = p.request_id "
            f"AND (l.model IS NULL OR l.model = p.model) WHERE {where}")


def copy_all_labels(con: duckdb.DuckDBPyConnection) -> int:
    """Copy every stored label onto its prediction (the v1 -> v2 migration; benchmarks and
    tests that write the tables with SQL call it after their inserts)."""
    match_labels(con, label_matches_sql("predictions", "labels"))
    return copy_labels(con, "")


def match_labels(con: duckdb.DuckDBPyConnection, matches_sql: str,
                 params: dict[str, Any] | None = None) -> None:
    """Put the matches of ``matches_sql`` (a :func:`label_matches_sql` query, which may add
    columns) in the temp table ``lb_label_matches`` for :func:`copy_labels`."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE lb_label_matches AS {matches_sql}", params or {})


def copy_labels(con: duckdb.DuckDBPyConnection, prefix: str) -> int:
    """Copy the labels in ``lb_label_matches`` (:func:`match_labels`) onto their predictions
    (:data:`LABEL_COPY_COLUMNS`), drop the temp table, return how many were copied.

    ``prefix`` is the catalog of the predictions table (``"lb.main."`` from the ingest's
    staging connection, ``""`` on the database itself). Run inside the caller's transaction:
    a crash leaves no half copy. Labels for up to 70% of the stored predictions are written by
    UPDATEs on rowid (:data:`UPDATE_MAX_FRACTION`); more by rewriting the table in one pass
    (same DDL, then swapped in), which DuckDB does faster than an UPDATE of most rows.
    """
    table = f"{prefix}predictions"
    n, lo, hi = con.execute("SELECT count(*), min(rid), max(rid) FROM lb_label_matches").fetchone()
    n_stored = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    sets = ", ".join(f"{c} = m.{c}" for c, _ in LABEL_COPY_COLUMNS)
    if 0 < n <= UPDATE_MAX_FRACTION * n_stored:
        # Equal-width rowid ranges: labels arrive for a recent stretch of predictions, which
        # holds contiguous rowids, so the ranges hold about equal numbers of labels.
        step = (hi - lo) // -(-n // UPDATE_CHUNK_ROWS) + 1
        for start in range(lo, hi + 1, step):
            con.execute(f"UPDATE {table} SET {sets} FROM lb_label_matches m "
                        f"WHERE m.rid >= $lo AND m.rid < $hi AND {table}.rowid = m.rid",
                        {"lo": start, "hi": start + step})
    elif n > 0:
        db = prefix.split(".")[0] if prefix else con.execute("SELECT current_database()").fetchone()[0]
        ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE database_name = ? "
                          "AND schema_name = 'main' AND table_name = 'predictions'", [db]).fetchone()[0]
        fresh = f"{prefix}predictions__relabel"
        con.execute(re.sub(r"^CREATE TABLE \S+?\(", f"CREATE TABLE {fresh}(", ddl))
        keep = ", ".join(f"coalesce(m.{c}, p.{c}) AS {c}" for c, _ in LABEL_COPY_COLUMNS)
        # No ORDER BY: the hash join streams the probe side (predictions) nearly in order
        # (1 row of 10M out of time order here), which keeps the ts zone maps useful; sorting
        # the whole table back would double the cost. Nothing reads rows in storage order.
        con.execute(f"INSERT INTO {fresh} SELECT p.* REPLACE ({keep}) "
                    f"FROM {table} p LEFT JOIN lb_label_matches m ON m.rid = p.rowid")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {fresh} RENAME TO predictions")
    con.execute("DROP TABLE lb_label_matches")
    return n


def read_columns(con: duckdb.DuckDBPyConnection, kind: str, catalog: str = "") -> dict[str, ColumnInfo]:
    """The registered user columns of ``kind``, by name."""
    prefix = f"{catalog}." if catalog else ""
    rows = con.execute(
        f"SELECT kind, name, role, sql_type, role_source FROM {prefix}columns "
        "WHERE kind = ? ORDER BY name",
        [kind],
    ).fetchall()
    return {r[1]: ColumnInfo(*r) for r in rows}


def read_meta(con: duckdb.DuckDBPyConnection, key: str, catalog: str = "") -> str | None:
    prefix = f"{catalog}." if catalog else ""
    row = con.execute(f"SELECT value FROM {prefix}meta WHERE key = ?", [key]).fetchone()
    return None if row is None else row[0]


def set_column_role(con: duckdb.DuckDBPyConnection, kind: str, name: str, role: str) -> ColumnInfo:
    """Override the role of a registered user column (``lossboard columns --set``).

    Turning a column into ``pii`` hashes its stored values (and the copies in quarantined raw
    rows) in place with the database's salt; the reverse is refused because hashes cannot be
    undone. Runs in one transaction.
    """
    from lossboard.sql import quote_ident

    if role not in ROLES:
        raise SchemaError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    current = read_columns(con, kind).get(name)
    if current is None:
        known = ", ".join(read_columns(con, kind)) or "none"
        raise SchemaError(f"no {kind} column named {name!r} is registered (known: {known})")
    if current.role == "pii" and role != "pii":
        raise SchemaError(f"column {name!r} holds salted hashes (pii); its raw values are gone "
                          "and it cannot become a " + role)
    if current.role == role:
        return current
    table, col = KIND_TABLE[kind], quote_ident(name)
    con.execute("BEGIN TRANSACTION")
    try:
        if role == "pii":
            salt = read_meta(con, "pii_salt")
            if current.sql_type != "VARCHAR":
                con.execute(f"ALTER TABLE {table} ALTER {col} TYPE VARCHAR")
            con.execute(f"UPDATE {table} SET {col} = left(sha256($salt || {col}), 20) "
                        f"WHERE {col} IS NOT NULL", {"salt": salt})
            pointer = "/" + name.replace("~", "~0").replace("/", "~1")
            con.execute(
                "UPDATE quarantine SET raw = json_merge_patch(raw, json_object($name, "
                "left(sha256($salt || json_extract_string(raw, $ptr)), 20))) "
                "WHERE kind = $kind AND json_extract_string(raw, $ptr) IS NOT NULL",
                {"name": name, "salt": salt, "ptr": pointer, "kind": kind},
            )
            # A line the reader could not split into columns is kept whole, so the column's
            # value in it cannot be found: keep its hash only, as the ingest does for lines
            # of files that have PII columns (load._insert_quarantine).
            con.execute(
                "UPDATE quarantine SET raw = json_object('line_sha256', "
                "sha256(json_extract_string(raw, '$.line')), 'note', "
                "'raw line withheld: the file has PII columns') "
                "WHERE kind = $kind AND reason = 'malformed_row' "
                "AND json_extract_string(raw, '$.line') IS NOT NULL",
                {"kind": kind},
            )
        con.execute("UPDATE columns SET role = ?, role_source = 'override', "
                    "sql_type = CASE WHEN ? = 'pii' THEN 'VARCHAR' ELSE sql_type END "
                    "WHERE kind = ? AND name = ?", [role, role, kind, name])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return read_columns(con, kind)[name]


def compact_database(db_path: str | Path, timeout_s: float = 60.0) -> None:
    """Rewrite the database file so that nothing deleted or overwritten survives in it.

    DuckDB reuses freed blocks but does not wipe them, so after ``lossboard columns --set
    COL=pii`` the raw values could still be found in the file's free space. Copying every table
    into a fresh file and swapping it in removes them. The old file is held read-write during
    the copy, so no ingest can commit in between; readers retry meanwhile.
    """
    import os

    from lossboard.db import retry_on_lock
    from lossboard.sql import quote_literal

    path = Path(db_path)
    fresh = path.with_name(path.name + ".compacting")
    for leftover in (fresh, Path(str(fresh) + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        retry_on_lock(lambda: con.execute(f"ATTACH {quote_literal(str(path))} AS lb_old"),
                      timeout_s, f"opening {path} to compact it")
        con.execute(f"ATTACH {quote_literal(str(fresh))} AS lb_new")
        con.execute("COPY FROM DATABASE lb_old TO lb_new")
        con.execute("DETACH lb_new")
        # Swap while the old file is still locked by us: a process waiting for the lock
        # reopens the path and gets the new file.
        os.replace(fresh, path)
        Path(str(path) + ".wal").unlink(missing_ok=True)
    finally:
        con.close()
