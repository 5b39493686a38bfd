"""Glue between Streamlit and the analysis layer: which database, cached query results.

Pages call :func:`query` with an analysis function and its parameters. The connection is
short-lived and read-only (see :mod:`lossboard.db`: a connection kept open would block every
ingest), and results are cached with ``st.cache_data`` keyed on the database file's
modification time and size (:func:`data_version`), so a page shows new data as soon as an
ingest commits, without a restart.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from lossboard.db import read_connection

T = TypeVar("T")


def db_path() -> Path:
    """The database given as ``-- --db PATH`` to ``streamlit run``, else $LOSSBOARD_DB."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return Path(known.db or os.environ.get("LOSSBOARD_DB", "lossboard.duckdb"))


def data_version(db: Path) -> tuple[float, int]:
    """Changes whenever an ingest commits: the file's modification time and size."""
    stat = db.stat()
    return stat.st_mtime, stat.st_size


@st.cache_data(show_spinner=False, max_entries=256)
def _cached(fn_module: str, fn_name: str, db: str, version: tuple[float, int],
            params: tuple[tuple[str, Any], ...]) -> Any:
    import importlib

    fn = getattr(importlib.import_module(fn_module), fn_name)
    with read_connection(db) as con:
        return fn(con, **dict(params))


def database_ready() -> bool:
    """True once the database exists and holds predictions, labels or KPIs."""
    from lossboard.dashboard.analysis.health import has_data
    from lossboard.errors import LossboardError

    if not db_path().exists():
        return False
    try:
        # Not table_counts: its unmatched-labels count is an anti-join (3-4 s at 10M rows),
        # and every page's first run after an ingest asks this.
        return query(has_data)
    except LossboardError:
        return False


def database_problem() -> str | None:
    """Why the database file cannot be read (not a DuckDB file, no lossboard tables), or None."""
    from lossboard.dashboard.analysis.health import has_data
    from lossboard.errors import LossboardError

    if not db_path().exists():
        return None
    try:
        query(has_data)
    except LossboardError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a DuckDB catalog error: not a lossboard database
        return f"{db_path()} is not a lossboard database ({type(exc).__name__}: {exc})"
    return None


def query(fn: Callable[..., T], **params: Any) -> T:
    """``fn(con, **params)`` on a fresh read-only connection, cached until the next ingest."""
    db = db_path()
    return _cached(fn.__module__, fn.__name__, str(db), data_version(db),
                   tuple(sorted(params.items())))
