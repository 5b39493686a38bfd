"""The ``lossboard`` command line (Typer).

Every command's help ends with a runnable example. Errors lossboard raises on purpose
(:class:`lossboard.errors.LossboardError`) print one line and exit 1; they never show a
traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Annotated, Any, Optional

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lossboard.db import DEFAULT_LOCK_TIMEOUT_S, read_connection, write_connection
from lossboard.errors import LossboardError
from lossboard.ingest import readers, schema
from lossboard.ingest.load import FileResult, IngestOptions, IngestReport, ensure_database, ingest
from lossboard.ingest.mapping import MappingOptions, load_config, parse_list, parse_pairs

app = typer.Typer(
    name="lossboard",
    help="Model observability for probabilistic classifiers: log loss, calibration, drift and "
    "saturation from your prediction and label logs.\n\n"
    "Example: lossboard ingest --db lossboard.duckdb predictions.csv labels.jsonl",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_DB = Path("lossboard.duckdb")
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"

DbOption = Annotated[Path, typer.Option("--db", help="The lossboard DuckDB file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    # Messages quote user input and config tables ("[[slo]] #1"): never read them as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# --------------------------------------------------------------------------- ingest
class _RichProgress:
    """Adapts lossboard.ingest.load's progress callbacks to a rich progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)
        self.files_total = 0
        self.index = 0

    def file_started(self, label: str, index: int, total: int) -> None:
        self.index, self.files_total = index, total
        self.progress.update(self.task, description=self._describe("hashing", label), total=None,
                             completed=0)
        self.label = label

    def stage(self, name: str, fraction: float | None) -> None:
        if fraction is None:
            self.progress.update(self.task, description=self._describe(name, self.label), total=None)
        else:
            self.progress.update(self.task, description=self._describe(name, self.label),
                                 total=100, completed=round(fraction * 100))

    def file_done(self, result: FileResult) -> None:
        self.progress.update(self.task, total=100, completed=100)

    def _describe(self, stage: str, label: str) -> str:
        return f"[{self.index + 1}/{self.files_total}] {stage} {Path(label).name}"


def _short_names(paths: list[str]) -> dict[str, str]:
    """Each path by its file name, or by as many trailing parts as tell it from the others
    (hive partitions: two part-0.parquet in dt=2026-11-01/ and dt=2026-11-02/)."""
    parts = {p: PurePath(p).parts for p in paths}
    out: dict[str, str] = {}
    for p, mine in parts.items():
        for k in range(1, len(mine) + 1):
            tail = mine[-k:]
            if all(o == p or parts[o][-k:] != tail for o in parts):
                break
        out[p] = str(PurePath(*tail)) if mine else p
    return out


