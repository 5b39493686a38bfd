"""lossboard.ingest.load reads Parquet in place (a view with the reader's file row number)
instead of copying it into a table first: the two ways must store exactly the same thing.

The copy path is still what text formats use; here it is forced on Parquet files by turning
off :func:`lossboard.ingest.readers.can_read_in_place`, and both databases are compared cell
by cell: accounting, stored rows and their order, quarantine rows with their raw JSON, and
the label copy on the predictions.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import ingest_one, quarantined, query, run_ingest, scalar
from lossboard.ingest import load, readers
from lossboard.ingest.load import IngestOptions, ensure_database, ingest
from test_properties import PROPERTY_SETTINGS, parquet_rows, prediction_flags

SALT = "fixed-salt-for-comparison"


def _state(db: Path) -> str:
    """Every stored row in storage order, and the per-file accounting, as text: NaN scores
    are stored as such, and text compares them equal where floats would not."""
    return repr({
        "predictions": query(db, "SELECT * FROM predictions ORDER BY rowid"),
        "labels": query(db, "SELECT * FROM labels ORDER BY rowid"),
        "quarantine": query(db, "SELECT file_id, source_file, kind, row_number, reason, detail, "
                                "CAST(raw AS VARCHAR) FROM quarantine ORDER BY rowid"),
        "runs": query(db, "SELECT file_id, kind, status, n_read, n_accepted, n_duplicate, "
                          "n_quarantined, n_unmatched_labels, n_label_before_prediction, message "
                          "FROM ingest_runs ORDER BY file_id"),
        "columns": query(db, "SELECT * FROM columns ORDER BY kind, name"),
    })


def _database(folder: Path, name: str) -> Path:
    # The PII salt is random per database; both sides get the same one so hashes compare.
    db = folder / name
    ensure_database(db)
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE meta SET value = ? WHERE key = 'pii_salt'", [SALT])
    finally:
        con.close()
    return db


def _ingest_both_ways(folder: Path, files: list[tuple[Path, dict[str, Any]]]) -> tuple[str, str]:
    """Ingest ``files`` in order into two fresh databases, in place and by copy."""
    states = []
    for in_place in (True, False):
        db = _database(folder, f"lb-{in_place}.duckdb")
        patch = (mock.patch.object(readers, "can_read_in_place", return_value=False)
                 if not in_place else mock.patch.object(readers, "can_read_in_place",
                                                        wraps=readers.can_read_in_place))
        with patch as spy:
            for path, flags in files:
                run_ingest(db, path, **flags)
            if in_place:
                assert any(c.args[0].format == "parquet" for c in spy.call_args_list)
        states.append(_state(db))
    return states[0], states[1]


def _prediction_table(n: int, seed: int) -> pa.Table:
    """``n`` predictions with every kind of bad row the staging pass and dedupe find."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"r{i}" for i in range(n)]
    p = np.round(rng.random(n), 4).tolist()
    for i in range(0, n, 997):
        p[i] = 1.5  # score_out_of_range
    for i in range(1, n, 1009):
        ids[i] = ids[i - 1]  # duplicate key, other content: conflicting_duplicate
    for i in range(2, n, 1013):
        ids[i] = None  # missing_request_id
    ts = [start + timedelta(seconds=i) for i in range(n)]
    for i in range(5, n, 1499):
        # Same key, score and time as the previous row: an identical copy ('duplicate').
        ids[i], p[i], ts[i] = ids[i - 1], p[i - 1], ts[i - 1]
    return pa.table({
        "request_id": pa.array(ids, pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "p": pa.array(p, pa.float64()),
        "region": pa.array([["eu", "us", "apac"][i % 3] for i in range(n)], pa.string()),
        "email": pa.array([f"user{i % 50}@example.com" for i in range(n)], pa.string()),
    })


def test_multi_row_group_parquet_same_as_copy_and_in_file_order(tmp_path: Path) -> None:
    # Many small row groups read by 2 threads: the in-place read must still number and store
    # rows in file order, and match the copy path exactly, labels included.
    n = 30_000
    table = _prediction_table(n, seed=7)
    preds = tmp_path / "preds.parquet"
    pq.write_table(table, preds, row_group_size=1_000)
    assert pq.ParquetFile(preds).metadata.num_row_groups == 30
    label_ids = [f"r{i}" for i in range(0, n, 3)] + ["r0", "nobody"]
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"request_id": label_ids,
                             "label": [str(i % 2) for i in range(len(label_ids) - 2)] + ["1", "0"],
                             "model": ["m"] * len(label_ids),
                             # A label time in the file: without one the ingest's clock is stored.
                             "label_ts": ["2026-02-01T00:00:00Z"] * len(label_ids)}),
                   labels, row_group_size=500)
    pflags = {"model": "m", "model_version": "v1", "segments": ("region",), "pii": ("email",)}
    in_place, copied = _ingest_both_ways(tmp_path, [(preds, pflags), (labels, {"kind": "labels"})])
    assert in_place == copied

    db = tmp_path / "lb-True.duckdb"
    runs = query(db, "SELECT status, n_quarantined, n_duplicate FROM ingest_runs ORDER BY file_id")
    # Bad predictions are quarantined, identical copies counted; of the labels, the second
    # one for 'r0' is quarantined.
    assert runs[0][0] == runs[1][0] == "ok" and runs[0][1] > 0 and runs[0][2] > 0
    assert runs[1][1] == 1
    out_of_order = scalar(db, "SELECT count(*) FROM (SELECT _lb_row_number, lag(_lb_row_number) "
                              "OVER (ORDER BY rowid) AS prev FROM labels) WHERE prev > _lb_row_number")
    assert out_of_order == 0
    # Quarantined row numbers point at the file's rows (1-based, as the user counts them).
    for row_number, raw in query(db, "SELECT row_number, CAST(raw AS VARCHAR) FROM quarantine "
                                     "WHERE kind = 'predictions' ORDER BY row_number"):
        rid = table.column("request_id")[row_number - 1].as_py()
        assert (f'"request_id":"{rid}"' in raw) if rid is not None else '"request_id":null' in raw
        assert "@example.com" not in raw  # PII hashed in the raw row too


