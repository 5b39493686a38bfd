"""Labels copied onto their predictions (ingest/schema.py ``LABEL_COPY_COLUMNS``).

The read path trusts ``predictions.label`` instead of joining the labels table, so the copy
must always equal that join, whatever order files come in, through both write paths (UPDATE
for few labels, table rewrite for many), across a crash mid-copy and after upgrading a
database written before the copy existed.
"""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest
from conftest import ingest_one, only_file, query, run_ingest, scalar, write_csv

from lossboard.dashboard.analysis import health, loss
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.ingest import schema
from lossboard.ingest.load import ensure_database

# What the copy must equal: the labels table joined the way docs/log-contract.md describes
# (same request_id; the same model, or a label without one).
REFERENCE = """
SELECT p.request_id, p.model, l.label, l.label_ts, l.label_ts_source, l.model
FROM predictions p
LEFT JOIN labels l ON l.request_id = p.request_id AND (l.model IS NULL OR l.model = p.model)
ORDER BY ALL"""
COPY = """SELECT request_id, model, label, label_ts, label_ts_source, label_model FROM predictions
ORDER BY ALL"""


def _files(tmp_path: Path, seed: int) -> list[tuple[Path, dict]]:
    """Prediction files of two models and label files (model-specific, model-less, unknown
    requests, a bad label, a conflicting relabel), in a seeded random order."""
    rng = random.Random(seed)
    files: list[tuple[Path, dict]] = []
    for model in ("m", "n"):
        for part in range(2):
            rows = [f"{model}{part}_{i},2026-01-0{1 + part}T{i % 24:02d}:00:00Z,{rng.random():.6f},"
                    f"{rng.choice(['eu', 'us'])},{rng.gauss(0, 1):.4f}" for i in range(40)]
            # Shared request ids: s<i> is scored by both models.
            rows += [f"s{i},2026-01-03T00:00:00Z,{rng.random():.6f},eu,0.5" for i in range(part * 5, part * 5 + 5)]
            path = write_csv(tmp_path, f"p_{model}{part}.csv",
                             "request_id,ts,p,region,x\n" + "\n".join(rows) + "\n")
            files.append((path, {"model": model, "model_version": "v1", "segments": ["region"]}))
    for part in range(3):
        rows = []
        for model in ("m", "n"):
            ids = [f"{model}{pp}_{i}" for pp in range(2) for i in range(40)]
            for rid in rng.sample(ids, 25):
                rows.append(f"{rid},{model},{rng.randint(0, 1)},2026-01-0{4 + part}T00:00:00Z")
        rows.append(f"s{part},,1,2026-01-05T00:00:00Z")              # model-less: both models
        rows.append(f"nobody{part},m,1,2026-01-05T00:00:00Z")        # no prediction (yet)
        rows.append(f"m0_{part},m,banana,2026-01-05T00:00:00Z")       # bad label
        path = write_csv(tmp_path, f"l{part}.csv",
                         "request_id,model,label,label_ts\n" + "\n".join(rows) + "\n")
        files.append((path, {"kind": "labels"}))
    rng.shuffle(files)
    return files