def _print_summary(report: IngestReport) -> None:
    """Per-file accounting, then quarantine reasons, then notes: narrow enough for 80 columns."""
    table = Table(title=f"ingest run {report.run_id} into {report.db_path}", title_justify="left")
    table.add_column("file", overflow="fold")
    for col in ("kind", "status"):
        table.add_column(col)
    for col in ("read", "accepted", "duplicate", "quarantined"):
        table.add_column(col, justify="right")
    notes: list[str] = []
    names = _short_names([f.path for f in report.files])
    for f in report.files:
        style = {"rejected": "red", "skipped": "dim"}.get(f.status, "")
        name = names[f.path]
        table.add_row(name, f.kind or "", f.status, f"{f.n_read:,}", f"{f.n_accepted:,}",
                      f"{f.n_duplicate:,}", f"{f.n_quarantined:,}", style=style)
        if f.n_unmatched_labels:
            notes.append(f"{name}: {f.n_unmatched_labels:,} labels have no prediction yet (kept)")
        if f.n_label_before_prediction:
            notes.append(f"{name}: {f.n_label_before_prediction:,} labels are timed before their "
                         "prediction (kept, flagged)")
        if f.new_columns:
            notes.append(f"{name}: new columns {', '.join(f.new_columns)} (see `lossboard columns`)")
        if f.message and f.status != "rejected":
            notes.append(f"{name}: {f.message}")
    t = report.totals()
    table.add_row("total", "", "ok" if report.ok else "REJECTED", f"{t['n_read']:,}",
                  f"{t['n_accepted']:,}", f"{t['n_duplicate']:,}", f"{t['n_quarantined']:,}",
                  style="bold")
    console.print(table)
    if report.rollup and "error" in report.rollup:
        notes.append(str(report.rollup["error"]))
    reasons = report.reasons()
    if reasons:
        rt = Table(title="quarantined, by reason (lossboard quarantine --reason R)", title_justify="left")
        rt.add_column("reason")
        rt.add_column("rows", justify="right")
        for reason, n in reasons.items():
            rt.add_row(reason, f"{n:,}")
        console.print(rt)
    if report.ignored:
        shown = ", ".join(report.ignored[:10]) + (
            f" (and {len(report.ignored) - 10} more)" if len(report.ignored) > 10 else "")
        notes.append(f"not read, of no type lossboard reads: {shown} (supported: "
                     f"{', '.join(readers.SUPPORTED_SUFFIXES)})")
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files, globs or directories to ingest.")],
    db: DbOption = DEFAULT_DB,
    kind: Annotated[Optional[str], typer.Option(help="predictions | labels | kpi (auto-detected when unambiguous).")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="FIELD=COLUMN, repeatable: which of your columns is request_id, ts, model, model_version, p, logit, probs, weight, label, label_ts, kpi, value.")] = None,
    segments: Annotated[Optional[str], typer.Option(help="Comma-separated segment columns (slices: region, channel, ...).")] = None,
    features: Annotated[Optional[str], typer.Option(help="Comma-separated feature columns (checked for drift).")] = None,
    activations: Annotated[Optional[str], typer.Option(help="Comma-separated activation columns (e.g. tanh outputs).")] = None,
    pii: Annotated[Optional[str], typer.Option(help="Comma-separated PII columns: stored only as salted hashes.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name, when the file has no model column.")] = None,
    model_version: Annotated[Optional[str], typer.Option(help="Model version, when the file has no version column.")] = None,
    class_probs: Annotated[Optional[str], typer.Option(help="Multiclass scores as one column per class: CLASS=COLUMN,...")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Class names, in order, for a list-of-probabilities column.")] = None,
    timezone: Annotated[Optional[str], typer.Option(help="Time zone of naive timestamps (default UTC).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Mapping config (default ./lossboard.toml if present).")] = None,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for readers to release the database.")] = DEFAULT_LOCK_TIMEOUT_S,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit while staging a file; beyond it, staging spills to disk.")] = "1GB",
    as_json: JsonOption = False,
) -> None:
    """Load prediction, label or KPI logs into the database; every row is accounted for.

    Each file is one transaction. Re-ingesting a file is a no-op; rows already present are
    counted as duplicates; bad rows are quarantined with a reason (see `lossboard quarantine`).
    Exit code 0 when every file went in (quarantined rows included), 1 when a file was rejected.

    Example: lossboard ingest --db lossboard.duckdb --map p=fraud_score --model fraud --model-version v3 preds.csv
    """
    try:
        flags = MappingOptions(
            kind=kind, map=dict(parse_pairs(map_ or [], "--map")),
            segments=parse_list(segments), features=parse_list(features),
            activations=parse_list(activations), pii=parse_list(pii), model=model,
            model_version=model_version, class_probs=parse_pairs([class_probs] if class_probs else [], "--class-probs"),
            classes=parse_list(classes), timezone=timezone,
        )
        options = IngestOptions(db_path=db, flags=flags, config=load_config(config),
                                lock_timeout_s=lock_timeout, memory_limit=memory_limit)
    except LossboardError as exc:
        _fail(str(exc))
    report = run_ingest(paths, options, show_progress=not as_json)
    if as_json:
        _print_json(report.as_json())
    else:
        _print_summary(report)
        for f in report.files:
            if f.status == "rejected":
                err_console.print(f"[bold red]rejected:[/] {f.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


def run_ingest(paths: list[str], options: IngestOptions, show_progress: bool) -> IngestReport:
    if not show_progress:
        return ingest(list(paths), options)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        return ingest(list(paths), options, _RichProgress(progress))


# --------------------------------------------------------------------------- read commands
def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _frame_table(df: Any, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*[_cell(v) for v in row])
    return table


def _records_table(records: list[dict[str, Any]], columns: list[str], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for record in records:
        table.add_row(*[_cell(record[c]) for c in columns])
    return table


def _iso_utc(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sql_limit(limit: int) -> int | None:
    # LIMIT NULL is no limit in DuckDB: --limit 0 means "all", not "none".
    return None if limit == 0 else limit


def matching_source_files(stored: list[str], given: str) -> list[str]:
    """The stored source files that ``lossboard quarantine --file given`` selects.

    A stored path matches when it equals ``given``, when both resolve to the same absolute
    path (relative ones from the current folder), or when it ends with ``given`` as a path
    suffix (whole components: ``malformed.csv`` and ``data/malformed.csv`` match
    ``/srv/data/malformed.csv``; ``ed.csv`` does not). A bare name may select several files.

    >>> matching_source_files(["/srv/data/a.csv", "/srv/b.csv"], "./data/a.csv")
    ['/srv/data/a.csv']
    """
    def parts(path: str) -> tuple[str, ...]:
        return PurePath(os.path.normpath(path)).parts

    def absolute(path: str) -> str:
        return os.path.realpath(os.path.expanduser(path))

    given_parts = parts(given) if given else ()
    given_abs = absolute(given) if given else None
    return [path for path in stored
            if path == given or absolute(path) == given_abs
            or (given_parts and parts(path)[-len(given_parts):] == given_parts)]


def _no_file_hint(given: str, stored: list[str]) -> str:
    if not stored:
        return f"no quarantined rows from {given!r}: no row is quarantined in this database"
    shown = ", ".join(stored[:10]) + (f" (and {len(stored) - 10} more)" if len(stored) > 10 else "")
    return (f"no quarantined rows from a file matching {given!r}; files with quarantined rows: "
            f"{shown}")


@app.command("quarantine")
def quarantine_cmd(
    db: DbOption = DEFAULT_DB,
    reason: Annotated[Optional[str], typer.Option(help="Only this reason code, e.g. bad_ts.")] = None,
    file: Annotated[Optional[str], typer.Option(help="Only rows from this source file: its path as ingested, the same file by another path (absolute, ./...), or a trailing part of it (a bare file name).")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many rows; 0 shows all.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List quarantined rows with their reason, source file, row number and raw values.

    Without --reason, starts with a count per reason (of the rows --file selects). When more
    rows match than --limit, says how many (JSON: total, truncated). PII columns appear only
    as hashes.

    Example: lossboard quarantine --db lossboard.duckdb --reason score_out_of_range --file preds.csv
    """
    from lossboard.dashboard.analysis import health

    try:
        with read_connection(db) as con:
            files: list[str] | None = None
            stored: list[str] = []
            if file is not None:
                stored = health.quarantine_sources(con)
                files = matching_source_files(stored, file)
            by_reason, rows = health.quarantine_records(con, reason, files, _sql_limit(limit))
    except LossboardError as exc:
        _fail(str(exc))
    total = sum(r["n_rows"] for r in by_reason)
    truncated = len(rows) < total
    if files == []:
        err_console.print(f"note: {_no_file_hint(file, stored)}", highlight=False,
                          soft_wrap=True, markup=False)
    elif files is not None and len(files) > 1:
        err_console.print(f"note: --file {file} matches {len(files)} files: {', '.join(files)}",
                          highlight=False, soft_wrap=True, markup=False)
    if as_json:
        _print_json({"by_reason": by_reason,
                     "rows": [{**r, "raw": json.loads(r["raw"]) if r["raw"] else None} for r in rows],
                     "total": total, "truncated": truncated, "matched_files": files})
        return
    if reason is None:
        console.print(_records_table(by_reason, ["kind", "reason", "n_rows", "n_files"],
                                     "quarantined rows by reason"))
    console.print(_records_table(rows, ["file_id", "source_file", "kind", "row_number", "reason",
                                        "detail", "raw"],
                                 f"quarantined rows{' (' + reason + ')' if reason else ''}"))
    if truncated:
        console.print(f"showing {len(rows):,} of {total:,} rows; --limit 0 shows all",
                      highlight=False)


@app.command("runs")
def runs_cmd(
    db: DbOption = DEFAULT_DB,
    limit: Annotated[int, typer.Option(min=0, help="At most this many files, newest first; 0 shows all.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show the ingest history: one row per file per run, with its accounting.

    --json prints every field of the ingest_runs table: times in ISO-8601 UTC, the mapping
    used as an object, null where a field does not apply.

    Example: lossboard runs --db lossboard.duckdb --limit 5
    """
    from lossboard.dashboard.analysis import health

    try:
        with read_connection(db) as con:
            runs = health.ingest_run_records(con, _sql_limit(limit))
    except LossboardError as exc:
        _fail(str(exc))
    if as_json:
        _print_json([{**r, "started_at": _iso_utc(r["started_at"]),
                      "finished_at": _iso_utc(r["finished_at"]),
                      "mapping": json.loads(r["mapping"]) if r["mapping"] else None}
                     for r in runs])
    else:
        console.print(_records_table(runs, list(health.INGEST_RUN_COLUMNS), "ingest runs"))


@app.command("columns")
def columns_cmd(
    db: DbOption = DEFAULT_DB,
    kind: Annotated[Optional[str], typer.Option(help="predictions | labels | kpi")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="COLUMN=ROLE, repeatable; roles: segment, feature, activation, pii, attribute, ignored.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List your columns with the role lossboard gave them; override a role with --set.

    Setting a column to pii hashes its stored values in place (irreversible).

    Example: lossboard columns --db lossboard.duckdb --set merchant_category=feature
    """
    from lossboard.dashboard.analysis import health, rollup

    try:
        if set_:
            pairs = parse_pairs(set_, "--set")
            if not Path(db).exists():  # write_connection would create an empty one
                _fail(f"database {db} does not exist; create it with `lossboard ingest --db "
                      f"{db} FILE`")
            with write_connection(db) as con:
                for name, role in pairs:
                    schema.set_column_role(con, kind or "predictions", name, role)
                # A segment column more or less changes what the hourly rollup sums by.
                rollup.refresh(con)
            if any(role == "pii" for _, role in pairs):
                # Hashing in place leaves the raw bytes in the file's free blocks: rewrite it.
                schema.compact_database(db)
        with read_connection(db) as con:
            df = health.registered_columns(con, kind)
    except LossboardError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(df.to_dict(orient="records"))
    else:
        console.print(_frame_table(df, "columns"))


@app.command("rollup")
def rollup_cmd(
    db: DbOption = DEFAULT_DB,
    rebuild: Annotated[bool, typer.Option(help="Recompute every model's hours, not only the changed ones.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Bring the hourly rollup up to date and show its state per model.

    `lossboard ingest` does this after its files; run it by hand after an ingest that reported
    the rollup was not refreshed, or with --rebuild to recompute it whole. Pages read whole
    hours from the rollup when it is current, and scan the rows otherwise (same figures).

    Example: lossboard rollup --db lossboard.duckdb
    """
    from lossboard.dashboard.analysis import rollup

    if not Path(db).exists():
        # ensure_database would create it: a typo would make an empty database and exit 0.
        _fail(f"database {db} does not exist; create it with `lossboard ingest --db {db} FILE`")
    try:
        ensure_database(db)  # an older schema is upgraded
        done = rollup.refresh_file(db, DEFAULT_LOCK_TIMEOUT_S, rebuild=rebuild)
        with read_connection(db) as con:
            rows = rollup.status(con)
    except (LossboardError, duckdb.Error) as exc:
        _fail(str(exc))
    if as_json:
        _print_json({"refreshed": done.as_json(), "models": rows})
        return
    table = Table(title=f"hourly rollup of {db} (refreshed in {done.seconds:.2f} s)",
                  title_justify="left")
    for col in ("model", "in use", "rows", "refreshed at", "waiting ranges"):
        table.add_column(col, justify="right" if col in ("rows", "waiting ranges") else "left")
    for r in rows:
        table.add_row(str(r["model"]), "yes" if r["in_use"] else "no",
                      "-" if r["rows"] is None else f"{r['rows']:,}", str(r["refreshed_at"] or "-"),
                      str(r["dirty_ranges"]))
    console.print(table)


# --------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    return table


def _print_report(rep: dict[str, Any]) -> None:
    w, ref = rep["window"], rep["reference"]
    reference = (f"reference {ref['from']} to {ref['to']}"
                 if ref["from"] or ref["to"] else "no reference window")
    console.print(f"[bold]{rep['model']}[/] ({rep['task']}) from {w['from']} to {w['to']}; "
                  f"{reference}", highlight=False)
    ov = rep["overall"]
    console.print(_rows_table("overall", [ov], ["n_predictions", "n_labelled", "n_nan_scores",
                                                "n_clipped", "log_loss", "brier", "roc_auc",
                                                "accuracy", "ece"]))
    if rep["findings"]:
        console.print(_rows_table("what broke, where, since when", [
            {**f, "where": ", ".join(f"{k}={v}" for k, v in _flat(f["where"]).items())}
            for f in rep["findings"]], ["what", "where", "since", "until", "detail"]))
    else:
        console.print("nothing broke: no finding in this window")
    console.print(_rows_table("by version", rep["by_version"],
                              ["model_version", "n_labelled", "log_loss", "first_ts", "last_ts"]))
    if rep["canary"]:
        console.print(_rows_table("canary vs baseline", [rep["canary"]], [
            "baseline", "candidate", "n_baseline", "n_candidate", "log_loss_baseline",
            "log_loss_candidate", "relative_delta", "p_value", "verdict"]))
    seg_rows = [{"column": c, **r} for c, rows in rep["by_segment"].items() for r in rows]
    seg_rows.sort(key=lambda r: -(r["excess_loss"] if r["excess_loss"] is not None else -1e9))
    if seg_rows:
        console.print(_rows_table("segments by excess loss", seg_rows[:10], [
            "column", "value", "n_labelled", "log_loss", "excess_loss", "p_value"]))
    if rep["drift"]:
        console.print(_rows_table("drift vs the reference window", rep["drift"], [
            "feature", "kind", "psi", "ks_statistic", "ks_pvalue", "status"]))
    lag = rep["labels"]["lag_hours"]
    console.print(f"label lag hours: p50 {_fmt(lag['p50'], 1)}, p90 {_fmt(lag['p90'], 1)}, "
                  f"p99 {_fmt(lag['p99'], 1)}; per-day figures: --json", highlight=False)
    for note in rep.get("notes", []):
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)


def _flat(where: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in where.items():
        if isinstance(value, dict):
            out.update(_flat(value, prefix))
        else:
            out[f"{prefix}{key}"] = _fmt(value)
    return out


# Filter options several commands share (the Filter's fields).
ModelOption = Annotated[Optional[str], typer.Option(help="Model (optional when the database holds one).")]
FromOption = Annotated[Optional[str], typer.Option("--from", help="Start, ISO-8601 UTC, inclusive (default: first prediction).")]
ToOption = Annotated[Optional[str], typer.Option("--to", help="End, ISO-8601 UTC, exclusive (default: after the last prediction).")]
RefFromOption = Annotated[Optional[str], typer.Option(help="Reference window start (default: the first 7 days).")]
RefToOption = Annotated[Optional[str], typer.Option(help="Reference window end, exclusive.")]
SegmentOption = Annotated[Optional[list[str]], typer.Option(help="COLUMN=VALUE, repeatable: only these segment values.")]
VersionOption = Annotated[Optional[list[str]], typer.Option(help="Only these model versions (repeatable).")]


@app.command("report")
def report_cmd(
    db: DbOption = DEFAULT_DB,
    model: ModelOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    reference_from: RefFromOption = None,
    reference_to: RefToOption = None,
    segment: SegmentOption = None,
    version: VersionOption = None,
    bins: Annotated[int, typer.Option(help="Bins for calibration and PSI.")] = 10,
    min_samples: Annotated[int, typer.Option(help="Below this many labelled rows a figure is low-confidence.")] = 1000,
    drift_: Annotated[bool, typer.Option("--drift/--no-drift", help="Compute feature drift (the slowest part).")] = True,
    as_json: JsonOption = False,
) -> None:
    """Report log loss, calibration, segments, versions, canary, drift, saturation and labels,
    with the findings: what broke, where, since when.

    Times are UTC; ranges are half-open [from, to). JSON fields: docs/report-json.md.

    Example: lossboard report --db lossboard.duckdb --model fraud --from 2026-10-15 --json
    """
    from lossboard.dashboard.analysis.filters import Filter
    from lossboard.dashboard.analysis.report import build_report

    try:
        flt = Filter(start=from_, end=to, model=model, versions=tuple(version or ()),
                     segments=parse_pairs(segment or [], "--segment"),
                     reference_start=reference_from, reference_end=reference_to)
        if db.exists():
            ensure_database(db)  # upgrades a database written by an older lossboard
        with read_connection(db) as con:
            rep = build_report(con, flt, bins=bins, min_samples=min_samples, include_drift=drift_)
    except LossboardError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(rep)
    else:
        _print_report(rep)


@app.command("export-report")
def export_report_cmd(
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    db: DbOption = DEFAULT_DB,
    model: ModelOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    reference_from: RefFromOption = None,
    reference_to: RefToOption = None,
    reference_version: Annotated[Optional[str], typer.Option(help="Compare with this model version instead of a window.")] = None,
    segment: SegmentOption = None,
    version: VersionOption = None,
    maturity_hours: Annotated[Optional[float], typer.Option(help="Only predictions at least this many hours older than the end.")] = None,
    bins: Annotated[int, typer.Option(help="Bins for calibration and PSI.")] = 10,
    min_samples: Annotated[int, typer.Option(help="Below this many labelled rows a figure is low-confidence.")] = 1000,
    drift_: Annotated[bool, typer.Option("--drift/--no-drift", help="Compute feature drift (the slowest part).")] = True,
    trend_days: Annotated[int, typer.Option(help="Days of daily log loss in the trend chart, up to the end.")] = 30,
    slo_target: Annotated[Optional[float], typer.Option(help="Log loss target (nats) drawn on the trend.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="SLO config (default: $LOSSBOARD_CONFIG, else ./lossboard.toml if present).")] = None,
) -> None:
    """Write a self-contained HTML report (charts embedded, works offline): executive
    summary, on-call findings, top segment and drift findings, versions, business KPIs.

    The same file as the dashboard's download button for the same filter. Times are UTC;
    ranges are half-open [from, to).

    Example: lossboard export-report --db lossboard.duckdb --model fraud --from 2026-10-15 --out report.html
    """
    from lossboard.dashboard import monitoring_config
    from lossboard.dashboard.analysis.filters import Filter
    from lossboard.dashboard.html_report import build_html

    try:
        slos = monitoring_config.load(config).slos
        flt = Filter(start=from_, end=to, model=model, versions=tuple(version or ()),
                     segments=parse_pairs(segment or [], "--segment"),
                     maturity_hours=maturity_hours, reference_start=reference_from,
                     reference_end=reference_to, reference_version=reference_version)
        with read_connection(db) as con:
            page = build_html(con, flt, bins=bins, min_samples=min_samples, include_drift=drift_,
                              trend_days=trend_days, slo_target=slo_target, slos=slos)
    except LossboardError as exc:
        _fail(str(exc))
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    # soft_wrap: a long path must stay on one line (scripts grep for it; Rich wraps at 80).
    console.print(f"wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB)", highlight=False,
                  soft_wrap=True)


# --------------------------------------------------------------------------- alerts / check / metrics
ConfigOption = Annotated[Optional[Path], typer.Option(
    "--config", help="lossboard.toml with the slo, alerts and maintenance tables (default: "
    "$LOSSBOARD_CONFIG, else ./lossboard.toml, else the default rules).")]


@app.command("alerts")
def alerts_cmd(
    db: DbOption = DEFAULT_DB,
    config: ConfigOption = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluate at this UTC time (ISO-8601) to replay history; default: just after the newest prediction.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Only this model (default: every model).")] = None,
    webhook: Annotated[Optional[str], typer.Option(help="POST the alerts as JSON to this URL (overrides the config's webhook).")] = None,
    show_suppressed: Annotated[bool, typer.Option("--show-suppressed", help="Also list alerts suppressed by a maintenance window.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every SLO burn-rate alert and rule at one point in time.

    Exit code 0: nothing firing; 1: a ticket fires; 2: a page fires (suppressed alerts do not
    count). Rules and config: docs/slo-alerts.md.

    Example: lossboard alerts --db lossboard.duckdb --config lossboard.toml --as-of 2026-10-13T09:00Z
    """
    from rich.markup import escape

    from lossboard.dashboard import monitoring_config
    from lossboard.dashboard.analysis import alerts as alerting
    from lossboard.dashboard.analysis.slo import resolve_as_of
    from lossboard.dashboard.webhook import post_json

    try:
        cfg = monitoring_config.load(config)
        with read_connection(db) as con:
            at = resolve_as_of(con, None, as_of)
            found = alerting.evaluate(con, cfg, as_of=at, model=model, include_suppressed=True)
    except LossboardError as exc:
        _fail(str(exc))
    code = alerting.exit_code(found)
    shown = found if show_suppressed or as_json else [a for a in found if not a.suppressed]
    payload = {"as_of": at.isoformat().replace("+00:00", "Z"),
               "exit_code": code, "alerts": [a.as_json() for a in shown]}
    if as_json:
        _print_json(payload)
    elif not shown:
        console.print("no alert firing", highlight=False)
    else:
        for a in shown:
            where = ", ".join(x for x in (a.model, a.version, a.segment) if x)
            tag = f"suppressed ({a.suppressed_by})" if a.suppressed else a.severity.upper()
            console.print(f"[bold]{escape(tag)}[/] {escape(a.rule)} \\[{escape(where)}] "
                          f"{escape(a.message)}\n  {escape(a.url)}",
                          highlight=False, soft_wrap=True)
    hook = webhook or (cfg.webhook.url if cfg.webhook else None)
    if hook and shown:
        timeout = cfg.webhook.timeout_s if cfg.webhook else 5.0
        retries = cfg.webhook.retries if cfg.webhook else 3
        try:
            delivery = post_json(hook, payload, timeout_s=timeout, retries=retries)
        except LossboardError as exc:
            _fail(str(exc))
        if not delivery.ok:
            err_console.print(f"[bold red]webhook:[/] {hook} failed after {delivery.attempts} "
                              f"attempt(s): {delivery.error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("check")
def check_cmd(
    candidate: Annotated[str, typer.Option(help="The new model version.")],
    baseline: Annotated[str, typer.Option(help="The version it would replace.")],
    db: DbOption = DEFAULT_DB,
    model: ModelOption = None,
    max_relative_increase: Annotated[float, typer.Option(help="Allowed log-loss increase of the candidate, relative (0.05 = 5% worse).")] = 0.05,
    min_samples: Annotated[int, typer.Option(help="Labelled rows each version needs in the common time range.")] = 1000,
    alpha: Annotated[float, typer.Option(help="Significance level of the one-sided test.")] = 0.05,
    from_: Annotated[Optional[str], typer.Option("--from", help="Only predictions from this UTC time.")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Only predictions before this UTC time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Quality gate for a deploy pipeline: is the candidate version no worse than the baseline?

    Compares both versions' log loss over their common time range (non-inferiority Welch
    test). Exit code 0: pass; 1: fail; 3: insufficient data. Prints why.

    Example: lossboard check --db lossboard.duckdb --model fraud --candidate v2 --baseline v1 --max-relative-increase 0.05
    """
    from dataclasses import asdict

    from lossboard.dashboard.analysis import canary
    from lossboard.dashboard.analysis.filters import Filter

    try:
        flt = Filter(model=model, start=from_, end=to)
        with read_connection(db) as con:
            result = canary.compare_versions(
                con, flt, baseline=baseline, candidate=candidate, min_samples=min_samples,
                max_relative_increase=max_relative_increase, alpha=alpha)
    except LossboardError as exc:
        _fail(str(exc))
    code = {"pass": 0, "fail": 1, "insufficient_data": 3}[result.verdict]
    if as_json:
        _print_json({**asdict(result), "exit_code": code})
    else:
        console.print(f"[bold]{result.verdict.upper()}[/]: {result.reason}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code)


@app.command("metrics")
def metrics_cmd(
    db: DbOption = DEFAULT_DB,
    config: ConfigOption = None,
    port: Annotated[int, typer.Option(help="Port of the /metrics endpoint.")] = 9464,
    addr: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    once: Annotated[bool, typer.Option("--once", help="Print one scrape to stdout and exit.")] = False,
    window: Annotated[str, typer.Option(help="Window of the figures: <N>m, <N>h or <N>d.")] = "24h",
    max_segment_values: Annotated[int, typer.Option(help="Per segment column, the busiest values exported; the rest become one __other__ series.")] = 10,
    drift_: Annotated[bool, typer.Option("--drift/--no-drift", help="Export PSI per feature (the slowest part).")] = True,
) -> None:
    """Serve lossboard's figures in the Prometheus exposition format (computed per scrape).

    Rolling log loss, sample counts, NaN rate, extreme-score fraction, PSI per feature, label
    coverage and SLO burn rates, with model / version / segment labels of bounded cardinality.

    Example: lossboard metrics --db lossboard.duckdb --config lossboard.toml --port 9464
    """
    from lossboard.dashboard import monitoring_config, prometheus

    try:
        cfg = monitoring_config.load(config)
        options = prometheus.MetricsOptions(
            window_minutes=monitoring_config.parse_duration(window, "--window"),
            max_segment_values=max_segment_values, drift=drift_)
        if once:
            typer.echo(prometheus.exposition(db, cfg, options), nl=False)
            return
        if not db.exists():
            _fail(f"database {db} does not exist")
        console.print(f"lossboard metrics on http://{addr}:{port}/metrics (database {db})")
        prometheus.serve(db, cfg, port, addr=addr, options=options)
    except LossboardError as exc:
        _fail(str(exc))


# --------------------------------------------------------------------------- demo / serve
@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write the logs into.")],
    rows: Annotated[int, typer.Option(help="Predictions of the binary model (the 3-class model gets a fifth).")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    format: Annotated[str, typer.Option(help="sample (mixed formats, bad rows, incidents) | parquet | csv (benchmark files)")] = "sample",
) -> None:
    """Generate realistic prediction/label/KPI logs with known incidents (seeded).

    Example: lossboard demo --rows 200000 --out sample_data --seed 7
    """
    from lossboard.ingest import samples

    try:
        manifest = samples.generate(out, rows=rows, seed=seed, formats=format)
    except (LossboardError, ValueError) as exc:
        _fail(str(exc))
    for key, path in manifest.files.items():
        console.print(f"{key}: {path}")
    console.print(f"incidents: {', '.join(i.name for i in manifest.incidents) or 'none'}")


def ensure_sample_database(db: Path, sample_dir: Path = SAMPLE_DIR) -> IngestReport | None:
    """Ingest the bundled sample into ``db`` unless it already holds predictions."""
    from lossboard.dashboard.analysis import health

    if db.exists():
        ensure_database(db)  # upgrades a database written by an older lossboard
        with read_connection(db) as con:
            has_tables = con.execute("SELECT count(*) FROM information_schema.tables "
                                     "WHERE table_name = 'predictions'").fetchone()[0]
            if has_tables and not health.table_counts(con).empty:
                return None
    if not sample_dir.is_dir():
        raise LossboardError(f"sample data not found at {sample_dir}; run from a source checkout "
                             "or ingest your own files with `lossboard ingest`")
    config = load_config(sample_dir / "lossboard.toml")
    return run_ingest([str(sample_dir)], IngestOptions(db_path=db, config=config), show_progress=True)


@app.command("serve")
def serve_cmd(
    db: DbOption = DEFAULT_DB,
    port: Annotated[int, typer.Option(help="Port to serve the dashboard on.")] = 8501,
    sample: Annotated[bool, typer.Option("--sample", help="Ingest the bundled sample data first if the database is missing or empty.")] = False,
    headless: Annotated[bool, typer.Option(help="Do not open a browser window.")] = False,
    config: ConfigOption = None,
) -> None:
    """Open the dashboard in the browser (Streamlit).

    The SLOs, alert rules and maintenance windows the pages show come from --config, else
    $LOSSBOARD_CONFIG, else ./lossboard.toml; with --sample and none of those, the sample's
    own sample_data/lossboard.toml.

    Example: lossboard serve --db lossboard.duckdb --port 8501 --config lossboard.toml
    """
    from lossboard.dashboard import monitoring_config

    env = {**os.environ, "LOSSBOARD_DB": str(db.resolve())}
    if config is not None:
        env[monitoring_config.CONFIG_ENV] = str(config.resolve())
    elif sample and not env.get(monitoring_config.CONFIG_ENV) and not Path("lossboard.toml").exists():
        env[monitoring_config.CONFIG_ENV] = str(SAMPLE_DIR / "lossboard.toml")
    try:
        if config is not None or monitoring_config.CONFIG_ENV in env:
            monitoring_config.load(env.get(monitoring_config.CONFIG_ENV))  # fail here, not per page
        if sample:
            report = ensure_sample_database(db)
            if report is not None:
                _print_summary(report)
        else:
            ensure_database(db)
    except LossboardError as exc:
        _fail(str(exc))
    app_path = Path(__file__).resolve().parent / "app.py"
    # lossboard.dashboard.server is `streamlit` itself, told that app.py uses st.navigation.
    cmd = [sys.executable, "-m", "lossboard.dashboard.server", "run", str(app_path),
           "--server.port", str(port), "--server.headless", str(headless).lower(),
           # No network calls at runtime besides what the user configures. Without a server
           # address, a headless Streamlit asks checkip.amazonaws.com for an "External URL".
           "--browser.gatherUsageStats", "false", "--browser.serverAddress", "localhost",
           "--client.toolbarMode", "minimal",
           "--", "--db", str(db.resolve())]
    used = env.get(monitoring_config.CONFIG_ENV) or ("lossboard.toml" if Path("lossboard.toml").exists()
                                                      else "default rules, no SLOs")
    console.print(f"lossboard dashboard on http://localhost:{port} (database {db}; config {used})",
                  highlight=False, soft_wrap=True)
    server = subprocess.Popen(cmd, env=env)
    # A SIGTERM meant for `lossboard serve` (a supervisor, `kill PID`) must stop Streamlit too,
    # or it keeps the port and keeps reading the database.
    signal.signal(signal.SIGTERM, lambda signum, frame: server.terminate())
    try:
        code = server.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Streamlit as well (same process group): let it shut down cleanly.
        code = server.wait()
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
