"""One file = one transaction: stage, validate, dedupe, insert, audit.

For each file the user pointed at:

1. **hash** the bytes; a file whose content hash was already ingested is skipped;
2. **snapshot** what validation needs from the database (PII salt, column registry, models)
   through a short read-only connection;
3. **stage** in a private in-memory DuckDB (spilling to a temp folder past ``memory_limit``):
   read the file with DuckDB's reader, type it, give every bad row a reason, mark duplicates
   inside the file. The database file is not open during this, the long part, so the
   dashboard keeps reading;
4. **merge**: attach the database read-write (retrying while a reader holds it), classify rows
   that already exist (identical -> duplicate, different -> conflict), then in ONE transaction
   add new columns, insert accepted rows, quarantined rows and the ``ingest_runs`` row. A crash
   before COMMIT leaves none of the file; a crash after leaves all of it.

Every row read ends up in exactly one of accepted / duplicate / quarantined.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from lossboard.db import DEFAULT_LOCK_TIMEOUT_S, read_connection, retry_on_lock, write_connection
from lossboard.errors import IngestError, LossboardError
from lossboard.ingest import readers, schema, validate
from lossboard.ingest.mapping import (
    Config, MappingOptions, ResolvedMapping, SourceColumn, numeric_candidates, resolve,
)
from lossboard.sql import quote_ident as q
from lossboard.sql import quote_literal

_ATTACH_ALIAS = "lb"
#: The staging connection's checkpoint_threshold: larger than any staging table, so its
#: in-memory database never checkpoints (see _staging_connection).
_STAGING_CHECKPOINT_THRESHOLD = "1000GB"
_T = f"{_ATTACH_ALIAS}.main"  # qualified prefix of the main database's tables


@dataclass(frozen=True)
class IngestOptions:
    """Everything an ingest needs besides the files."""

    db_path: Path
    flags: MappingOptions = field(default_factory=MappingOptions)
    config: Config = field(default_factory=lambda: Config(path=None))
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    memory_limit: str = "1GB"
    threads: int | None = None


@dataclass(frozen=True)
class FileResult:
    """What happened to one file. ``n_read == n_accepted + n_duplicate + n_quarantined``."""

    path: str
    status: str  # ok | rejected | skipped
    kind: str | None = None
    content_hash: str | None = None
    file_id: int | None = None
    n_read: int = 0
    n_accepted: int = 0
    n_duplicate: int = 0
    n_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    n_unmatched_labels: int | None = None
    n_label_before_prediction: int | None = None
    new_columns: tuple[str, ...] = ()
    message: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class IngestReport:
    """The result of one ``lossboard ingest`` run over one or more files."""

    run_id: str
    db_path: str
    files: tuple[FileResult, ...]
    #: rollup.Refreshed.as_json() of the refresh after the files, or {"error": ...}; None
    #: when no file reached the database.
    rollup: dict[str, Any] | None = None
    #: Files a directory or glob held that are of no type lossboard reads (not ingested).
    ignored: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(f.status != "rejected" for f in self.files)

    def totals(self) -> dict[str, int]:
        keys = ("n_read", "n_accepted", "n_duplicate", "n_quarantined")
        return {k: sum(getattr(f, k) for f in self.files) for k in keys}

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for reason, n in f.reasons.items():
                out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items()))

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "db": self.db_path,
            "ok": self.ok,
            "totals": self.totals(),
            "reasons": self.reasons(),
            "files": [
                {**asdict(f), "new_columns": list(f.new_columns)} for f in self.files
            ],
            "rollup": self.rollup,
            "ignored": list(self.ignored),
        }


class ProgressSink(Protocol):
    """Where an ingest reports progress (the CLI draws a rich progress bar)."""

    def file_started(self, label: str, index: int, total: int) -> None: ...

    def stage(self, name: str, fraction: float | None) -> None: ...

    def file_done(self, result: FileResult) -> None: ...


class NullProgress:
    def file_started(self, label: str, index: int, total: int) -> None:
        pass

    def stage(self, name: str, fraction: float | None) -> None:
        pass

    def file_done(self, result: FileResult) -> None:
        pass


# --------------------------------------------------------------------------- entry point
def ingest(targets: list[str | Path], options: IngestOptions,
           progress: ProgressSink | None = None) -> IngestReport:
    """Ingest every file that ``targets`` (files, globs, directories) name, one transaction each.

    A target that names nothing readable is reported as a rejected entry; the other files still
    go in. Returns the per-file accounting; never raises for a bad file.
    """
    sink = progress or NullProgress()
    run_id = uuid.uuid4().hex[:12]
    sources: list[readers.SourceFile] = []
    results: list[FileResult] = []
    ignored: list[Path] = []
    for target in targets:
        try:
            sources.extend(readers.expand(target, ignored))
        except IngestError as exc:
            results.append(FileResult(path=str(target), status="rejected", message=str(exc)))
    for i, src in enumerate(sources):
        sink.file_started(src.label, i, len(sources))
        result = ingest_file(src, options, run_id, sink)
        results.append(result)
        sink.file_done(result)
    rollup = None
    if any(r.status in ("ok", "skipped") for r in results):
        sink.stage("summing hours", None)
        rollup = refresh_rollup(options)
    return IngestReport(run_id=run_id, db_path=str(options.db_path), files=tuple(results),
                        rollup=rollup, ignored=tuple(str(p) for p in ignored))


def refresh_rollup(options: IngestOptions) -> dict[str, Any]:
    """Recompute the hourly rollup's sums the files changed (rollup.refresh), after every file
    is committed. A failure loses nothing: the dirty marks stay, readers scan the rows meanwhile,
    and the next ingest (or ``lossboard rollup``) tries again; so it is reported, not raised."""
    # Imported here: the write path uses the analysis layer's definition of the sums (the
    # same SQL the cube runs on the rows), and only at the end of an ingest.
    from lossboard.dashboard.analysis import rollup

    try:
        return rollup.refresh_file(options.db_path, options.lock_timeout_s).as_json()
    except (LossboardError, duckdb.Error) as exc:
        first = first_line(exc)
        return {"error": f"the hourly rollup was not refreshed ({first}); pages read the rows "
                         "until the next ingest or `lossboard rollup`"}


def ingest_file(src: readers.SourceFile, options: IngestOptions, run_id: str,
                sink: ProgressSink | None = None) -> FileResult:
    """Ingest one file in one transaction; a bad file comes back with status ``rejected``."""
    sink = sink or NullProgress()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    content_hash: str | None = None
    try:
        sink.stage("hashing", None)
        content_hash = sha256_file(src.path)
        snap = _snapshot(options, content_hash)
        if snap.already_ingested is not None:
            return _record_skip(src, options, run_id, content_hash, snap.already_ingested,
                                started, t0)
        with _staging_connection(options) as con:
            staged = _stage(con, src, options, snap, started, sink)
            t_read = time.perf_counter() - t0
            sink.stage("merging", None)
            return _merge(con, src, options, run_id, content_hash, staged, started, t0, t_read)
    except LossboardError as exc:
        return _record_reject(src, options, run_id, content_hash, str(exc), started, t0)
    except duckdb.Error as exc:
        first = first_line(exc)
        message = f"{src.label}: DuckDB failed while ingesting: {first}"
        return _record_reject(src, options, run_id, content_hash, message, started, t0)


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class _Snapshot:
    salt: str
    columns: dict[str, dict[str, schema.ColumnInfo]]
    models: list[tuple[str, str, list[str] | None]]
    already_ingested: str | None  # description of the earlier run, when the hash is known


def ensure_database(db_path: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
    """Create the database file and its tables if missing; upgrade an older schema."""
    needs = not db_path.exists()
    if not needs:
        with read_connection(db_path, timeout_s) as con:
            has_meta = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
            ).fetchone()[0]
            version = schema.read_meta(con, "schema_version") if has_meta else None
        needs = version is None or int(version) < schema.SCHEMA_VERSION
    if needs:
        with write_connection(db_path, timeout_s) as con:
            schema.create_schema(con)


def _snapshot(options: IngestOptions, content_hash: str) -> _Snapshot:
    ensure_database(options.db_path, options.lock_timeout_s)
    with read_connection(options.db_path, options.lock_timeout_s) as con:
        salt = schema.read_meta(con, "pii_salt") or ""
        cols = {kind: schema.read_columns(con, kind) for kind in schema.KINDS}
        models = con.execute("SELECT model, task, classes FROM models ORDER BY model").fetchall()
        already = _already_ingested(con, content_hash, "")
    return _Snapshot(salt=salt, columns=cols, models=models, already_ingested=already)


def _already_ingested(con: duckdb.DuckDBPyConnection, content_hash: str, prefix: str) -> str | None:
    row = con.execute(
        f"SELECT path, kind, run_id, finished_at FROM {prefix}ingest_runs "
        "WHERE content_hash = ? AND status = 'ok' ORDER BY file_id LIMIT 1",
        [content_hash],
    ).fetchone()
    if row is None:
        return None
    return (f"already ingested as {row[1]} from {row[0]} (run {row[2]}, "
            f"{row[3]:%Y-%m-%d %H:%M:%S} UTC)")


# --------------------------------------------------------------------------- staging
def _remove_stale_staging() -> None:
    """Delete spill folders of ingests that were killed (their process is gone)."""
    for folder in Path(tempfile.gettempdir()).glob("lossboard-stage-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


@contextmanager
def _staging_connection(options: IngestOptions) -> Iterator[duckdb.DuckDBPyConnection]:
    _remove_stale_staging()
    spill = tempfile.mkdtemp(prefix=f"lossboard-stage-{os.getpid()}-")
    config: dict[str, Any] = {"memory_limit": options.memory_limit, "temp_directory": spill}
    if options.threads:
        config["threads"] = options.threads
    con = duckdb.connect(":memory:", config=config)
    try:
        # Progress is tracked only with the progress bar on; we poll it, DuckDB must not print.
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        # The staging database is private and thrown away, so it never needs a checkpoint.
        # DuckDB checkpoints in-memory databases too: an UPDATE marking 1,618 duplicates of
        # 9M staged labels was followed by a checkpoint rewriting `staged`, 4.1 of its 4.2
        # cpu s (docs/benchmarks.md). The main database is checkpointed on DETACH (_attached).
        con.execute(f"SET checkpoint_threshold = {quote_literal(_STAGING_CHECKPOINT_THRESHOLD)}")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


@dataclass(frozen=True)
class _Staged:
    mapping: ResolvedMapping
    extras: list[validate.ExtraColumn]
    new_extras: list[validate.ExtraColumn]
    n_read: int
    n_rejects: int
    classes: list[str] | None
    task: str | None
    snapshot: _Snapshot
    warnings: tuple[str, ...]
    raw_ordinal: str  # the column of `raw` holding a row's position in the file, from 0


def _set_timezone(con: duckdb.DuckDBPyConnection, tz: str, label: str) -> None:
    known = con.execute("SELECT count(*) FROM pg_timezone_names() WHERE name = ?", [tz]).fetchone()[0]
    if not known:
        raise IngestError(f"{label}: unknown time zone {tz!r} (use an IANA name such as "
                          "'UTC' or 'Europe/Berlin')")
    con.execute(f"SET TimeZone = {quote_literal(tz)}")


def _run_with_progress(con: duckdb.DuckDBPyConnection, sql: str, params: Any,
                       report: Callable[[float | None], None]) -> None:
    """Execute ``sql``, polling DuckDB's own progress estimate into ``report`` meanwhile."""
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.25):
            try:
                pct = con.query_progress()
            except duckdb.Error:
                pct = -1
            report(pct / 100.0 if pct is not None and pct >= 0 else None)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        con.execute(sql, params)
    finally:
        done.set()
        thread.join()


