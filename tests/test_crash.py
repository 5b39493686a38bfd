"""kill -9 during an ingest leaves the database whole: none of the file, and a re-run completes.

A real ``lossboard ingest`` subprocess ingests a 1.5M-row CSV (about 3 s here, 2 cores: ~2 s
staging, ~0.8 s merge) into a database that already holds a small file. It is killed with SIGKILL at
three points, found by watching the process from outside rather than by sleeping:

* ``staging``: its private staging folder (``lossboard-stage-*`` under its ``TMPDIR``) exists
  and the database file is not locked: the file is being read, the database is untouched;
* ``merge_start``: the database file is locked (a read-only open fails with DuckDB's lock
  error): the merge has attached the file read-write;
* ``mid_insert``: the file is locked *and* has grown by 8 MiB (of the ~29 MiB these rows
  take): the merge's transaction is writing the new rows' blocks into the database file
  (DuckDB writes big inserts straight to the file, before COMMIT).

After each kill the database opens read-only, holds exactly the rows it held before and no 'ok'
ingest_runs row for the file; a re-run then ingests every row.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from lossboard.db import read_connection

pytestmark = pytest.mark.slow

N_ROWS = 1_500_000
N_EXISTING = 1_000
POLL_TIMEOUT_S = 60.0
# A quarter of what the file's rows add to the database (2M rows of this shape added 39 MiB,
# measured), so the kill lands well inside the insert and well before COMMIT.
MID_INSERT_GROWTH_BYTES = 8 * 2**20


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lossboard.dashboard.cli", *args]


def ingest_cmd(db: Path, path: Path) -> list[str]:
    return cli("ingest", "--db", str(db), str(path), "--model", "m", "--model-version", "v1", "--json")


def write_predictions(path: Path, n_rows: int, first_id: int) -> Path:
    # Every row valid and its id unique, so that "all rows accounted for" is n_accepted == n_rows.
    con = duckdb.connect()
    try:
        con.execute(f"""COPY (
            SELECT 'r' || (i + {first_id}) AS request_id,
                   TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i % 86400) AS ts,
                   ((i * 7919) % 10007) / 10007.0 AS p,
                   CASE i % 3 WHEN 0 THEN 'eu' WHEN 1 THEN 'us' ELSE 'apac' END AS region
            FROM range({n_rows}) t(i)) TO '{path}' (HEADER)""")
    finally:
        con.close()
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("crash_data") / "big.csv", N_ROWS, N_EXISTING)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database that already holds N_EXISTING predictions from another file."""
    folder = tmp_path_factory.mktemp("crash_seed")
    small = write_predictions(folder / "small.csv", N_EXISTING, 0)
    db = folder / "seed.duckdb"
    done = subprocess.run(ingest_cmd(db, small), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not db.with_name(db.name + ".wal").exists()
    return db


def is_locked(db: Path) -> bool:
    """True while another process holds the database file read-write."""
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            return True
        raise
    return False


def wait_for(condition: Callable[[], object], proc: subprocess.Popen[bytes], what: str,
             interval_s: float) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not condition():
        assert proc.poll() is None, f"the ingest ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {POLL_TIMEOUT_S} s"
        time.sleep(interval_s)


def stage_dirs(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("lossboard-stage-*")}


def kill_at(point: str, db: Path, path: Path, tmp: Path) -> None:
    """Start an ingest of ``path`` and SIGKILL it at ``point``; returns once it is dead."""
    size_before = db.stat().st_size
    dirs_before = stage_dirs(tmp)  # folders an earlier killed run left behind
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(ingest_cmd(db, path), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        if point == "staging":
            wait_for(lambda: stage_dirs(tmp) - dirs_before, proc, "staging folder", 0.01)
            time.sleep(0.5)  # well inside the ~2 s of staging
            assert not is_locked(db), "the merge started earlier than expected"
        elif point == "merge_start":
            wait_for(lambda: is_locked(db), proc, "lock on the database", 0.01)
        elif point == "mid_insert":
            wait_for(lambda: is_locked(db), proc, "lock on the database", 0.01)
            wait_for(lambda: db.stat().st_size > size_before + MID_INSERT_GROWTH_BYTES, proc,
                     "growth of the database file", 0.001)
        else:
            raise ValueError(point)
        assert proc.poll() is None, "the ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:  # an assertion above failed: do not leave the ingest running
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def db_state(db: Path, content_hash: str) -> tuple[int, int, int, int]:
    """(predictions, quarantined rows, ingest_runs rows, 'ok' runs of the file)."""
    with read_connection(db, timeout_s=10) as con:
        n_pred = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        n_quarantine = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        n_runs = con.execute("SELECT count(*) FROM ingest_runs").fetchone()[0]
        n_ok = con.execute("SELECT count(*) FROM ingest_runs WHERE content_hash = ? AND status = 'ok'",
                           [content_hash]).fetchone()[0]
    return n_pred, n_quarantine, n_runs, n_ok


@pytest.mark.parametrize("point", ["staging", "merge_start", "mid_insert"])
def test_kill_then_rerun(point: str, big_csv: Path, seeded_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "lb.duckdb"
    shutil.copyfile(seeded_db, db)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    content_hash = sha256(big_csv)
    before = db_state(db, content_hash)
    assert before == (N_EXISTING, 0, 1, 0)

    kill_at(point, db, big_csv, tmp)

    n_pred, n_quarantine, n_runs, n_ok = db_state(db, content_hash)
    assert (n_pred, n_quarantine, n_ok) == (N_EXISTING, 0, 0), f"killed at {point}"
    # Nothing of the killed run reached the database, not even a 'rejected' row.
    assert n_runs == 1
    leftovers = stage_dirs(tmp)

    done = subprocess.run(ingest_cmd(db, big_csv), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["files"]
    assert result["status"] == "ok", result["message"]
    assert (result["n_read"], result["n_accepted"], result["n_duplicate"], result["n_quarantined"]) == (
        N_ROWS, N_ROWS, 0, 0)
    assert db_state(db, content_hash) == (N_EXISTING + N_ROWS, 0, 2, 1)
    with read_connection(db) as con:
        ids = con.execute("SELECT count(DISTINCT request_id), min(_lb_row_number), max(_lb_row_number) "
                          "FROM predictions WHERE _lb_file_id = ?", [result["file_id"]]).fetchone()
    assert ids == (N_ROWS, 1, N_ROWS)
    # A completed ingest removes its staging folder; a killed one cannot, but the next ingest
    # removes the folders of dead processes (docs/concurrency.md).
    if point == "staging":
        assert leftovers, "the killed ingest should have left its spill folder"
    assert stage_dirs(tmp) == set()


def test_repeated_kills_then_rerun(big_csv: Path, seeded_db: Path, tmp_path: Path) -> None:
    """Two crashes in a row on the same database, then one clean run: exactly one copy."""
    db = tmp_path / "lb.duckdb"
    shutil.copyfile(seeded_db, db)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    content_hash = sha256(big_csv)
    for point in ("mid_insert", "staging"):
        kill_at(point, db, big_csv, tmp)
        assert db_state(db, content_hash) == (N_EXISTING, 0, 1, 0), f"after a kill at {point}"
    done = subprocess.run(ingest_cmd(db, big_csv), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert db_state(db, content_hash) == (N_EXISTING + N_ROWS, 0, 2, 1)
    # And the file is now known: a second run skips it.
    again = subprocess.run(ingest_cmd(db, big_csv), capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["files"][0]["status"] == "skipped"


# --------------------------------------------------------------------------- labels
N_LABELS = 700_000  # 47% of the stored predictions: copied by UPDATEs (2 rowid ranges)


def write_labels(path: Path) -> Path:
    con = duckdb.connect()
    try:
        con.execute(f"""COPY (
            SELECT 'r' || ({N_EXISTING} + 2 * i) AS request_id, (i * 7919) % 3 = 0 AS label
            FROM range({N_LABELS}) t(i)) TO '{path}' (HEADER)""")
    finally:
        con.close()
    return path


def labels_cmd(db: Path, path: Path) -> list[str]:
    return cli("ingest", "--db", str(db), str(path), "--kind", "labels", "--json")


def label_state(db: Path) -> tuple[int, int, bool]:
    """(stored labels, predictions carrying one, whether the copy equals the join)."""
    with read_connection(db, timeout_s=10) as con:
        n_labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
        n_copied = con.execute("SELECT count(*) FROM predictions WHERE label IS NOT NULL").fetchone()[0]
        differ = con.execute("""SELECT count(*) FROM predictions p
            LEFT JOIN labels l ON l.request_id = p.request_id
            WHERE p.label IS DISTINCT FROM l.label OR p.label_ts IS DISTINCT FROM l.label_ts""").fetchone()[0]
    return n_labels, n_copied, differ == 0


@pytest.fixture(scope="module")
def predictions_db(big_csv: Path, seeded_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("crash_labels") / "predictions.duckdb"
    shutil.copyfile(seeded_db, db)
    done = subprocess.run(ingest_cmd(db, big_csv), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return db


def test_kill_during_a_label_copy_leaves_before_or_after(predictions_db: Path, tmp_path: Path) -> None:
    """Labels copied by UPDATE and committed as a checkpoint (ingest/load.py): SIGKILL at
    points spread over the merge leaves the database either without the file or with all of
    it, never a label without its copy; the merge's length is measured on a clean run first."""
    labels = write_labels(tmp_path / "labels.csv")
    clean = tmp_path / "clean.duckdb"
    shutil.copyfile(predictions_db, clean)
    proc = subprocess.Popen(labels_cmd(clean, labels), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: is_locked(clean), proc, "lock on the database", 0.005)
    locked_at = time.monotonic()
    assert proc.wait(timeout=120) == 0
    merge_s = time.monotonic() - locked_at
    assert label_state(clean) == (N_LABELS, N_LABELS, True)

    inside = 0
    for fraction in (0.2, 0.5, 0.8, 0.95):
        db = tmp_path / f"killed-{fraction}.duckdb"
        shutil.copyfile(predictions_db, db)
        proc = subprocess.Popen(labels_cmd(db, labels), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: is_locked(db), proc, "lock on the database", 0.005)
            time.sleep(fraction * merge_s)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                inside += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        assert label_state(db) in ((0, 0, True), (N_LABELS, N_LABELS, True)), f"killed at {fraction}"
        # Whatever the kill left, a re-run ends with every label copied once.
        done = subprocess.run(labels_cmd(db, labels), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert label_state(db) == (N_LABELS, N_LABELS, True)
    assert inside >= 2, f"only {inside} of 4 kills landed before the ingest ended ({merge_s:.2f} s)"