def test_prediction_file_order_kept_with_two_threads(tmp_path: Path) -> None:
    n = 50_000
    preds = tmp_path / "preds.parquet"
    pq.write_table(_prediction_table(n, seed=3), preds, row_group_size=2_048)
    db = tmp_path / "lb.duckdb"
    result = ingest_one(db, preds, model="m", model_version="v1")
    assert result.n_read == n
    out_of_order = scalar(db, "SELECT count(*) FROM (SELECT _lb_row_number, lag(_lb_row_number) "
                              "OVER (ORDER BY rowid) AS prev FROM predictions) "
                              "WHERE prev > _lb_row_number")
    assert out_of_order == 0


def test_a_column_named_like_the_row_number_is_copied(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"request_id": ["a", "b"], "ts": ["2026-01-01", "2026-01-02"],
                             "p": [0.5, 2.0], "file_row_number": [10, 11]}), path)
    src = readers.expand(path)[0]
    assert not readers.can_read_in_place(src, ["request_id", "file_row_number"])
    in_place, copied = _ingest_both_ways(tmp_path, [(path, {"model": "m", "model_version": "v1"})])
    assert in_place == copied
    assert quarantined(tmp_path / "lb-True.duckdb") == [
        (2, "score_out_of_range", "p = 2.0 is outside [0, 1]")]


