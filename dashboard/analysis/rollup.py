"""Hourly sums kept beside the rows, so that a cube reads whole hours instead of scanning them.

The ``rollup`` table holds, per model, UTC hour, model version and combination of segment
values, exactly the sums of :func:`cube.fine_sql` (docs/metrics.md, "The hourly rollup"). A cube
(:func:`cube.build`) takes every whole hour of its span from here and reads from the rows
only the hours a window's end, a split point or the label maturity cuts: the same sums, up to
the order of floating-point addition (tests/analysis/test_rollup.py).

Who keeps it current:

* the ingest, in each file's own transaction, records the time range its rows touched in
  ``rollup_dirty`` (new predictions; predictions that received a label). So a crash at any
  point leaves either no change or a dirty mark, never stale sums that look current;
* :func:`refresh`, run by ``lossboard ingest`` once its files are in (and by ``lossboard
  rollup``), recomputes the dirty hours of each model in one transaction and clears the marks;
  a model whose sums were computed by other code, or for other segment columns (a
  ``signature`` mismatch), is recomputed whole.

Readers (:func:`source`) use the rollup of a model only when it has no dirty mark and its
signature matches; otherwise the cube scans the rows as before, so a stale rollup can make a
page slower, never wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from lossboard.dashboard.analysis.base import ModelInfo, model_info
from lossboard.dashboard.analysis.base import segment_columns as registered_segments
from lossboard.dashboard.analysis.filters import Filter
from lossboard.sql import quote_ident

#: Bump when the rollup's meaning changes in a way its SQL text does not show.
FORMAT = 1
#: Readers use the rollup when it is current (False: always scan the rows; benchmarks and
#: tests compare the two ways in one process).
ENABLED = True
_H = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: A model's rollup is kept only when it has at most this fraction of the model's rows (many
#: segment value combinations make it as large as the rows, and then no faster to read).
MAX_FRACTION = 0.25
#: ... or has at most this many rows (a small database, where size does not matter).
_SMALL = 1000

STATE_DDL = """CREATE TABLE IF NOT EXISTS rollup_state (
  model VARCHAR PRIMARY KEY,
  signature VARCHAR NOT NULL,
  usable BOOLEAN NOT NULL,
  n_rows BIGINT NOT NULL,
  refreshed_at TIMESTAMPTZ NOT NULL
)"""


def _us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _floor(us: int) -> int:
    return us - us % _H


def _ceil(us: int) -> int:
    return -((-us) // _H) * _H


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name IN ('rollup', 'rollup_state', 'rollup_dirty')"
    ).fetchall()}


def _fine(con: duckdb.DuckDBPyConnection, info: ModelInfo, segment_columns: Sequence[str],
          start: datetime | None = None, end: datetime | None = None
          ) -> tuple[str, dict[str, object]]:
    from lossboard.dashboard.analysis import cube

    return cube.fine_sql(con, Filter(model=info.model, start=start, end=end), info,
                         segment_columns)


def signature(con: duckdb.DuckDBPyConnection, info: ModelInfo,
              segment_columns: Sequence[str]) -> str:
    """What a model's rollup was computed with: the aggregate's SQL text (parameter names,
    not values), the model's classes and the segment columns."""
    sql, _ = _fine(con, info, segment_columns, _EPOCH, _at(_H))
    text = json.dumps([FORMAT, sql, list(info.classes), list(segment_columns)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _store_sql(sql: str, segment_columns: Sequence[str]) -> str:
    """``model, version, seg, slot, sums...`` from a :func:`cube.fine_sql` query."""
    segs = [f"_lb_seg{i}" for i in range(len(segment_columns))]
    seg = ("[" + ", ".join(quote_ident(s) for s in segs) + "]::VARCHAR[]" if segs
           else "[]::VARCHAR[]")
    exclude = ", ".join(quote_ident(s) for s in ["version", *segs])
    return (f"SELECT $ru_model AS model, version, {seg} AS seg, * EXCLUDE ({exclude}) "
            f"FROM ({sql})")


# --------------------------------------------------------------------------- reading
def current(con: duckdb.DuckDBPyConnection, info: ModelInfo,
            segment_columns: Sequence[str]) -> bool:
    """Whether readers may take ``info.model``'s sums from the rollup: it exists, was computed
    by this code for these segment columns, is small enough to help, and no ingest changed
    its rows since (no dirty mark)."""
    if not ENABLED or len(_tables(con)) < 3:
        return False
    row = con.execute(
        "SELECT signature, usable, (SELECT count(*) FROM rollup_dirty WHERE model = $m) "
        "FROM rollup_state WHERE model = $m", {"m": info.model}).fetchone()
    return (row is not None and row[1] and not row[2]
            and row[0] == signature(con, info, segment_columns))


def source(con: duckdb.DuckDBPyConnection, base: Filter, info: ModelInfo,
           segment_columns: Sequence[str], points: Sequence[int]
           ) -> tuple[str, dict[str, object]] | None:
    """The rows of :func:`cube.fine_sql` for ``base`` cut at ``points``: whole hours from the
    rollup, cut hours from the predictions. None when the rollup cannot serve (missing, stale,
    another signature, a segment filter on a column it does not hold, no time range)."""
    from lossboard.dashboard.analysis import cube

    if base.start is None or base.end is None or not current(con, info, segment_columns):
        return None
    if any(c not in segment_columns for c, _ in base.segments):
        return None
    # Rows lie in [lo, hi): the label maturity keeps those before end - maturity (Filter.where).
    lo, hi = _us(base.start), _us(base.end)
    if base.maturity_hours is not None:
        hi -= round(base.maturity_hours * _H)
    # The hours read from the rows: those that a boundary off the hour cuts.
    cut = {_floor(p) for p in (*points, lo, hi) if p % _H and lo <= p <= hi}
    # The model, versions and segment values as conditions on the rollup's own columns (a
    # segment column may be called like one of them, so Filter.where's names cannot be used).
    conds = ["model = $ru_model", "slot >= $ru_lo", "slot < $ru_hi",
             "NOT list_contains($ru_cut, slot)"]
    params: dict[str, object] = {"ru_model": info.model, "ru_lo": _ceil(lo),
                                 "ru_hi": _floor(hi), "ru_cut": sorted(cut)}
    if base.versions:
        conds.append("list_contains($ru_versions, version)")
        params["ru_versions"] = list(base.versions)
    by_column: dict[str, list[str]] = {}
    for column, value in base.segments:
        by_column.setdefault(column, []).append(value)
    for k, (column, values) in enumerate(sorted(by_column.items())):
        conds.append(f"list_contains($ru_seg{k}, seg[{list(segment_columns).index(column) + 1}])")
        params[f"ru_seg{k}"] = values
    segs = "".join(f", seg[{i + 1}] AS _lb_seg{i}" for i in range(len(segment_columns)))
    stored = (f"SELECT version{segs}, * EXCLUDE (model, version, seg) FROM rollup "
              f"WHERE {' AND '.join(conds)}")
    if not cut:
        return stored, params
    rows_sql, rows_params = cube.fine_sql(con, base, info, segment_columns, points, sorted(cut))
    params.update(rows_params)
    return f"{stored}\nUNION ALL\nSELECT * FROM ({rows_sql})", params


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh` did: models recomputed whole or by their dirty hours."""

    whole: tuple[str, ...]
    partial: tuple[str, ...]
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"whole": list(self.whole), "partial": list(self.partial),
                "seconds": round(self.seconds, 3)}


def _used(sql: str, params: dict[str, object]) -> dict[str, object]:
    # DuckDB refuses parameters a statement does not use: bind only those that appear.
    return {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> None:
    con.execute(sql, _used(sql, params))


def _columns_of(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> list[str]:
    query = f"SELECT * FROM ({sql}) LIMIT 0"
    return [d[0] for d in con.execute(query, _used(query, params)).description]


def refresh(con: duckdb.DuckDBPyConnection, *, rebuild: bool = False) -> Refreshed:
    """Bring the rollup of every model up to date on ``con`` (read-write, the database itself):
    dirty hours recomputed, models with another signature (or all, with ``rebuild``)
    recomputed whole; one transaction per model."""
    from lossboard.ingest.schema import ROLLUP_DIRTY_DDL

    t0 = time.perf_counter()
    con.execute(STATE_DDL)
    con.execute(ROLLUP_DIRTY_DDL)  # the ingest's (schema 3); a database of schema 2 lacks it
    segment_columns = registered_segments(con)
    models = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
    whole: list[str] = []
    partial: list[str] = []
    for model in models:
        info = model_info(con, model)
        sig = signature(con, info, segment_columns)
        state = con.execute("SELECT signature FROM rollup_state WHERE model = ?", [model]).fetchone()
        dirty = con.execute("SELECT lo, hi FROM rollup_dirty WHERE model = ? ORDER BY lo",
                            [model]).fetchall()
        if not rebuild and state is not None and state[0] == sig and not dirty:
            continue
        again = rebuild or state is None or state[0] != sig
        sql, params = _fine(con, info, segment_columns)
        store = _store_sql(sql, segment_columns)
        params = {**params, "ru_model": model}
        con.execute("BEGIN TRANSACTION")
        try:
            _ensure_table(con, store, params)
            if again:
                con.execute("DELETE FROM rollup WHERE model = ?", [model])
                _run(con, f"INSERT INTO rollup {store}", params)
                whole.append(model)
            else:
                for lo, hi in _merge_ranges(dirty):
                    sql, params = _fine(con, info, segment_columns, _at(lo), _at(hi))
                    con.execute("DELETE FROM rollup WHERE model = $m AND slot >= $lo AND slot < $hi",
                                {"m": model, "lo": lo, "hi": hi})
                    _run(con, f"INSERT INTO rollup {_store_sql(sql, segment_columns)}",
                         {**params, "ru_model": model})
                partial.append(model)
            n_rows, n_predictions = con.execute(
                "SELECT (SELECT count(*) FROM rollup WHERE model = $m), "
                "(SELECT count(*) FROM predictions WHERE model = $m)", {"m": model}).fetchone()
            usable = n_rows <= MAX_FRACTION * n_predictions or n_rows <= _SMALL
            con.execute("DELETE FROM rollup_dirty WHERE model = ?", [model])
            con.execute("DELETE FROM rollup_state WHERE model = ?", [model])
            con.execute("INSERT INTO rollup_state VALUES (?, ?, ?, ?, now())",
                        [model, sig, usable, n_rows])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return Refreshed(tuple(whole), tuple(partial), time.perf_counter() - t0)


def _ensure_table(con: duckdb.DuckDBPyConnection, store: str, params: dict[str, object]) -> None:
    """Create ``rollup`` for the current sums; one with other columns (an older lossboard's)
    is dropped with every model's state, so each model is recomputed whole."""
    wanted = _columns_of(con, store, params)
    have = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'rollup' ORDER BY column_index").fetchall()]
    if have == wanted:
        return
    if have:
        con.execute("DROP TABLE rollup")
        con.execute("DELETE FROM rollup_state")
    _run(con, f"CREATE TABLE rollup AS {store} LIMIT 0", params)


def _merge_ranges(dirty: Sequence[tuple[datetime, datetime]]) -> list[tuple[int, int]]:
    """The dirty ranges as whole hours (``[lo, hi)`` epoch microseconds), overlaps merged."""
    out: list[list[int]] = []
    for lo, hi in sorted((_floor(_us(a)), _floor(_us(b)) + _H) for a, b in dirty):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def refresh_file(db_path: str | Path, timeout_s: float, *, rebuild: bool = False) -> Refreshed:
    """:func:`refresh` on the database file, waiting while a reader holds it."""
    from lossboard.db import write_connection

    with write_connection(db_path, timeout_s) as con:
        return refresh(con, rebuild=rebuild)


def status(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Per model: whether readers use its rollup now, its rows, when it was refreshed, and the
    time ranges waiting for a refresh."""
    tables = _tables(con)
    models = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
    columns = registered_segments(con)
    out = []
    for model in models:
        state = (con.execute("SELECT signature, usable, n_rows, refreshed_at FROM rollup_state "
                             "WHERE model = ?", [model]).fetchone()
                 if "rollup_state" in tables else None)
        dirty = (con.execute("SELECT count(*) FROM rollup_dirty WHERE model = ?", [model]).fetchone()[0]
                 if "rollup_dirty" in tables else 0)
        info = model_info(con, model)
        same_code = state is not None and state[0] == signature(con, info, columns)
        out.append({"model": model, "in_use": current(con, info, columns),
                    "rows": None if state is None else int(state[2]),
                    "refreshed_at": None if state is None else state[3].isoformat(),
                    "dirty_ranges": int(dirty), "current_signature": same_code,
                    "small_enough": None if state is None else bool(state[1])})
    return out