def _stage(con: duckdb.DuckDBPyConnection, src: readers.SourceFile, options: IngestOptions,
           snap: _Snapshot, started: datetime, sink: ProgressSink) -> _Staged:
    sniffed = readers.describe(con, src)
    sniffed_types = dict(sniffed)
    kind_hint = options.flags.kind
    registered_roles = {}
    for kind in ([kind_hint] if kind_hint else schema.KINDS):
        registered_roles.update({n: c.role for n, c in snap.columns[kind].items()})
    shares = _numeric_shares(con, src, [SourceColumn(n, t) for n, t in sniffed])
    columns = [SourceColumn(n, t, numeric_share=shares.get(n)) for n, t in sniffed]
    # Resolve once before reading: a file lacking a required field is rejected right away.
    mapping = resolve(src.label, columns, options.flags, options.config, registered_roles)
    _set_timezone(con, mapping.timezone, src.label)

    sink.stage("reading", 0.0)
    # Parquet is read in place through a view: copying its already typed columns into a
    # table cost 3 s of a 10M-row ingest and pushed the later statements into spilling
    # (docs/benchmarks.md). Text formats are still copied: they are read once, as text.
    in_place = readers.can_read_in_place(src, list(sniffed_types))
    try:
        if in_place:
            ordinal = readers.raw_view(con, src)
        else:
            ordinal = "rowid"
            _run_with_progress(con, f"CREATE TABLE raw AS SELECT * FROM {readers.reader_sql(src)}",
                               {"path": str(src.path)}, lambda f: sink.stage("reading", f))
    except duckdb.Error as exc:
        raise _unreadable(src, exc) from exc
    if not in_place:
        sniffed = _unjson_raw(con, sniffed)
        sniffed_types = dict(sniffed)
        ordinal = _expose_row_order(con)
    raw_types = {r[0]: r[1] for r in con.execute("DESCRIBE raw").fetchall()
                 if not (ordinal != "rowid" and r[0] == ordinal)}
    n_parsed = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    rejects = _reject_lines(con) if src.format in ("csv", "tsv") else []

    # Role inference needs the number of distinct values of text columns nobody named.
    reg = snap.columns[mapping.kind]
    text_unnamed = [n for n, role_src in mapping.role_sources.items()
                    if role_src == "inferred" and sniffed_types.get(n, "").upper() in ("VARCHAR", "BOOLEAN")]
    distinct: dict[str, int] = {}
    if text_unnamed:
        sel = ", ".join(f"approx_count_distinct({q(n)})" for n in text_unnamed)
        distinct = dict(zip(text_unnamed, con.execute(f"SELECT {sel} FROM raw").fetchone()))
    registered_roles = {n: c.role for n, c in reg.items()}
    columns = [SourceColumn(n, t, distinct.get(n), shares.get(n)) for n, t in sniffed]
    mapping = resolve(src.label, columns, options.flags, options.config, registered_roles)

    extras, new_extras, warnings = _plan_extras(mapping, raw_types, sniffed_types, reg, src)
    task, classes, n_classes = _model_shape(con, mapping, raw_types, snap, src)

    staging = validate.staging_sql(mapping, raw_types, extras, n_classes, ordinal)
    params = {"salt": snap.salt, "ingest_ts": started, "model": mapping.constants.get("model"),
              "model_version": mapping.constants.get("model_version"), "n_classes": n_classes,
              "registry_models": [m[0] for m in snap.models],
              "registry_tasks": [m[1] for m in snap.models],
              "registry_classes": [m[2] for m in snap.models],
              "registry_labels": validate.registry_labels(snap.models)}
    used = {k: v for k, v in params.items() if f"${k}" in staging.sql}
    if in_place:
        # The file is read by this statement, so a damaged file fails here.
        try:
            _run_with_progress(con, staging.sql, used, lambda f: sink.stage("reading", f))
        except duckdb.Error as exc:
            raise _unreadable(src, exc) from exc
        sink.stage("validating", None)
    else:
        sink.stage("validating", None)
        con.execute(staging.sql, used)
    con.execute(validate.within_file_dedupe_sql(mapping.kind))
    if rejects:
        _renumber_around_rejects(con, n_parsed, [line - 1 for line, _, _ in rejects])
    return _Staged(mapping=mapping, extras=extras, new_extras=new_extras,
                   n_read=n_parsed + len(rejects), n_rejects=len(rejects), classes=classes,
                   task=task, snapshot=snap, warnings=tuple(warnings), raw_ordinal=ordinal)


