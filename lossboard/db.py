"""How processes take turns on the one DuckDB file.

DuckDB locks the database file per process: while one process has it open read-write, no
other process can open it at all; several processes may open it read-only at once, but only
while nobody writes. lossboard therefore never keeps the file open for long:

* **Readers** (dashboard, CLI read commands) open a short-lived read-only connection, run
  their queries and close it (:func:`read_connection`). If an ingest is merging right now they
  retry with backoff until ``timeout_s``.
* **The ingest** does its heavy work (reading, typing, validating a file) in a private
  in-memory DuckDB, without touching the database file, and only then attaches the file
  read-write for the short merge: one transaction per file (:mod:`lossboard.ingest.load`).
  Readers are locked out only for that merge, and since a reader cannot open the file while the
  merge holds it, it sees either none or all of a file.

docs/concurrency.md has the measurements and the trade-offs.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb

from lossboard.errors import DatabaseBusyError, LossboardError

T = TypeVar("T")

DEFAULT_LOCK_TIMEOUT_S = 60.0


def is_lock_error(exc: BaseException) -> bool:
    """True when DuckDB refused a file because another process holds its lock."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def retry_on_lock(action: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``action`` until it stops failing with a lock error, for at most ``timeout_s``.

    Backoff doubles from 20 ms to 1 s with jitter, so a reader polling during a merge does not
    hammer the file and two waiting processes do not retry in lockstep.
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.02
    while True:
        try:
            return action()
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusyError(
                    f"{what}: the database is locked by another process and stayed locked for "
                    f"{timeout_s:g} s ({exc}). Is an ingest still running? Retry, or raise "
                    "--lock-timeout."
                ) from exc
            time.sleep(delay_s * (0.5 + random.random()))
            delay_s = min(delay_s * 2, 1.0)


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    # Every figure lossboard shows is in UTC; the machine's zone must not leak into
    # date_trunc or into how TIMESTAMPTZ values print.
    con.execute("SET TimeZone = 'UTC'")


@contextlib.contextmanager
def read_connection(
    db_path: str | Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to ``db_path`` that is closed on exit; retries while locked.

    Keep the ``with`` block short: while it is open, no ingest can commit.
    """
    path = Path(db_path)
    if not path.exists():
        raise LossboardError(
            f"database {path} does not exist; create it with `lossboard ingest --db {path} FILE`"
        )

    with _opened(path, True, timeout_s) as con:
        yield con


@contextlib.contextmanager
def write_connection(
    db_path: str | Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to ``db_path`` (created if missing); closed on exit.

    For short maintenance writes (role overrides, schema creation). The ingest uses its own
    attach scheme, see :mod:`lossboard.ingest.load`.
    """
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _opened(path, False, timeout_s) as con:
        yield con


@contextlib.contextmanager
def _opened(path: Path, read_only: bool, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open with retry while locked; any other DuckDB refusal becomes one clear sentence."""
    what = f"opening {path} for {'reading' if read_only else 'writing'}"
    try:
        con = retry_on_lock(lambda: duckdb.connect(str(path), read_only=read_only), timeout_s, what)
    except duckdb.Error as exc:
        raise LossboardError(f"cannot open {path} as a lossboard database: "
                             f"{str(exc).splitlines()[0]}") from exc
    try:
        _configure(con)
        yield con
    finally:
        con.close()