def test_a_damaged_parquet_file_is_rejected_with_a_clear_message(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(_prediction_table(5_000, seed=1), good, row_group_size=1_000)
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2_000] = bytes(2_000)  # zero a stretch of column pages
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    db = tmp_path / "lb.duckdb"
    report = ingest([bad], IngestOptions(db_path=db, flags=prediction_flags(False)))
    result = report.files[0]
    assert result.status == "rejected"
    assert f"{bad}: cannot be read as PARQUET" in (result.message or "")
    assert scalar(db, "SELECT count(*) FROM predictions") == 0


@PROPERTY_SETTINGS
@given(data=parquet_rows(), seed=st.integers(0, 2**32 - 1))
def test_in_place_equals_copy_for_any_rows(tmp_path_factory: pytest.TempPathFactory,
                                           data: tuple[pa.Table, list[Any], bool], seed: int) -> None:
    table, rows, with_weight = data
    folder = tmp_path_factory.mktemp("inplace")
    first = folder / "preds.parquet"
    pq.write_table(table, first, row_group_size=max(1, len(rows) // 3))
    order = np.random.default_rng(seed).permutation(len(rows))
    second = folder / "shuffled.parquet"
    pq.write_table(table.take(pa.array(order, pa.int64())), second, compression="zstd")
    flags = {"kind": "predictions", "map": dict(prediction_flags(with_weight).map),
             "model": "m", "model_version": "v1"}
    in_place, copied = _ingest_both_ways(folder, [(first, flags), (second, flags)])
    assert in_place == copied
    shutil.rmtree(folder, ignore_errors=True)


class _Explaining:
    """A staging connection that records the plan of each staging CTAS before running it."""

    def __init__(self, con: Any, plans: list[str]) -> None:
        self._con, self._plans = con, plans

    def execute(self, sql: str, *params: Any) -> Any:
        if sql.lstrip().startswith("CREATE TABLE staged"):
            self._plans.append(self._con.execute("EXPLAIN " + sql, *params).fetchall()[0][1])
        return self._con.execute(sql, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_no_staging_ctas_joins_so_file_order_needs_no_sort(tmp_path: Path, fmt: str) -> None:
    # The insert keeps the staging order and does not sort (load._insert_rows). That holds only
    # while every staging CTAS scans `raw` alone: a join (the model registry once; an IN list
    # of 5 labels, which DuckDB plans as a mark join) put 1 of 900k labels out of order.
    plans: list[str] = []
    real = load._staging_connection

    @contextmanager
    def explaining(options: IngestOptions) -> Any:
        with real(options) as con:
            yield _Explaining(con, plans)

    def write(name: str, table: pa.Table) -> Path:
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path, row_group_size=4_096)
        else:
            pcsv.write_csv(table, path)
        return path

    n = 40_000
    preds = write("preds", _prediction_table(n, seed=11))
    labels = write("labels", pa.table({
        "request_id": [f"r{i}" for i in range(n)],
        "label": [["yes", "0", "no", "1", "true", " F "][i % 6] for i in range(n)],
        "model": ["m"] * n}))
    kpis = write("kpis", pa.table({"day": ["2026-01-15", "2026-01-16"], "kpi": ["revenue"] * 2,
                                   "value": [1.0, 2.0]}))
    db = tmp_path / "lb.duckdb"
    with mock.patch.object(load, "_staging_connection", explaining):
        ingest_one(db, preds, model="m", model_version="v1", pii=("email",))
        ingest_one(db, labels, kind="labels")
        ingest_one(db, kpis, kind="kpi")
    assert len(plans) == 3
    for plan in plans:
        assert "JOIN" not in plan.upper(), plan
    for table in ("predictions", "labels"):
        out_of_order = scalar(db, f"SELECT count(*) FROM (SELECT _lb_row_number, lag(_lb_row_number) "
                                  f"OVER (ORDER BY rowid) AS prev FROM {table}) "
                                  "WHERE prev > _lb_row_number")
        assert out_of_order == 0, table
    assert query(db, "SELECT label, count(*) FROM labels GROUP BY ALL ORDER BY ALL") == [
        ("0", 20_000), ("1", 20_000)]