#: Rows of the file that measure a text column's numeric share (:func:`_numeric_shares`).
NUMERIC_SHARE_SAMPLE_ROWS = 100_000


def _numeric_shares(con: duckdb.DuckDBPyConnection, src: readers.SourceFile,
                    columns: list[SourceColumn]) -> dict[str, float]:
    """For text columns named like a numeric field (a score, a weight, a KPI value): the share
    of their non-blank values, in the file's first rows, that read as numbers.

    DuckDB types a column as text when its type sample holds one value that is not a number,
    and auto-detection then found no score at all: the whole file was rejected for that one
    row. With the share, such a column is the score and the row goes to the quarantine
    (mapping.NUMERIC_TEXT_MIN_SHARE)."""
    names = numeric_candidates(columns)
    if not names:
        return {}
    types = {c.name: c.sql_type for c in columns}
    parts = []
    for n in names:
        text = f"trim({validate.as_text(q(n), types[n])})"
        parts.append(f"count(TRY_CAST({text} AS DOUBLE)) / greatest(count(NULLIF({text}, '')), 1)")
    sql = (f"SELECT {', '.join(parts)} FROM (SELECT * FROM {readers.reader_sql(src, typed=True)} "
           f"LIMIT {NUMERIC_SHARE_SAMPLE_ROWS})")
    try:
        row = con.execute(sql, {"path": str(src.path)}).fetchone()
    except duckdb.Error as exc:
        raise _unreadable(src, exc) from exc
    return {n: float(v) for n, v in zip(names, row)}


