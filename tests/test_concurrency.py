"""Readers and one writer take turns on the database file (lossboard.db, lossboard.ingest.load).

DuckDB locks the file per process, so these tests use real processes: a ``lossboard ingest``
writer, a reader process polling through :func:`lossboard.db.read_connection`, and a tiny
"holder" process that keeps a connection open to play a busy writer or a reader that never lets
go. docs/concurrency.md reports the figures these scenarios measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from lossboard.db import read_connection
from lossboard.errors import DatabaseBusyError
from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

pytestmark = pytest.mark.slow

# 400k rows of CSV take about 1 s to ingest here (2 cores) while a reader polls.
N_FILES = 4
ROWS_PER_FILE = 400_000
N_EXISTING = 1_000

# Polls read_connection until told to stop; one JSON line per read: start, end, count.
READER = """
import json, sys, time
from pathlib import Path
from lossboard.db import read_connection

db, out, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with open(out, "w") as fh:
    while not stop.exists():
        t0 = time.time()
        with read_connection(db, timeout_s=30) as con:
            n = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        fh.write(json.dumps([t0, time.time(), n]) + "\\n")
        fh.flush()
        time.sleep(0.02)
"""

# Opens the database (read-write, or read-only with "ro"), says so, and holds it.
HOLDER = """
import sys, time
import duckdb

con = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == "ro")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def write_predictions(path: Path, n_rows: int, first_id: int) -> Path:
    con = duckdb.connect()
    try:
        con.execute(f"""COPY (
            SELECT 'r' || (i + {first_id}) AS request_id,
                   TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i % 86400) AS ts,
                   ((i * 7919) % 10007) / 10007.0 AS p
            FROM range({n_rows}) t(i)) TO '{path}' (HEADER)""")
    finally:
        con.close()
    return path


def ingest_cmd(db: Path, *paths: Path) -> list[str]:
    return [sys.executable, "-m", "lossboard.dashboard.cli", "ingest", "--db", str(db),
            *map(str, paths), "--model", "m", "--model-version", "v1", "--json"]


def flags() -> MappingOptions:
    return MappingOptions(kind="predictions", model="m", model_version="v1")


@pytest.fixture
def seeded_db(tmp_path: Path) -> Path:
    db = tmp_path / "lb.duckdb"
    small = write_predictions(tmp_path / "small.csv", N_EXISTING, 0)
    report = ingest([small], IngestOptions(db_path=db, flags=flags()))
    assert report.files[0].n_accepted == N_EXISTING
    return db


