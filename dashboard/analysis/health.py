"""Data health: what was ingested, what was quarantined and why, which columns exist.

Read-only queries over the ingest's bookkeeping tables; small results, returned as pandas
frames with documented columns. Used by the CLI (`lossboard runs/quarantine/columns`) and the
dashboard's Data health page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from lossboard.errors import QueryError
from lossboard.ingest.schema import KINDS, REASONS


@dataclass(frozen=True)
class TableCounts:
    """Rows per data table, plus how many labels match a prediction."""

    n_predictions: int
    n_labels: int
    n_labelled_predictions: int
    n_unmatched_labels: int
    n_kpi_points: int
    n_quarantined: int
    n_files: int
    last_file_id: int | None
    models: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.n_predictions == 0 and self.n_labels == 0 and self.n_kpi_points == 0


# Labels without a prediction, counted from the label copy on predictions instead of the
# unmatched_labels anti-join (3 s at 10M rows): a label with a model sits on exactly one
# prediction (its model's), a label without one on every prediction of its request_id, and
# each request_id has at most one model-less label (the ingest keeps it so).
_N_UNMATCHED = """SELECT (SELECT count(*) FROM labels)
  - count(*) FILTER (WHERE label_model IS NOT NULL)
  - count(DISTINCT request_id) FILTER (WHERE label_model IS NULL)
FROM predictions WHERE label IS NOT NULL"""


def has_data(con: duckdb.DuckDBPyConnection) -> bool:
    """True when predictions, labels or KPIs hold a row (what :meth:`TableCounts.empty`
    says, without counting anything)."""
    return bool(con.execute(
        "SELECT EXISTS (SELECT 1 FROM predictions) OR EXISTS (SELECT 1 FROM labels) "
        "OR EXISTS (SELECT 1 FROM kpis)").fetchone()[0])


def table_counts(con: duckdb.DuckDBPyConnection) -> TableCounts:
    """Row counts of every data table (one query each; cheap, DuckDB keeps counts)."""
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    return TableCounts(
        n_predictions=one("SELECT count(*) FROM predictions"),
        n_labels=one("SELECT count(*) FROM labels"),
        n_labelled_predictions=one("SELECT count(*) FROM labelled"),
        n_unmatched_labels=one(_N_UNMATCHED),
        n_kpi_points=one("SELECT count(*) FROM kpis"),
        n_quarantined=one("SELECT count(*) FROM quarantine"),
        n_files=one("SELECT count(*) FROM ingest_runs WHERE status = 'ok'"),
        last_file_id=one("SELECT max(file_id) FROM ingest_runs"),
        models=tuple(r[0] for r in con.execute(
            "SELECT DISTINCT model FROM predictions ORDER BY model").fetchall()),
    )


def records(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """An executed query's rows as dicts of plain Python values: NULL is None, never NaN (a
    pandas frame turns NULL into NaN, which json.dumps prints as the invalid token NaN)."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


#: The ingest_runs columns Data health shows, in order (ingest_run_records has them all).
INGEST_RUN_COLUMNS = ("file_id", "run_id", "path", "kind", "status", "n_read", "n_accepted",
                      "n_duplicate", "n_quarantined", "n_unmatched_labels", "finished_at",
                      "seconds_total", "message")


def ingest_run_records(con: duckdb.DuckDBPyConnection, limit: int | None = 100
                       ) -> list[dict[str, Any]]:
    """Every column of the newest ``limit`` ingest_runs rows (None: all), newest first:
    :data:`INGEST_RUN_COLUMNS`, then n_label_before_prediction, content_hash, mapping (JSON
    text), started_at, seconds_read, seconds_merge."""
    return records(con.execute(
        f"""SELECT {", ".join(INGEST_RUN_COLUMNS)}, n_label_before_prediction, content_hash,
                   mapping, started_at, seconds_read, seconds_merge
            FROM ingest_runs ORDER BY file_id DESC LIMIT ?""", [limit]))


def ingest_runs(con: duckdb.DuckDBPyConnection, limit: int = 100) -> pd.DataFrame:
    """The latest ``limit`` ingest_runs rows, newest first, :data:`INGEST_RUN_COLUMNS`."""
    return con.execute(
        f"SELECT {', '.join(INGEST_RUN_COLUMNS)} FROM ingest_runs ORDER BY file_id DESC LIMIT ?",
        [limit],
    ).df()


def quarantine_sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The source files with quarantined rows, by path as ingested."""
    return [r[0] for r in con.execute(
        "SELECT DISTINCT source_file FROM quarantine ORDER BY source_file").fetchall()]


def quarantine_records(con: duckdb.DuckDBPyConnection, reason: str | None = None,
                       files: list[str] | None = None, limit: int | None = 50
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-(kind, reason) counts, rows) of the quarantined rows of ``reason`` and ``files``
    (None: any); the counts cover every selected row, the rows at most ``limit`` (None: all),
    oldest file first. Rows: file_id, source_file, kind, row_number, reason, detail, raw (JSON
    text, PII already hashed at ingest)."""
    if reason is not None and reason not in REASONS:
        raise QueryError(f"unknown reason {reason!r}; reasons are: {', '.join(REASONS)}")
    params = {"reason": reason, "files": files}
    where = ("($reason IS NULL OR reason = $reason) "
             "AND ($files IS NULL OR list_contains($files, source_file))")
    by_reason = records(con.execute(
        f"""SELECT kind, reason, count(*) AS n_rows, count(DISTINCT file_id) AS n_files
            FROM quarantine WHERE {where}
            GROUP BY kind, reason ORDER BY n_rows DESC, kind, reason""", params))
    rows = records(con.execute(
        f"""SELECT file_id, source_file, kind, row_number, reason, detail,
                   CAST(raw AS VARCHAR) AS raw
            FROM quarantine WHERE {where}
            ORDER BY file_id, row_number LIMIT $limit""", {**params, "limit": limit}))
    return by_reason, rows


def quarantine_by_reason(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Quarantined rows per (kind, reason). Columns: kind, reason, n_rows, n_files."""
    by_reason, _ = quarantine_records(con, limit=0)
    return pd.DataFrame(by_reason, columns=["kind", "reason", "n_rows", "n_files"])


def quarantined_rows(con: duckdb.DuckDBPyConnection, reason: str | None = None,
                     source_file: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Quarantined rows, optionally of one reason / one file, oldest file first (the rows of
    :func:`quarantine_records`, as a frame)."""
    _, rows = quarantine_records(con, reason, None if source_file is None else [source_file],
                                 limit)
    return pd.DataFrame(rows, columns=["file_id", "source_file", "kind", "row_number", "reason",
                                       "detail", "raw"])


def registered_columns(con: duckdb.DuckDBPyConnection, kind: str | None = None) -> pd.DataFrame:
    """The column registry. Columns: kind, name, role, sql_type, role_source, first_file_id."""
    if kind is not None and kind not in KINDS:
        raise QueryError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    return con.execute(
        """SELECT kind, name, role, sql_type, role_source, first_file_id FROM columns
           WHERE $kind IS NULL OR kind = $kind ORDER BY kind, name""",
        {"kind": kind},
    ).df()


def unmatched_labels(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    """Labels with no prediction yet (the prediction may still arrive), oldest first.

    Columns: model, request_id, label, label_ts."""
    return con.execute(
        """SELECT model, request_id, label, label_ts FROM unmatched_labels
           ORDER BY label_ts, request_id LIMIT ?""",
        [limit],
    ).df()