def _expose_row_order(con: duckdb.DuckDBPyConnection) -> str:
    """The column of ``raw`` (a copy of the file, in file order) that numbers its rows from 0.

    That is DuckDB's ``rowid``, unless the file has a column of that name, which hides it (the
    staging then read the user's values as row numbers and failed). Then the copy is renamed
    and ``raw`` becomes a view giving the row id as :data:`readers.FILE_ROW_COLUMN`, beside
    the user's column under its own name."""
    cols = [r[0] for r in con.execute("DESCRIBE raw").fetchall()]
    user_rowid = next((c for c in cols if c.lower() == "rowid"), None)
    if user_rowid is None:
        return "rowid"
    hidden = "_lb_user_rowid"
    con.execute(f"ALTER TABLE raw RENAME COLUMN {q(user_rowid)} TO {hidden}")
    con.execute("ALTER TABLE raw RENAME TO raw_rows")
    con.execute(f"CREATE VIEW raw AS SELECT rowid AS {readers.FILE_ROW_COLUMN}, "
                f"* RENAME ({hidden} AS {q(user_rowid)}) FROM raw_rows")
    return readers.FILE_ROW_COLUMN


def _unjson_raw(con: duckdb.DuckDBPyConnection, sniffed: list[tuple[str, str]]
                ) -> list[tuple[str, str]]:
    """Turn the JSON-typed columns of ``raw`` into plain text, and say so in ``sniffed``.

    DuckDB's JSON reader types a field whose values mix kinds (a timestamp written as text on
    one line and as epoch seconds on the next, a score as 0.5 and "0.5") as JSON, whose text
    keeps the quotes: every rule then saw ``"2026-11-01T00:00:00Z"`` and quarantined valid
    rows as bad_ts. As text the values go through the same rules as a CSV's."""
    json_cols = [r[0] for r in con.execute("DESCRIBE raw").fetchall() if r[1].upper() == "JSON"]
    for name in json_cols:
        con.execute(f"ALTER TABLE raw ALTER {q(name)} TYPE VARCHAR "
                    f"USING json_extract_string({q(name)}, '$')")
    return [(n, "VARCHAR" if n in json_cols else t) for n, t in sniffed]


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB's run on with context), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreadable(src: readers.SourceFile, exc: duckdb.Error) -> IngestError:
    return IngestError(f"{src.label}: cannot be read as {src.format.upper()}: "
                       f"{readers.reader_error(exc)}")


def _reject_lines(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, str]]:
    """(line, error, raw line) for each line the CSV reader could not parse, first error each."""
    try:
        return con.execute(
            f"SELECT line, arg_min(error_message, column_idx), arg_min(csv_line, column_idx) "
            f"FROM {readers.REJECTS_TABLE} GROUP BY line ORDER BY line"
        ).fetchall()
    except duckdb.CatalogException:
        return []


def _renumber_around_rejects(con: duckdb.DuckDBPyConnection, n_parsed: int,
                             reject_ordinals: list[int]) -> None:
    # Parsed rows skip the rejected lines, so the k-th parsed row is the k-th record
    # position not taken by a reject. Only runs when the file had malformed lines.
    con.execute("CREATE TEMP TABLE lb_reject_ord AS SELECT unnest(?::BIGINT[]) AS o", [reject_ordinals])
    con.execute(
        """UPDATE staged SET _lb_row_number = m.o FROM (
             SELECT o, row_number() OVER (ORDER BY o) - 1 AS k
             FROM range(1, ? + 1) t(o) WHERE o NOT IN (SELECT o FROM lb_reject_ord)) m
           WHERE m.k = staged._lb_ord""",
        [n_parsed + len(reject_ordinals)],
    )


def _plan_extras(mapping: ResolvedMapping, raw_types: dict[str, str], sniffed: dict[str, str],
                 registered: dict[str, schema.ColumnInfo], src: readers.SourceFile
                 ) -> tuple[list[validate.ExtraColumn], list[validate.ExtraColumn], list[str]]:
    extras, new, warnings = [], [], []
    # DuckDB's identifiers ignore case: a later file's REGION is the registered region (adding
    # it as a new column failed with "already exists"), and a Label collides with label.
    reserved = {n.lower() for n in schema.RESERVED_NAMES}
    by_lower = {n.lower(): n for n in registered}
    for i, (name, role) in enumerate(mapping.roles.items()):
        collides = name.lower() in reserved or name.lower().startswith("_lb_")
        target = f"src_{name}" if collides else name
        if target != name:
            warnings.append(f"column {name!r} collides with a lossboard field and is stored as {target!r}")
        target = by_lower.get(target.lower(), target)
        reg = registered.get(target)
        if role == "pii" and reg is not None and reg.role != "pii":
            # Hashing only the new rows would leave the column half raw, half hashed.
            raise IngestError(
                f"{src.label}: column {name!r} is registered as a {reg.role} holding raw values; "
                f"hash the stored values first with `lossboard columns --set {name}=pii`, then "
                "ingest this file again")
        if role == "pii" or (reg is not None and reg.role == "pii"):
            role, target_type = "pii", "VARCHAR"
        elif reg is not None:
            target_type = reg.sql_type
        else:
            target_type = sniffed.get(name, raw_types[name])
            if target_type.upper() == "NULL" or raw_types[name].upper() == "NULL":
                target_type = "VARCHAR"
        x = validate.ExtraColumn(source=name, target=target, role=role,
                                 source_type=raw_types[name], target_type=target_type,
                                 staged=f"_lb_x{i}")
        extras.append(x)
        if reg is None:
            new.append(x)
    return extras, new, warnings


