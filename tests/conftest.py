"""Shared fixtures and helpers for the ingest and CLI tests.

Every test builds its own small DuckDB file in ``tmp_path``; nothing is shared between tests
except read-only module fixtures that say so. Helpers are plain functions (import them with
``from conftest import ...``) so that tests read like what a user would do: write a file,
ingest it, look at the tables.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lossboard.ingest.load import FileResult, IngestOptions, IngestReport, ingest
from lossboard.ingest.mapping import Config, MappingOptions, load_config

#: The instant most hand-made rows are scored at; labels in tests come a day later.
TS = "2026-01-15T10:00:00Z"


def write_text(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented, leading newline dropped) to ``tmp_path / name``; dirs created."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def write_csv(tmp_path: Path, name: str, text: str) -> Path:
    """A CSV (or TSV, JSON lines: the name decides) file from a literal, dedented block."""
    return write_text(tmp_path, name, text)


def write_parquet(tmp_path: Path, name: str, data: pa.Table | dict[str, Any]) -> Path:
    """A Parquet file from a pyarrow table or a dict of columns (pyarrow infers the types)."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    table = data if isinstance(data, pa.Table) else pa.table(data)
    pq.write_table(table, path)
    return path


def run_ingest(db_path: Path, targets: list[str | Path] | str | Path, *,
               config: Config | Path | None = None, **flags: Any) -> IngestReport:
    """``ingest(targets, IngestOptions(...))`` with ``flags`` as :class:`MappingOptions` fields.

    ``config`` is a loaded :class:`Config` or a path to a lossboard.toml; without it no config
    is used (not even ./lossboard.toml, so the tests do not depend on the working directory).
    """
    if not isinstance(targets, list):
        targets = [targets]
    if config is None:
        cfg = Config(path=None)
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    options = IngestOptions(db_path=Path(db_path), flags=MappingOptions(**flags), config=cfg,
                            lock_timeout_s=10.0, memory_limit="256MB", threads=2)
    return ingest([str(t) for t in targets], options)


def only_file(report: IngestReport) -> FileResult:
    """The one file of a one-file ingest (fails the test if there were more or fewer)."""
    assert len(report.files) == 1, [f.path for f in report.files]
    return report.files[0]


def ingest_one(db_path: Path, target: str | Path, **kwargs: Any) -> FileResult:
    """Ingest one file and return its result, asserting it was not rejected."""
    result = only_file(run_ingest(db_path, target, **kwargs))
    assert result.status == "ok", result.message
    return result


def query(db_path: Path, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` over a short read-only connection in UTC (how the dashboard reads)."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    finally:
        con.close()


def scalar(db_path: Path, sql: str, params: Any = None) -> Any:
    return query(db_path, sql, params)[0][0]


def quarantined(db_path: Path, kind: str | None = None) -> list[tuple[int, str, str]]:
    """(row_number, reason, detail) of quarantined rows, in file then row order."""
    rows = query(db_path, "SELECT row_number, reason, detail FROM quarantine "
                          "WHERE $kind IS NULL OR kind = $kind ORDER BY file_id, row_number",
                 {"kind": kind})
    return [(r[0], r[1], r[2]) for r in rows]


def assert_accounted(result: FileResult) -> None:
    """The README's identity: every row read is accepted, duplicate or quarantined."""
    assert result.n_read == result.n_accepted + result.n_duplicate + result.n_quarantined
    assert result.n_quarantined == sum(result.reasons.values())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database goes; the file does not exist yet (ingest creates it)."""
    return tmp_path / "lossboard.duckdb"


@pytest.fixture
def cli() -> CliRunner:
    """Typer's runner; ``result.stdout`` / ``result.stderr`` are kept apart (Click >= 8.2)."""
    return CliRunner()
