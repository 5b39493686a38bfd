"""Find the files a user pointed at and read them with DuckDB's own readers.

Supported: CSV, TSV, Parquet, JSON lines (and JSON arrays), each optionally gzip-compressed
(Parquet compresses internally); a single file, a glob, or a directory (searched recursively,
hive-partitioned ``key=value/`` folders become columns). No hand-written parsers: DuckDB's
``read_csv`` / ``read_parquet`` / ``read_json`` do the parsing.

CSV is read with every column as text (``all_varchar``) so that one odd value deep in a file
becomes a quarantined row with a reason instead of failing the whole file; lossboard then
types the columns itself (:mod:`lossboard.ingest.validate`), using the types DuckDB's sniffer
guessed. Lines the CSV reader cannot split into the header's columns are captured with
``store_rejects`` and quarantined as ``malformed_row``.

Parquet is typed already and its reader can number rows in file order
(``file_row_number``), so the ingest reads it in place through a view (:func:`raw_view`)
instead of copying it into a table first.
"""

from __future__ import annotations

import glob as globlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lossboard.errors import IngestError

_FORMATS: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv"), (".csv", "csv"), (".tsv.gz", "tsv"), (".tsv", "tsv"),
    (".tab.gz", "tsv"), (".tab", "tsv"), (".txt.gz", "csv"),
    (".parquet", "parquet"), (".pq", "parquet"),
    (".jsonl.gz", "json"), (".jsonl", "json"), (".ndjson.gz", "json"), (".ndjson", "json"),
    (".json.gz", "json"), (".json", "json"),
    # zstd: DuckDB's CSV and JSON readers decompress it by the file's extension, as gzip.
    (".csv.zst", "csv"), (".tsv.zst", "tsv"), (".jsonl.zst", "json"), (".ndjson.zst", "json"),
    (".json.zst", "json"),
)
SUPPORTED_SUFFIXES = tuple(s for s, _ in _FORMATS)
_HIVE_PART = re.compile(r"^[^=/]+=[^/]*$")

#: The column of the ``raw`` view (:func:`raw_view`) numbering a Parquet file's rows from 0.
FILE_ROW_COLUMN = "_lb_file_row"

#: Names of the temp tables DuckDB's CSV reader fills with lines it could not parse.
REJECTS_TABLE = "lb_rejects"
REJECTS_SCAN_TABLE = "lb_rejects_scan"


@dataclass(frozen=True)
class SourceFile:
    """One file to ingest, with the reader that will read it."""

    path: Path
    format: str  # csv | tsv | parquet | json
    hive: bool

    @property
    def label(self) -> str:
        return str(self.path)


def detect_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def _is_data_file(path: Path) -> bool:
    return (path.is_file() and not path.name.startswith((".", "_"))
            and detect_format(path) is not None)


#: Files that sit beside logs and are plainly not logs (a README, a lossboard.toml, a
#: checksum): not read, and not listed as "not read" either.
_NOT_LOGS = (".md", ".rst", ".toml", ".yaml", ".yml", ".ini", ".cfg", ".crc", ".sha256",
             ".md5", ".py", ".sh")


def _is_unknown(path: Path) -> bool:
    """A file a directory or glob holds that is not hidden, of no type lossboard reads, and
    not one of :data:`_NOT_LOGS`."""
    return (path.is_file() and not path.name.startswith((".", "_"))
            and detect_format(path) is None and not path.name.lower().endswith(_NOT_LOGS))


def expand(target: str | Path, ignored: list[Path] | None = None) -> list[SourceFile]:
    """The files ``target`` names: a file, a glob pattern, or a directory (recursive).

    Files are returned sorted by path so that ingest order (and so which of two conflicting
    rows is kept) does not depend on the file system's listing order. Files of a directory
    or glob that are of no known type (not hidden: ``_SUCCESS`` and ``.crc`` files are
    bookkeeping) are appended to ``ignored``, so that the user hears of them.
    """
    text = str(target)
    path = Path(text)
    if path.is_dir():
        found = sorted(path.rglob("*"))
        files = [p for p in found if _is_data_file(p)]
        if ignored is not None:
            ignored.extend(p for p in found if _is_unknown(p))
        root = path
        if not files:
            raise IngestError(f"{text}: directory holds no files lossboard can read "
                              f"(supported: {', '.join(SUPPORTED_SUFFIXES)})")
    elif any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        files = [p for p in found if _is_data_file(p)]
        if ignored is not None:
            ignored.extend(p for p in found if _is_unknown(p))
        root = Path(text.split("*")[0].split("?")[0].split("[")[0] or ".")
        if not files:
            raise IngestError(f"{text}: the pattern matches no readable file")
    elif path.is_file():
        if detect_format(path) is None:
            raise IngestError(f"{text}: unknown file type; lossboard reads "
                              f"{', '.join(SUPPORTED_SUFFIXES)}")
        files, root = [path], path.parent
    else:
        raise IngestError(f"{text}: no such file or directory")
    out = []
    for f in files:
        try:
            rel_parts = f.parent.relative_to(root if root.is_dir() else root.parent).parts
        except ValueError:
            rel_parts = f.parent.parts
        hive = any(_HIVE_PART.match(part) for part in rel_parts)
        out.append(SourceFile(path=f, format=detect_format(f) or "csv", hive=hive))
    return out