def _model_shape(con: duckdb.DuckDBPyConnection, mapping: ResolvedMapping, raw_types: dict[str, str],
                 snap: _Snapshot, src: readers.SourceFile) -> tuple[str | None, list[str] | None, int | None]:
    """(task, classes, n_classes) the file's scores imply; checked against the registry later."""
    if mapping.kind != "predictions":
        return None, None, None
    if mapping.class_probs:
        classes = list(mapping.classes) or [c for c, _ in mapping.class_probs]
        return "multiclass", classes, len(classes)
    if "probs" in mapping.fields:
        if mapping.classes:
            return "multiclass", list(mapping.classes), len(mapping.classes)
        registered = {m[0]: m for m in snap.models}
        model = mapping.constants.get("model")
        if model in registered and registered[model][2]:
            classes = list(registered[model][2])
            return "multiclass", classes, len(classes)
        col = q(mapping.fields["probs"])
        src_expr = f"TRY_CAST(trim({col}) AS DOUBLE[])" if raw_types[mapping.fields["probs"]] == "VARCHAR" else f"CAST({col} AS DOUBLE[])"
        row = con.execute(f"SELECT mode(len({src_expr})) FROM raw").fetchone()
        if row is None or row[0] is None:
            raise IngestError(f"{src.label}: the probability lists are all empty; cannot tell the classes")
        return "multiclass", [str(i) for i in range(int(row[0]))], int(row[0])
    return "binary", ["0", "1"], None


# --------------------------------------------------------------------------- merge
@contextmanager
def _attached(con: duckdb.DuckDBPyConnection, db_path: Path, timeout_s: float) -> Iterator[None]:
    attach = f"ATTACH {quote_literal(str(db_path))} AS {_ATTACH_ALIAS}"
    retry_on_lock(lambda: con.execute(attach), timeout_s, f"opening {db_path} for writing")
    try:
        yield
    finally:
        # A file's COMMIT checkpoints the main database (_commit_with_checkpoint); DETACH
        # checkpoints whatever else was written (a rejected file's run record), so no WAL is
        # left after an ingest (tested). A crash in between leaves a WAL that DuckDB replays
        # on the next open, as after any committed transaction.
        con.execute(f"DETACH {_ATTACH_ALIAS}")