def hold(db: Path, seconds: float, mode: str = "rw") -> subprocess.Popen[str]:
    """A process holding ``db`` open; returns once the connection is open."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(seconds), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    return proc


def count_predictions(db: Path) -> int:
    with read_connection(db) as con:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]


def test_reader_sees_whole_files_while_an_ingest_runs(seeded_db: Path, tmp_path: Path) -> None:
    files = [write_predictions(tmp_path / f"part{i}.csv", ROWS_PER_FILE, N_EXISTING + i * ROWS_PER_FILE)
             for i in range(N_FILES)]
    out, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(seeded_db), str(out), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_text().count("\n") >= 3):
            assert reader.poll() is None and time.monotonic() < deadline, "the reader did not start"
            time.sleep(0.05)
        started = time.time()
        writer = subprocess.run(ingest_cmd(seeded_db, *files), capture_output=True, text=True,
                                timeout=120)
        finished = time.time()
        time.sleep(0.2)  # a few reads after the last commit
    finally:
        stop.touch()
        reader.wait(timeout=60)
    assert reader.returncode == 0
    assert writer.returncode == 0, writer.stderr
    results = json.loads(writer.stdout)["files"]
    assert [r["status"] for r in results] == ["ok"] * N_FILES
    assert [r["n_accepted"] for r in results] == [ROWS_PER_FILE] * N_FILES

    reads = [json.loads(line) for line in out.read_text().splitlines()]
    totals = [N_EXISTING + k * ROWS_PER_FILE for k in range(N_FILES + 1)]
    counts = [n for _, _, n in reads]
    # None or all of a file, never part of one; and never going back.
    assert set(counts) <= set(totals), sorted(set(counts) - set(totals))
    assert counts == sorted(counts)
    assert counts[-1] == totals[-1]

    during = [(t0, t1, n) for t0, t1, n in reads if started <= t1 <= finished]
    ingest_s = finished - started
    # Reads kept succeeding through the ingest, between the files' merges (34-49 reads and 4-5
    # distinct counts in a 4.6-6.4 s ingest, measured: docs/concurrency.md)...
    assert len(during) >= 20, (len(during), ingest_s)
    # At least one read landed between two files' merges: a count strictly between the
    # totals before and after the ingest. (Asking for two such states failed once in a full
    # parallel test run: under load, one backoff step of a read blocked by a merge can outlast
    # the next file's staging, the window in which a read gets through.)
    between = {n for _, _, n in during if totals[0] < n < totals[-1]}
    assert between, ("the reader saw no state between two files", sorted({n for *_, n in during}))
    # ...and no single read waited longer than the mechanism allows: one merge (each file's,
    # as ingest_runs recorded it) plus one backoff step (at most 1 s x 1.5 jitter), with
    # 0.5 s for the read itself and scheduling (0.68-0.92 s measured: docs/concurrency.md);
    # never the whole ingest. (Half the ingest, the bound before, failed on a 3.1 s ingest on
    # a loaded machine: 1.74 s, one slow merge plus a backoff step.) The last file's merge is
    # followed at once by the rollup's refresh, which holds the file too: a read that waited
    # through that merge may wait through the refresh as well.
    with read_connection(seeded_db) as con:
        longest_merge_s = con.execute(
            "SELECT max(seconds_merge) FROM (SELECT seconds_merge FROM ingest_runs "
            "ORDER BY started_at DESC LIMIT ?)", [N_FILES]).fetchone()[0]
    refresh_s = json.loads(writer.stdout)["rollup"]["seconds"]
    longest_wait_s = max(t1 - t0 for t0, t1, _ in during)
    assert longest_wait_s < min(ingest_s, longest_merge_s + refresh_s + 1.5 + 0.5), (
        longest_wait_s, longest_merge_s, refresh_s, ingest_s)


def test_read_connection_waits_for_the_writer(seeded_db: Path) -> None:
    holder = hold(seeded_db, 1.5)
    t0 = time.monotonic()
    with read_connection(seeded_db, timeout_s=20) as con:
        n = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    waited_s = time.monotonic() - t0
    assert holder.wait(timeout=10) == 0
    assert n == N_EXISTING
    assert 1.0 <= waited_s < 10, waited_s


def test_read_connection_gives_up_with_a_clear_message(seeded_db: Path) -> None:
    holder = hold(seeded_db, 60)
    try:
        t0 = time.monotonic()
        with pytest.raises(DatabaseBusyError) as info:
            with read_connection(seeded_db, timeout_s=0.5):
                pass
        waited_s = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(timeout=10)
    message = str(info.value)
    assert str(seeded_db) in message
    assert "locked by another process" in message
    assert "0.5 s" in message
    assert "--lock-timeout" in message
    # Backoff sleeps at most 1.5 s past the deadline (1 s cap with up to 1.5x jitter); 0.5 s
    # of timeout sees delays of 20-160 ms, so the wait ends well before 2 s.
    assert 0.5 <= waited_s < 2.0, waited_s
    assert count_predictions(seeded_db) == N_EXISTING


def test_ingest_waits_for_a_reader_then_merges(seeded_db: Path, tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "more.csv", 1_000, N_EXISTING)
    holder = hold(seeded_db, 1.5, "ro")
    t0 = time.monotonic()
    report = ingest([path], IngestOptions(db_path=seeded_db, flags=flags(), lock_timeout_s=20))
    waited_s = time.monotonic() - t0
    assert holder.wait(timeout=10) == 0
    assert report.files[0].status == "ok", report.files[0].message
    assert waited_s >= 1.0
    assert count_predictions(seeded_db) == N_EXISTING + 1_000


def test_ingest_lock_timeout_rejects_the_file_and_writes_nothing(seeded_db: Path, tmp_path: Path) -> None:
    """A reader that never lets go (e.g. a dashboard keeping its connection) makes the ingest
    give up after --lock-timeout, naming the cause; a later run goes in."""
    path = write_predictions(tmp_path / "more.csv", 1_000, N_EXISTING)
    holder = hold(seeded_db, 60, "ro")
    try:
        report = ingest([path], IngestOptions(db_path=seeded_db, flags=flags(), lock_timeout_s=0.5))
    finally:
        holder.kill()
        holder.wait(timeout=10)
    (result,) = report.files
    assert result.status == "rejected"
    assert "locked by another process" in (result.message or "")
    assert "not recorded in ingest_runs" in (result.message or "")
    assert count_predictions(seeded_db) == N_EXISTING

    again = ingest([path], IngestOptions(db_path=seeded_db, flags=flags(), lock_timeout_s=5))
    assert again.files[0].status == "ok", again.files[0].message
    assert again.files[0].n_accepted == 1_000


def test_cli_ingest_lock_timeout_flag(seeded_db: Path, tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "more.csv", 10, N_EXISTING)
    holder = hold(seeded_db, 60, "rw")
    try:
        done = subprocess.run(ingest_cmd(seeded_db, path)[:-1] + ["--lock-timeout", "0.3"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "200"})
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "locked by another process" in done.stderr