def reader_sql(src: SourceFile, *, typed: bool = False) -> str:
    """A DuckDB table-function call reading ``src``; the path is bound as parameter ``$path``.

    ``typed=False`` (the ingest read) keeps CSV values as text and records unparsable lines;
    ``typed=True`` (the sniff) lets DuckDB guess column types.
    """
    hive = ", hive_partitioning = true" if src.hive else ""
    if src.format in ("csv", "tsv"):
        delim = ", delim = '\\t'" if src.format == "tsv" else ""
        if typed:
            return f"read_csv($path, header = true{delim}{hive}, ignore_errors = true)"
        return (f"read_csv($path, header = true, all_varchar = true{delim}{hive}, "
                f"store_rejects = true, rejects_table = '{REJECTS_TABLE}', "
                f"rejects_scan = '{REJECTS_SCAN_TABLE}')")
    if src.format == "parquet":
        return f"read_parquet($path{hive})"
    return f"read_json($path, format = 'auto'{hive})"


def can_read_in_place(src: SourceFile, columns: list[str]) -> bool:
    """Whether the ingest can read ``src`` through :func:`raw_view` instead of copying it.

    Parquet only: its columns are typed already and its reader numbers rows in file order.
    A file with its own column named like the row number is copied as before.
    """
    return src.format == "parquet" and not {"file_row_number", FILE_ROW_COLUMN} & set(columns)


def raw_view(con: duckdb.DuckDBPyConnection, src: SourceFile, name: str = "raw") -> str:
    """Create the view ``name`` over a Parquet file: its columns plus :data:`FILE_ROW_COLUMN`,
    the row's position in the file. Returns the name of that ordinal column.

    A relation made by the Python API carries the path as a value, not as SQL text.
    """
    kwargs = {"hive_partitioning": True} if src.hive else {}
    rel = con.read_parquet(str(src.path), file_row_number=True, **kwargs)
    rel.project(f"* EXCLUDE (file_row_number), file_row_number AS {FILE_ROW_COLUMN}"
                ).create_view(name, replace=True)
    return FILE_ROW_COLUMN


def describe(con: duckdb.DuckDBPyConnection, src: SourceFile) -> list[tuple[str, str]]:
    """Column names and DuckDB's guessed types, without reading the whole file.

    Raises :class:`IngestError` when DuckDB cannot read the file at all.
    """
    if src.path.stat().st_size == 0:
        # DuckDB reads an empty CSV as one column named column0 and an empty JSON file as
        # one named json, and the messages that followed named those.
        raise IngestError(f"{src.label}: the file is empty (0 bytes); there is nothing to ingest")
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader_sql(src, typed=True)}",
                           {"path": str(src.path)}).fetchall()
    except duckdb.Error as exc:
        raise IngestError(f"{src.label}: cannot be read as {src.format.upper()}: "
                          f"{reader_error(exc)}") from exc
    return [(r[0], r[1]) for r in rows]


def reader_error(exc: BaseException) -> str:
    """A reader's error in one line: the first, and for a CSV error the cause below it.

    DuckDB's CSV errors say on which line on their first line, then repeat that line, then
    give the cause ("Maximum line size of 2000000 bytes exceeded"). Keep the cause, never the
    line itself, which may be huge or hold PII."""
    text = _first_line(exc)
    if "CSV Error on Line" in text:
        cause = next((ln.strip() for ln in str(exc).strip().splitlines()[1:]
                      if ln.strip() and not ln.startswith(("Original Line:", "Possible Solution:",
                                                           " ", "LINE "))), None)
        if cause:
            text = f"{text}: {cause}"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