def _merge(con: duckdb.DuckDBPyConnection, src: readers.SourceFile, options: IngestOptions,
           run_id: str, content_hash: str, st: _Staged, started: datetime, t0: float,
           t_read: float) -> FileResult:
    m = st.mapping
    table = f"{_T}.{schema.KIND_TABLE[m.kind]}"
    t_merge0 = time.perf_counter()
    with _attached(con, options.db_path, options.lock_timeout_s):
        already = _already_ingested(con, content_hash, f"{_T}.")
        if already is not None:
            return _finish_skip(con, src, run_id, content_hash, already, started, t0)
        _check_registry_unchanged(con, st, src)
        model_rows = _check_models(con, st, src)
        _classify_against_existing(con, m.kind, table)
        n_known_rejects = _classify_known_bad_rows(con, st)
        con.execute("BEGIN TRANSACTION")
        try:
            file_id = _next_file_id(con)
            for x in st.new_extras:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {q(x.target)} {x.target_type}")
                con.execute(f"INSERT INTO {_T}.columns VALUES (?, ?, ?, ?, ?, ?)",
                            [m.kind, x.target, x.role, x.target_type, m.role_sources.get(x.source, "inferred"), file_id])
            _update_roles(con, st)
            for model, task, classes in model_rows:
                con.execute(f"INSERT INTO {_T}.models VALUES (?, ?, ?, ?)", [model, task, classes, file_id])
            _insert_rows(con, m.kind, table, st.extras, file_id)
            n_unmatched = n_before = None
            if m.kind == "predictions":
                # The hours these rows fall in no longer match the rollup (refreshed after
                # the files: see ingest()); labels copied below fall in the same hours.
                con.execute(f"INSERT INTO {_T}.rollup_dirty SELECT model, min(ts), max(ts) "
                            "FROM staged WHERE _lb_reason IS NULL GROUP BY model")
                # Labels that came before their prediction (backfills, out-of-order files).
                schema.match_labels(con, schema.label_matches_sql(
                    f"{_T}.predictions", f"{_T}.labels", "p._lb_file_id = $file_id"),
                    {"file_id": file_id})
                schema.copy_labels(con, f"{_T}.")
            elif m.kind == "labels":
                n_unmatched, n_before = _copy_new_labels(con)
            _insert_quarantine(con, src, st, file_id)
            counts = dict(con.execute(
                "SELECT coalesce(_lb_reason, 'accepted'), count(*) FROM staged GROUP BY ALL").fetchall())
            n_accepted = counts.pop("accepted", 0)
            n_duplicate = counts.pop("duplicate", 0) + n_known_rejects
            reasons = dict(counts)
            if st.n_rejects > n_known_rejects:
                reasons["malformed_row"] = (reasons.get("malformed_row", 0) + st.n_rejects
                                            - n_known_rejects)
            n_quarantined = sum(reasons.values())
            if n_accepted + n_duplicate + n_quarantined != st.n_read:
                raise IngestError(f"{src.label}: internal accounting error: read {st.n_read} but "
                                  f"accepted+duplicate+quarantined = "
                                  f"{n_accepted + n_duplicate + n_quarantined}")
            seconds_total = time.perf_counter() - t0
            message = "; ".join(st.warnings) or None
            _insert_run(con, file_id=file_id, run_id=run_id, path=src.label, content_hash=content_hash,
                        kind=m.kind, status="ok", n_read=st.n_read, n_accepted=n_accepted,
                        n_duplicate=n_duplicate, n_quarantined=n_quarantined,
                        n_unmatched=n_unmatched, n_before=n_before, mapping=m.as_json(),
                        message=message, started=started, seconds_read=t_read,
                        seconds_merge=time.perf_counter() - t_merge0, seconds_total=seconds_total)
            _commit_with_checkpoint(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return FileResult(path=src.label, status="ok", kind=m.kind, content_hash=content_hash,
                      file_id=file_id, n_read=st.n_read, n_accepted=n_accepted,
                      n_duplicate=n_duplicate, n_quarantined=n_quarantined,
                      reasons=dict(sorted(reasons.items())), n_unmatched_labels=n_unmatched,
                      n_label_before_prediction=n_before,
                      new_columns=tuple(x.target for x in st.new_extras), message=message,
                      seconds=time.perf_counter() - t0)


def _commit_with_checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """COMMIT the file's transaction as a checkpoint of the main database.

    With the staging connection's raised checkpoint_threshold, COMMIT writes the changes to
    the WAL and DETACH checkpoints them: the labels an UPDATE copied were written twice
    (2.7M labels: COMMIT 2.8 s + DETACH 0.65 s). With the threshold at zero DuckDB skips the
    WAL and checkpoints at COMMIT (2.15 s). It is as atomic: the new state is reachable only
    once the checkpoint's header is written, so a crash before leaves none of the file. The
    threshold goes back up at once, for the staging database (see _staging_connection).
    """
    con.execute("SET checkpoint_threshold = '0b'")
    try:
        con.execute("COMMIT")
    finally:
        con.execute(f"SET checkpoint_threshold = {quote_literal(_STAGING_CHECKPOINT_THRESHOLD)}")


def _next_file_id(con: duckdb.DuckDBPyConnection) -> int:
    # We hold the file's write lock, so max + 1 cannot race with another writer.
    return con.execute(f"SELECT coalesce(max(file_id), 0) + 1 FROM {_T}.ingest_runs").fetchone()[0]


def _check_registry_unchanged(con: duckdb.DuckDBPyConnection, st: _Staged, src: readers.SourceFile) -> None:
    now = schema.read_columns(con, st.mapping.kind, _T)
    before = st.snapshot.columns[st.mapping.kind]
    changed = [n for n in set(now) | set(before)
               if (n in now) != (n in before) or (n in now and now[n].sql_type != before[n].sql_type)]
    if changed:
        raise IngestError(f"{src.label}: another ingest registered columns {sorted(changed)} while "
                          "this file was being read; run the ingest again")


def _check_models(con: duckdb.DuckDBPyConnection, st: _Staged, src: readers.SourceFile
                  ) -> list[tuple[str, str, list[str] | None]]:
    """New models to register; a model whose task or classes differ from the registry rejects
    the file (probabilities in a different class order would silently mean other classes)."""
    if st.mapping.kind != "predictions":
        return []
    models = [r[0] for r in con.execute(
        "SELECT DISTINCT model FROM staged WHERE _lb_reason IS NULL ORDER BY model").fetchall()]
    registered = {r[0]: (r[1], r[2]) for r in con.execute(
        f"SELECT model, task, classes FROM {_T}.models").fetchall()}
    new = []
    for model in models:
        if model in registered:
            task, classes = registered[model]
            if task != st.task or list(classes or []) != list(st.classes or []):
                raise IngestError(
                    f"{src.label}: model {model!r} is registered as {task} with classes "
                    f"{list(classes or [])}, but this file scores it as {st.task} with classes "
                    f"{st.classes}; map it as the same shape or use another model name")
        else:
            new.append((model, st.task or "binary", st.classes))
    return new


def _classify_against_existing(con: duckdb.DuckDBPyConnection, kind: str, table: str) -> None:
    _, conflict = validate.DEDUPE_KEYS[kind]
    on = validate.key_match(kind, "e", "s")
    # The row the database kept is the first occurrence, so every valid copy in this file is
    # compared with it, including copies the in-file dedupe compared with the file's own first.
    con.execute(f"""UPDATE staged SET
      _lb_reason = CASE WHEN x.same THEN 'duplicate' ELSE '{conflict}' END,
      _lb_detail = CASE WHEN x.same THEN 'already in the database (file ' || x.file_id || ', row ' || x.row_number || ')'
                   ELSE 'differs from the row already in the database (file ' || x.file_id || ', row '
                        || x.row_number || '), which was kept' END
    FROM (SELECT s._lb_ord, bool_and(s._lb_row_hash = e._lb_row_hash) AS same,
                 min(e._lb_file_id) AS file_id,
                 arg_min(e._lb_row_number, (e._lb_file_id, e._lb_row_number)) AS row_number
          FROM staged s JOIN {table} e ON {on}
          WHERE s._lb_reason IS NULL OR s._lb_reason IN ('duplicate', '{conflict}')
          -- A model-less label can match labels of several models: one verdict per row.
          GROUP BY s._lb_ord) x
    WHERE staged._lb_ord = x._lb_ord""")


def _update_roles(con: duckdb.DuckDBPyConnection, st: _Staged) -> None:
    """A role given explicitly (flag or config) for an already registered column wins."""
    new = {x.target for x in st.new_extras}
    for x in st.extras:
        source = st.mapping.role_sources.get(x.source)
        if x.target in new or source not in ("flag", "config") or x.role == "pii":
            continue
        con.execute(f"UPDATE {_T}.columns SET role = ?, role_source = ? WHERE kind = ? AND name = ? "
                    "AND role <> 'pii'", [x.role, source, st.mapping.kind, x.target])


def _insert_rows(con: duckdb.DuckDBPyConnection, kind: str, table: str,
                 extras: list[validate.ExtraColumn], file_id: int) -> None:
    contract = [c for c, _ in schema.CONTRACT_COLUMNS[kind]]
    target_cols = contract + ["_lb_file_id", "_lb_row_number", "_lb_row_hash"] + [x.target for x in extras]
    select = contract + ["$file_id", "_lb_row_number", "_lb_row_hash"] + [x.staged for x in extras]
    # Rows are stored in file order. Every staging CTAS reads `raw` alone (no join), so
    # `staged` is already in _lb_ord order and a single-table SELECT/WHERE keeps it
    # (preserve_insertion_order, DuckDB's default; docs: "order preservation"). Sorting again
    # spilled past memory_limit and cost 2.5 s of a 10M-row ingest on a quiet 2-core machine,
    # up to 30 s on a busy one (docs/benchmarks.md).
    con.execute(
        f"INSERT INTO {table} ({', '.join(q(c) for c in target_cols)}) "
        f"SELECT {', '.join(c if c.startswith('$') else q(c) for c in select)} "
        f"FROM staged WHERE _lb_reason IS NULL",
        {"file_id": file_id},
    )


def _raw_json(st: _Staged) -> str:
    """The raw row as JSON, with PII columns replaced by their salted hash."""
    pii = set(st.mapping.pii_columns)
    parts = [f"{q(name)} := {validate.pii_hash('r.' + q(name)) if name in pii else 'r.' + q(name)}"
             for name in _raw_columns(st)]
    return f"to_json(struct_pack({', '.join(parts)}))"


def _raw_columns(st: _Staged) -> list[str]:
    m = st.mapping
    return list(dict.fromkeys(list(m.fields.values()) + [c for _, c in m.class_probs] + list(m.roles)))


def _classify_known_bad_rows(con: duckdb.DuckDBPyConnection, st: _Staged) -> int:
    """Put the file's bad rows, with their raw values, in the temp table ``lb_quarantine``
    for :func:`_insert_quarantine`; mark those an earlier file already quarantined as
    duplicates. Returns how many of the file's malformed lines were already quarantined.

    A bad row an earlier file already brought, with the same reason and the same raw values
    (a re-export of a day, overlapping dumps), is a ``duplicate`` of it, as an identical good
    row is: re-sending a file must not count its bad rows twice. Compared on the raw JSON,
    whose PII values are salted hashes, so equal rows compare equal. Runs before the file's
    transaction, as _classify_against_existing does: that transaction may write the main
    database only (and temp tables), not ``staged``."""
    raw_json = _raw_json(st)
    # DuckDB refuses a bound parameter the statement does not use (files without PII).
    params = {"salt": st.snapshot.salt} if "$salt" in raw_json else {}
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE lb_quarantine AS
        SELECT s._lb_ord AS ord, s._lb_row_number AS row_number, s._lb_reason AS reason,
               s._lb_detail AS detail, CAST({raw_json} AS VARCHAR) AS raw
        FROM staged s JOIN raw r ON r.{st.raw_ordinal} = s._lb_ord
        WHERE s._lb_reason IS NOT NULL AND s._lb_reason <> 'duplicate'""",
        params,
    )
    if st.n_rejects:
        # A line the reader could not split cannot have its PII columns found, so when the
        # file has PII the raw line is withheld and only its hash is kept.
        raw = ("json_object('line_sha256', sha256(arg_min(csv_line, column_idx)), 'note', "
               "'raw line withheld: the file has PII columns')" if st.mapping.pii_columns
               else "json_object('line', arg_min(csv_line, column_idx))")
        con.execute(
            f"""INSERT INTO lb_quarantine
            SELECT NULL, line - 1, 'malformed_row', arg_min(error_message, column_idx),
                   CAST({raw} AS VARCHAR)
            FROM {readers.REJECTS_TABLE} GROUP BY line""")
    # Row numbers are unique in a file: parsed rows are numbered around the rejected lines.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE lb_known AS
        SELECT q.row_number, min(e.file_id) AS file_id,
               arg_min(e.row_number, (e.file_id, e.row_number)) AS first_row
        FROM lb_quarantine q JOIN {_T}.quarantine e
          ON e.kind = $kind AND e.reason = q.reason AND CAST(e.raw AS VARCHAR) = q.raw
        GROUP BY q.row_number""",
        {"kind": st.mapping.kind})
    con.execute(
        """UPDATE staged SET _lb_reason = 'duplicate',
             _lb_detail = 'already quarantined (file ' || k.file_id || ', row ' || k.first_row || ')'
           FROM lb_known k WHERE staged._lb_row_number = k.row_number""")
    return con.execute("SELECT count(*) FROM lb_known JOIN lb_quarantine q USING (row_number) "
                       "WHERE q.ord IS NULL").fetchone()[0]