def _write_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Force one way of writing the copy: a rewrite of the table, one UPDATE per file, or
    UPDATEs over rowid ranges of at most 7 labels each (many per file here)."""
    monkeypatch.setattr(schema, "UPDATE_MAX_FRACTION", 0.0 if path == "rewrite" else float("inf"))
    monkeypatch.setattr(schema, "UPDATE_CHUNK_ROWS", 7 if path == "chunked" else 10**9)


WRITE_PATHS = ["rewrite", "update", "chunked"]


@pytest.mark.parametrize("write_path", WRITE_PATHS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copy_equals_the_join_in_any_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                seed: int, write_path: str) -> None:
    _write_path(monkeypatch, write_path)
    db = tmp_path / "lb.duckdb"
    for path, flags in _files(tmp_path, seed):
        result = ingest_one(db, path, **flags)
        assert result.status == "ok", result.message
        assert query(db, COPY) == query(db, REFERENCE)
    with read_connection(db) as con:  # the count from the copy equals the anti-join's
        assert health.table_counts(con).n_unmatched_labels == scalar(
            db, "SELECT count(*) FROM unmatched_labels") > 0
    n_labelled = scalar(db, "SELECT count(*) FROM predictions WHERE label IS NOT NULL")
    assert n_labelled > 50  # the scenario really labels something
    # The labelled view is the copy; no half-written table is left behind.
    assert scalar(db, "SELECT count(*) FROM labelled") == n_labelled
    assert scalar(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%relabel%'") == 0


def test_both_write_paths_give_the_same_table_and_metrics(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tables, losses = [], []
    for write_path in WRITE_PATHS:
        _write_path(monkeypatch, write_path)
        db = tmp_path / f"lb-{write_path}.duckdb"
        folder = tmp_path / write_path
        folder.mkdir()
        for path, flags in _files(folder, 7):
            ingest_one(db, path, **flags)
        tables.append(query(db, "SELECT * FROM predictions ORDER BY ALL"))
        with read_connection(db) as con:
            losses.append(loss.overall(con, Filter(model="m")).log_loss)
    assert tables[0] == tables[1] == tables[2]
    assert losses[0] is not None
    assert losses[0] == pytest.approx(losses[1], rel=1e-12) == pytest.approx(losses[2], rel=1e-12)


def test_rewrite_keeps_columns_types_and_constraints(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _write_path(monkeypatch, "rewrite")
    db = tmp_path / "lb.duckdb"
    ingest_one(db, write_csv(tmp_path, "p.csv", "request_id,ts,p,region,x\na,2026-01-01,0.2,eu,1.5\n"
                                                "b,2026-01-01,0.7,us,2.5\n"),
               model="m", model_version="v1", segments=["region"])
    before = query(db, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                       "WHERE table_name = 'predictions' ORDER BY ordinal_position")
    ingest_one(db, write_csv(tmp_path, "l.csv", "request_id,label\na,1\n"))
    after = query(db, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                      "WHERE table_name = 'predictions' ORDER BY ordinal_position")
    assert after == before
    assert ("request_id", "VARCHAR", "NO") in after and ("label", "VARCHAR", "YES") in after
    assert query(db, "SELECT request_id, label, region, x FROM predictions ORDER BY 1") == [
        ("a", "1", "eu", 1.5), ("b", None, "us", 2.5)]
    # A later file still appends, and a new column is still added, to the rewritten table.
    ingest_one(db, write_csv(tmp_path, "p2.csv", "request_id,ts,p,region,x,y2\nc,2026-01-02,0.4,eu,3.5,7\n"),
               model="m", model_version="v1")
    assert scalar(db, "SELECT count(*) FROM predictions") == 3


@pytest.mark.parametrize("write_path", WRITE_PATHS)
def test_a_crash_mid_copy_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         write_path: str) -> None:
    _write_path(monkeypatch, write_path)
    db = tmp_path / "lb.duckdb"
    ingest_one(db, write_csv(tmp_path, "p.csv", "request_id,ts,p\na,2026-01-01,0.2\nb,2026-01-01,0.7\n"),
               model="m", model_version="v1")
    before = query(db, "SELECT * FROM predictions ORDER BY ALL")
    real = schema.copy_labels

    def copy_then_fail(*args: object, **kwargs: object) -> int:
        real(*args, **kwargs)  # the table is already rewritten / updated in the transaction
        raise duckdb.IOException("disk full (simulated)")

    monkeypatch.setattr(schema, "copy_labels", copy_then_fail)
    result = only_file(run_ingest(db, write_csv(tmp_path, "l.csv", "request_id,label\na,1\nb,0\n")))
    assert result.status == "rejected" and "disk full" in (result.message or "")
    assert query(db, "SELECT * FROM predictions ORDER BY ALL") == before
    assert scalar(db, "SELECT count(*) FROM labels") == 0
    monkeypatch.setattr(schema, "copy_labels", real)
    assert ingest_one(db, tmp_path / "l.csv").n_accepted == 2  # nothing half-done blocks a retry
    assert query(db, COPY) == query(db, REFERENCE)


def test_a_schema_1_database_is_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "lb.duckdb"
    ingest_one(db, write_csv(tmp_path, "p.csv", "request_id,ts,p\na,2026-01-01,0.2\nb,2026-01-01,0.7\n"
                                                "c,2026-01-01,0.5\n"),
               model="m", model_version="v1")
    ingest_one(db, write_csv(tmp_path, "l.csv", "request_id,label\na,1\nb,0\n"))
    # Turn it back into what lossboard 0.1 (schema 1) wrote: no label columns on predictions,
    # the labelled view a join.
    with duckdb.connect(str(db)) as con:
        con.execute("DROP VIEW labelled")
        for name, _ in schema.LABEL_COPY_COLUMNS:
            con.execute(f"ALTER TABLE predictions DROP COLUMN {name}")
        con.execute("CREATE VIEW labelled AS SELECT p.*, l.label FROM predictions p JOIN labels l "
                    "ON l.request_id = p.request_id")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    ensure_database(db)
    assert scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'") == str(schema.SCHEMA_VERSION)
    assert query(db, "SELECT request_id, label FROM predictions ORDER BY 1") == [
        ("a", "1"), ("b", "0"), ("c", None)]
    assert query(db, "SELECT request_id FROM labelled ORDER BY 1") == [("a",), ("b",)]


def test_label_statistics_count_each_label_once(tmp_path: Path) -> None:
    # s is scored by two models: its model-less label matches two predictions but is one label.
    db = tmp_path / "lb.duckdb"
    for model in ("m", "n"):
        ingest_one(db, write_csv(tmp_path, f"p_{model}.csv",
                                 f"request_id,ts,p\ns,2026-01-02,0.5\n{model}1,2026-01-02,0.5\n"),
                   model=model, model_version="v1")
    result = ingest_one(db, write_csv(tmp_path, "l.csv", """\
        request_id,model,label,label_ts
        s,,1,2026-01-01
        m1,m,0,2026-01-01
        n1,n,1,2026-01-03
        nobody,m,1,2026-01-03
        """), kind="labels")
    # nobody: no prediction; s (both models) and m1 are timed before their predictions.
    assert (result.n_accepted, result.n_unmatched_labels, result.n_label_before_prediction) == (4, 1, 2)
    assert query(db, "SELECT model, request_id, label FROM predictions ORDER BY 1, 2") == [
        ("m", "m1", "0"), ("m", "s", "1"), ("n", "n1", "1"), ("n", "s", "1")]