def _insert_quarantine(con: duckdb.DuckDBPyConnection, src: readers.SourceFile, st: _Staged,
                       file_id: int) -> None:
    """Store the bad rows :func:`_classify_known_bad_rows` found and no earlier file brought."""
    con.execute(
        f"""INSERT INTO {_T}.quarantine
        SELECT $file_id, $path, $kind, q.row_number, q.reason, q.detail, q.raw
        FROM lb_quarantine q ANTI JOIN lb_known k USING (row_number)
        ORDER BY q.row_number""",
        {"file_id": file_id, "path": src.label, "kind": st.mapping.kind})
    con.execute("DROP TABLE lb_quarantine")
    con.execute("DROP TABLE lb_known")


def _copy_new_labels(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Copy this file's accepted labels onto their predictions (schema.copy_labels); returns
    (labels with no prediction yet, labels timed before their prediction)."""
    schema.match_labels(con, schema.label_matches_sql(
        f"{_T}.predictions", "staged", "l._lb_reason IS NULL",
        extra=", l._lb_ord AS ord, l.model IS NULL AS any_model, p.model AS p_model"))
    # The predictions that receive a label change their hours' sums in the rollup.
    con.execute(f"INSERT INTO {_T}.rollup_dirty SELECT p_model, min(ts), max(ts) "
                "FROM lb_label_matches GROUP BY p_model")
    # A label with a model matches at most one prediction, so only model-less labels need
    # a DISTINCT (which cost 7 s over 8.8M matches at 10M rows). CASE WHEN inside the
    # aggregates, not FILTER: with FILTER this took 2.7 s over 9M matches, with CASE 0.06 s
    # (DuckDB 2.0; docs/benchmarks.md).
    n_accepted, n_matched, n_before = con.execute(
        """SELECT (SELECT count(*) FROM staged WHERE _lb_reason IS NULL),
                  count(CASE WHEN NOT any_model THEN 1 END)
                  + count(DISTINCT CASE WHEN any_model THEN ord END),
                  count(CASE WHEN NOT any_model AND label_ts < ts THEN 1 END)
                  + count(DISTINCT CASE WHEN any_model AND label_ts < ts THEN ord END)
           FROM lb_label_matches""").fetchone()
    schema.copy_labels(con, f"{_T}.")
    return int(n_accepted - n_matched), int(n_before)


def _insert_run(con: duckdb.DuckDBPyConnection, *, file_id: int, run_id: str, path: str,
                content_hash: str | None, kind: str | None, status: str, n_read: int,
                n_accepted: int, n_duplicate: int, n_quarantined: int, n_unmatched: int | None,
                n_before: int | None, mapping: dict[str, Any] | None, message: str | None,
                started: datetime, seconds_read: float | None, seconds_merge: float | None,
                seconds_total: float, prefix: str = f"{_T}.") -> None:
    con.execute(
        f"INSERT INTO {prefix}ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?)",
        [file_id, run_id, path, content_hash, kind, status, n_read, n_accepted, n_duplicate,
         n_quarantined, n_unmatched, n_before, json.dumps(mapping) if mapping else None,
         message, started, seconds_read, seconds_merge, seconds_total],
    )


def _finish_skip(con: duckdb.DuckDBPyConnection, src: readers.SourceFile, run_id: str,
                 content_hash: str, already: str, started: datetime, t0: float) -> FileResult:
    file_id = _next_file_id(con)
    _insert_run(con, file_id=file_id, run_id=run_id, path=src.label, content_hash=content_hash,
                kind=None, status="skipped", n_read=0, n_accepted=0, n_duplicate=0,
                n_quarantined=0, n_unmatched=None, n_before=None, mapping=None, message=already,
                started=started, seconds_read=None, seconds_merge=None,
                seconds_total=time.perf_counter() - t0)
    return FileResult(path=src.label, status="skipped", content_hash=content_hash, file_id=file_id,
                      message=already, seconds=time.perf_counter() - t0)


def _record_skip(src: readers.SourceFile, options: IngestOptions, run_id: str, content_hash: str,
                 already: str, started: datetime, t0: float) -> FileResult:
    con = duckdb.connect(":memory:")
    try:
        with _attached(con, options.db_path, options.lock_timeout_s):
            return _finish_skip(con, src, run_id, content_hash, already, started, t0)
    finally:
        con.close()


def _record_reject(src: readers.SourceFile, options: IngestOptions, run_id: str,
                   content_hash: str | None, message: str, started: datetime, t0: float) -> FileResult:
    """Record that a file was rejected (nothing of its rows is written), then report it."""
    seconds = time.perf_counter() - t0
    file_id: int | None = None
    if Path(options.db_path).exists():
        con = duckdb.connect(":memory:")
        try:
            with _attached(con, options.db_path, options.lock_timeout_s):
                file_id = _next_file_id(con)
                _insert_run(con, file_id=file_id, run_id=run_id, path=src.label,
                            content_hash=content_hash, kind=None, status="rejected", n_read=0,
                            n_accepted=0, n_duplicate=0, n_quarantined=0, n_unmatched=None,
                            n_before=None, mapping=None, message=message, started=started,
                            seconds_read=None, seconds_merge=None, seconds_total=seconds)
        except LossboardError as exc:
            # The database stayed busy: the rejection is still reported on the command line.
            message = f"{message} (not recorded in ingest_runs: {exc})"
        finally:
            con.close()
    return FileResult(path=src.label, status="rejected", content_hash=content_hash,
                      file_id=file_id, message=message, seconds=seconds)
