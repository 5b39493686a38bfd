"""lossboard.ingest.load: one file = one transaction, every row accounted for, re-runs safe,
columns added over time, labels joined to predictions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import (
    TS, assert_accounted, ingest_one, only_file, quarantined, query, run_ingest, scalar, write_csv,
    write_parquet,
)
from lossboard.db import write_connection
from lossboard.errors import SchemaError
from lossboard.ingest import schema

PREDS_A = f"""
request_id,ts,p,region
a1,{TS},0.1,eu
a2,{TS},0.2,us
a3,{TS},1.5,us
a4,{TS},0.4,eu
a4,{TS},0.4,eu
"""


def _table_state(db: Path) -> dict[str, object]:
    """Everything a re-run must not change (ingest_runs excluded: a skip is recorded)."""
    return {
        "predictions": query(db, "SELECT * FROM predictions ORDER BY request_id"),
        "labels": query(db, "SELECT * FROM labels ORDER BY request_id"),
        "quarantine": query(db, "SELECT file_id, row_number, reason, CAST(raw AS VARCHAR) "
                                "FROM quarantine ORDER BY file_id, row_number"),
        "columns": query(db, "SELECT * FROM columns ORDER BY kind, name"),
        "models": query(db, "SELECT * FROM models ORDER BY model"),
    }


# --------------------------------------------------------------------------- accounting
def test_accounting_per_file_and_in_ingest_runs(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", PREDS_A)
    report = run_ingest(db_path, path, model="m", model_version="v1")
    result = only_file(report)

    # 5 rows: a3 out of range, the second a4 an identical repeat.
    assert (result.n_read, result.n_accepted, result.n_duplicate, result.n_quarantined) == (5, 3, 1, 1)
    assert result.reasons == {"score_out_of_range": 1}
    assert_accounted(result)
    assert report.totals() == {"n_read": 5, "n_accepted": 3, "n_duplicate": 1, "n_quarantined": 1}
    row = query(db_path, "SELECT file_id, run_id, path, kind, status, n_read, n_accepted, n_duplicate, "
                         "n_quarantined, content_hash FROM ingest_runs")
    assert row == [(result.file_id, report.run_id, str(path), "predictions", "ok", 5, 3, 1, 1,
                    result.content_hash)]
    # The table counts agree with the accounting.
    assert scalar(db_path, "SELECT count(*) FROM predictions") == 3
    assert scalar(db_path, "SELECT count(*) FROM quarantine") == 1
    mapping = json.loads(scalar(db_path, "SELECT CAST(mapping AS VARCHAR) FROM ingest_runs"))
    assert mapping["fields"] == {"request_id": "request_id", "ts": "ts", "p": "p"}
    assert mapping["constants"] == {"model": "m", "model_version": "v1"}


def test_identity_holds_on_every_ingest_runs_row(tmp_path: Path, db_path: Path) -> None:
    a = write_csv(tmp_path, "a.csv", PREDS_A)
    b = write_csv(tmp_path, "b.csv", f"request_id,ts,p\na1,{TS},0.1\na2,{TS},0.9\nb1,,0.5\nb2,{TS},0.3\n")
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"not parquet")
    run_ingest(db_path, [a, b, bad, a], model="m", model_version="v1")
    rows = query(db_path, "SELECT status, n_read, n_accepted, n_duplicate, n_quarantined "
                          "FROM ingest_runs ORDER BY file_id")
    assert [r[0] for r in rows] == ["ok", "ok", "rejected", "skipped"]
    for _, n_read, n_accepted, n_duplicate, n_quarantined in rows:
        assert n_read == n_accepted + n_duplicate + n_quarantined
    # b.csv: a1 identical to the stored row, a2 differs from it, b1 has no time, b2 is new.
    assert rows[1][1:] == (4, 1, 1, 2)


# --------------------------------------------------------------------------- re-runs
def test_reingest_is_skipped_and_changes_nothing(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", PREDS_A)
    first = ingest_one(db_path, path, model="m", model_version="v1")
    before = _table_state(db_path)

    again = only_file(run_ingest(db_path, path, model="m", model_version="v1"))

    assert again.status == "skipped"
    assert (again.n_read, again.n_accepted, again.n_duplicate, again.n_quarantined) == (0, 0, 0, 0)
    assert again.message.startswith(f"already ingested as predictions from {path} (run ")
    assert again.content_hash == first.content_hash
    assert _table_state(db_path) == before
    assert query(db_path, "SELECT status FROM ingest_runs ORDER BY file_id") == [("ok",), ("skipped",)]


def test_same_content_under_another_name_is_skipped(tmp_path: Path, db_path: Path) -> None:
    a = write_csv(tmp_path, "a.csv", PREDS_A)
    copy = write_csv(tmp_path / "elsewhere", "a_copy.csv", PREDS_A)
    ingest_one(db_path, a, model="m", model_version="v1")
    assert only_file(run_ingest(db_path, copy, model="m", model_version="v1")).status == "skipped"


def test_overlapping_file_counts_overlap_as_duplicate(tmp_path: Path, db_path: Path) -> None:
    a = write_csv(tmp_path, "a.csv", PREDS_A)
    b = write_csv(tmp_path, "b.csv", f"request_id,ts,p,region\na1,{TS},0.1,eu\na2,{TS},0.2,us\n"
                                     f"b1,{TS},0.7,eu\n")
    ingest_one(db_path, a, model="m", model_version="v1")
    result = ingest_one(db_path, b, model="m", model_version="v1")
    assert (result.n_read, result.n_accepted, result.n_duplicate, result.n_quarantined) == (3, 1, 2, 0)
    assert scalar(db_path, "SELECT count(*) FROM predictions") == 4
    # Nobody counts twice: a1 is stored once, from the first file.
    assert query(db_path, "SELECT _lb_file_id FROM predictions WHERE request_id = 'a1'") == [(1,)]


def test_same_request_id_under_two_models_is_not_a_duplicate(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", f"request_id,ts,p,model,model_version\nx,{TS},0.1,fraud,v1\n"
                                        f"x,{TS},0.9,churn,v1\n")
    result = ingest_one(db_path, path)
    assert (result.n_accepted, result.n_duplicate, result.n_quarantined) == (2, 0, 0)


# --------------------------------------------------------------------------- schema evolution
def test_new_columns_are_added_and_missing_ones_tolerated(tmp_path: Path, db_path: Path) -> None:
    first = write_csv(tmp_path, "1.csv", f"request_id,ts,p,region\na,{TS},0.1,eu\n")
    second = write_csv(tmp_path, "2.csv", f"request_id,ts,p,region,amount\nb,{TS},0.2,us,12.5\n")
    third = write_csv(tmp_path, "3.csv", f"request_id,ts,p\nc,{TS},0.3\n")

    r1 = ingest_one(db_path, first, model="m", model_version="v1")
    r2 = ingest_one(db_path, second, model="m", model_version="v1")
    r3 = ingest_one(db_path, third, model="m", model_version="v1")

    assert (r1.new_columns, r2.new_columns, r3.new_columns) == (("region",), ("amount",), ())
    assert query(db_path, "SELECT request_id, region, amount FROM predictions ORDER BY 1") == [
        ("a", "eu", None), ("b", "us", 12.5), ("c", None, None)]
    assert query(db_path, "SELECT name, sql_type, first_file_id FROM columns ORDER BY name") == [
        ("amount", "DOUBLE", 2), ("region", "VARCHAR", 1)]


def test_registered_type_is_kept_for_later_files(tmp_path: Path, db_path: Path) -> None:
    # amount is DOUBLE from the first file; a later file's text "7" is cast to it.
    ingest_one(db_path, write_parquet(tmp_path, "1.parquet", {"request_id": ["a"], "ts": [TS],
                                                              "p": [0.1], "amount": [1.5]}),
               model="m", model_version="v1")
    ingest_one(db_path, write_parquet(tmp_path, "2.parquet", {"request_id": ["b"], "ts": [TS],
                                                              "p": [0.2], "amount": ["7"]}),
               model="m", model_version="v1")
    assert query(db_path, "SELECT amount FROM predictions ORDER BY request_id") == [(1.5,), (7.0,)]


def test_fraction_in_a_registered_integer_column_is_a_bad_value(tmp_path: Path,
                                                                  db_path: Path) -> None:
    # cnt is BIGINT from the first file; DuckDB would round a later 5.5 to 6 silently.
    ingest_one(db_path, write_parquet(tmp_path, "1.parquet", {"request_id": ["a"], "ts": [TS],
                                                              "p": [0.1], "cnt": [3]}),
               model="m", model_version="v1")
    result = ingest_one(db_path, write_parquet(tmp_path, "2.parquet", {
        "request_id": ["b", "c"], "ts": [TS, TS], "p": [0.2, 0.3], "cnt": ["5.5", "7"]}),
        model="m", model_version="v1")
    assert_accounted(result)
    assert result.reasons == {"bad_value": 1}
    assert quarantined(db_path) == [(1, "bad_value", "cnt = 5.5 is not a BIGINT")]
    assert query(db_path, "SELECT request_id, cnt FROM predictions ORDER BY request_id") == [
        ("a", 3), ("c", 7)]


def test_flagging_a_registered_raw_column_as_pii_rejects_the_file(tmp_path: Path,
                                                                   db_path: Path) -> None:
    ingest_one(db_path, write_parquet(tmp_path, "1.parquet", {"request_id": ["a"], "ts": [TS],
                                                              "p": [0.1], "contact": ["x@y.z"]}),
               model="m", model_version="v1", features=("contact",))
    result = only_file(run_ingest(db_path, write_parquet(tmp_path, "2.parquet", {
        "request_id": ["b"], "ts": [TS], "p": [0.2], "contact": ["q@y.z"]}),
        model="m", model_version="v1", pii=("contact",)))
    assert result.status == "rejected"
    assert "lossboard columns --set contact=pii" in result.message
    assert scalar(db_path, "SELECT count(*) FROM predictions") == 1


def test_column_named_like_a_contract_field_is_kept_under_another_name(tmp_path: Path,
                                                                     db_path: Path) -> None:
    # A user column named like a bookkeeping column must not clobber it: it gets a prefix.
    path = write_csv(tmp_path, "a.csv", f"request_id,ts,p,_lb_file_id\na,{TS},0.1,999\n")
    result = ingest_one(db_path, path, model="m", model_version="v1")
    assert result.new_columns == ("src__lb_file_id",)
    assert "stored as 'src__lb_file_id'" in result.message
    assert query(db_path, "SELECT _lb_file_id, src__lb_file_id FROM predictions") == [(1, 999)]


# --------------------------------------------------------------------------- PII
def test_columns_set_pii_hashes_stored_values_and_quarantine(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", f"""
        request_id,ts,p,contact
        a,{TS},0.1,ann@secret.example
        b,{TS},7.0,bob@secret.example
        """)
    ingest_one(db_path, path, model="m", model_version="v1")
    # Two distinct texts: inferred as a segment (not PII by name).
    assert query(db_path, "SELECT role FROM columns WHERE name = 'contact'") == [("segment",)]

    with write_connection(db_path) as con:
        info = schema.set_column_role(con, "predictions", "contact", "pii")

    assert (info.role, info.role_source, info.sql_type) == ("pii", "override", "VARCHAR")
    stored = scalar(db_path, "SELECT contact FROM predictions")
    assert "@" not in stored and len(stored) == 20
    raw = json.loads(scalar(db_path, "SELECT CAST(raw AS VARCHAR) FROM quarantine"))
    assert raw["contact"] != "bob@secret.example" and len(raw["contact"]) == 20
    assert "secret.example" not in json.dumps(query(db_path, "SELECT * FROM quarantine"), default=str)

    # A later file hashes the same address to the same value (same salt, same formula).
    later = write_csv(tmp_path, "b.csv", f"request_id,ts,p,contact\nc,{TS},0.3,ann@secret.example\n")
    ingest_one(db_path, later, model="m", model_version="v1")
    assert query(db_path, "SELECT count(DISTINCT contact) FROM predictions") == [(1,)]


@pytest.mark.parametrize(("name", "role", "message"), [
    ("contact", "secret", "unknown role 'secret'"),
    ("nope", "pii", "no predictions column named 'nope' is registered (known: contact, email)"),
    ("email", "feature", "column 'email' holds salted hashes (pii)"),
])
def test_set_column_role_errors(tmp_path: Path, db_path: Path, name: str, role: str, message: str) -> None:
    path = write_csv(tmp_path, "a.csv", f"request_id,ts,p,contact,email\na,{TS},0.1,x,e@x.org\n")
    ingest_one(db_path, path, model="m", model_version="v1")
    with write_connection(db_path) as con:
        with pytest.raises(SchemaError) as info:
            schema.set_column_role(con, "predictions", name, role)
    assert message in str(info.value)


def test_flagged_pii_is_hashed_before_storage(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", f"request_id,ts,p,card\na,{TS},0.1,4111-1111-1111-1111\n")
    ingest_one(db_path, path, model="m", model_version="v1", pii=("card",))
    assert query(db_path, "SELECT role, role_source FROM columns") == [("pii", "flag")]
    (card,) = query(db_path, "SELECT card FROM predictions")[0]
    assert card != "4111-1111-1111-1111" and len(card) == 20


# --------------------------------------------------------------------------- labels
def test_label_statistics_and_flags(tmp_path: Path, db_path: Path) -> None:
    preds = write_csv(tmp_path, "p.csv", f"request_id,ts,p\na,{TS},0.1\nb,{TS},0.2\nc,{TS},0.3\n")
    labels = write_csv(tmp_path, "l.csv", """
        request_id,label,labelled_at
        a,1,2026-01-16T10:00:00Z
        b,0,2026-01-14T10:00:00Z
        zz,1,2026-01-16T10:00:00Z
        """)
    ingest_one(db_path, preds, model="m", model_version="v1")
    result = ingest_one(db_path, labels)

    # zz has no prediction (kept, unmatched); b's label is timed a day before its prediction.
    assert (result.n_accepted, result.n_unmatched_labels, result.n_label_before_prediction) == (3, 1, 1)
    assert query(db_path, "SELECT n_unmatched_labels, n_label_before_prediction FROM ingest_runs "
                          "WHERE kind = 'labels'") == [(1, 1)]
    assert query(db_path, "SELECT request_id, label, label_before_prediction FROM labelled ORDER BY 1") == [
        ("a", "1", False), ("b", "0", True)]
    assert query(db_path, "SELECT request_id FROM unmatched_labels") == [("zz",)]


def test_label_arriving_before_its_prediction_matches_later(tmp_path: Path, db_path: Path) -> None:
    ingest_one(db_path, write_csv(tmp_path, "l.csv", "request_id,label\nlate,1\n"))
    ingest_one(db_path, write_csv(tmp_path, "p.csv", f"request_id,ts,p\nlate,{TS},0.8\n"),
               model="m", model_version="v1")
    assert query(db_path, "SELECT request_id, label FROM labelled") == [("late", "1")]
    assert query(db_path, "SELECT count(*) FROM unmatched_labels") == [(0,)]


def test_label_repeats_across_files(tmp_path: Path, db_path: Path) -> None:
    first = write_csv(tmp_path, "l1.csv", "request_id,label,labelled_at\na,1,2026-01-16\nb,0,2026-01-16\n")
    # a: the same label at the same time ('yes' is '1'): duplicate. b: a different label.
    second = write_csv(tmp_path, "l2.csv", "request_id,label,labelled_at\na,yes,2026-01-16\nb,1,2026-01-17\n")
    ingest_one(db_path, first)
    result = ingest_one(db_path, second)
    assert (result.n_duplicate, result.reasons) == (1, {"conflicting_label": 1})
    assert query(db_path, "SELECT request_id, label FROM labels ORDER BY 1") == [("a", "1"), ("b", "0")]


# --------------------------------------------------------------------------- kpi
def test_kpi_files(tmp_path: Path, db_path: Path) -> None:
    first = write_csv(tmp_path, "k1.csv", """
        day,kpi,value
        2026-01-15,revenue,100.5
        2026-01-15,orders,12
        2026-01-16,revenue,98
        """)
    second = write_csv(tmp_path, "k2.csv", """
        day,kpi,value
        2026-01-16,revenue,98
        2026-01-17,revenue,101
        2026-01-15,orders,13
        """)
    r1 = ingest_one(db_path, first)
    r2 = ingest_one(db_path, second)
    assert (r1.kind, r1.n_accepted) == ("kpi", 3)
    # (kpi, ts) is the key: the repeat is a duplicate, a new value for it a conflict.
    assert (r2.n_accepted, r2.n_duplicate, r2.reasons) == (1, 1, {"conflicting_duplicate": 1})
    assert query(db_path, "SELECT ts, kpi, value FROM kpis ORDER BY kpi, ts") == [
        (datetime(2026, 1, 15, tzinfo=UTC), "orders", 12.0),
        (datetime(2026, 1, 15, tzinfo=UTC), "revenue", 100.5),
        (datetime(2026, 1, 16, tzinfo=UTC), "revenue", 98.0),
        (datetime(2026, 1, 17, tzinfo=UTC), "revenue", 101.0)]


# --------------------------------------------------------------------------- models
def test_model_shape_change_rejects_the_file(tmp_path: Path, db_path: Path) -> None:
    ingest_one(db_path, write_csv(tmp_path, "bin.csv", f"request_id,ts,p\na,{TS},0.1\n"),
               model="m", model_version="v1")
    multi = write_csv(tmp_path, "multi.csv", f"request_id,ts,p_a,p_b\nb,{TS},0.4,0.6\n")
    result = only_file(run_ingest(db_path, multi, model="m", model_version="v2",
                                  class_probs=(("a", "p_a"), ("b", "p_b"))))
    assert result.status == "rejected"
    assert "model 'm' is registered as binary" in result.message
    assert scalar(db_path, "SELECT count(*) FROM predictions") == 1
    assert query(db_path, "SELECT model, task, classes FROM models") == [("m", "binary", ["0", "1"])]


def test_a_rejected_file_does_not_stop_the_others(tmp_path: Path, db_path: Path) -> None:
    good = write_csv(tmp_path, "good.csv", f"request_id,ts,p\na,{TS},0.1\n")
    no_score = write_csv(tmp_path, "no_score.csv", f"request_id,ts,other\nb,{TS},x\n")
    later = write_csv(tmp_path, "later.csv", f"request_id,ts,p\nc,{TS},0.3\n")
    report = run_ingest(db_path, [good, no_score, later], model="m", model_version="v1", kind="predictions")
    assert [f.status for f in report.files] == ["ok", "rejected", "ok"]
    assert not report.ok
    assert "required field(s) missing for a predictions file: score" in report.files[1].message
    assert query(db_path, "SELECT request_id FROM predictions ORDER BY 1") == [("a",), ("c",)]


def test_a_label_without_model_collides_with_a_model_label(tmp_path: Path, db_path: Path) -> None:
    # The analysis joins a model-less label to every model's prediction of the request, so a
    # second label for the same request (with or without a model) must not be stored as well.
    ingest_one(db_path, write_csv(tmp_path, "l1.csv", """\
        request_id,label,model
        a,1,m
        b,0,m
        """), kind="labels")
    result = ingest_one(db_path, write_csv(tmp_path, "l2.csv", """\
        request_id,label
        a,0
        b,0
        c,1
        """), kind="labels")
    assert_accounted(result)
    assert (result.n_accepted, result.n_duplicate, result.reasons) == (1, 1, {"conflicting_label": 1})
    assert query(db_path, "SELECT request_id, model, label FROM labels ORDER BY request_id") == [
        ("a", "m", "1"), ("b", "m", "0"), ("c", None, "1")]


def test_a_label_without_model_matching_several_models(tmp_path: Path, db_path: Path) -> None:
    ingest_one(db_path, write_csv(tmp_path, "l1.csv", """\
        request_id,label,model
        a,1,m
        a,1,n
        """), kind="labels")
    result = ingest_one(db_path, write_csv(tmp_path, "l2.csv", """\
        request_id,label
        a,1
        """), kind="labels")
    assert (result.n_duplicate, result.n_quarantined) == (1, 0)
    assert scalar(db_path, "SELECT count(*) FROM labels") == 2


def test_spill_folders_of_killed_ingests_are_removed(tmp_path: Path, db_path: Path) -> None:
    import tempfile

    # A pid above Linux's maximum (2**22) cannot be alive: the folder is a dead ingest's.
    stale = Path(tempfile.gettempdir()) / "lossboard-stage-4194999-x"
    stale.mkdir(exist_ok=True)
    (stale / "spill.tmp").write_bytes(b"0" * 10)
    ingest_one(db_path, write_csv(tmp_path, "p.csv", "request_id,ts,p\n" f"a,{TS},0.5\n"),
               model="m", model_version="v1")
    assert not stale.exists()


@pytest.mark.parametrize("kind", ["predictions", "labels"])
def test_rows_are_stored_in_file_order(tmp_path: Path, db_path: Path, kind: str) -> None:
    # The insert relies on DuckDB keeping the staging order (no ORDER BY for predictions):
    # the table's physical order must follow the file's row numbers.
    n = 60_000
    if kind == "predictions":
        lines = ["request_id,ts,p"] + [f"r{i},{TS},{(i % 97) / 97}" for i in range(n)]
        flags = {"model": "m", "model_version": "v1"}
    else:
        lines = ["request_id,label,model"] + [f"r{i},{i % 2},m" for i in range(n)]
        flags = {"kind": "labels"}
    result = ingest_one(db_path, write_csv(tmp_path, "rows.csv", "\n".join(lines) + "\n"), **flags)
    assert result.n_accepted == n
    table = "predictions" if kind == "predictions" else "labels"
    out_of_order = scalar(db_path, f"SELECT count(*) FROM (SELECT _lb_row_number, lag(_lb_row_number) "
                                   f"OVER (ORDER BY rowid) AS prev FROM {table}) WHERE prev > _lb_row_number")
    assert out_of_order == 0


def test_the_database_is_checkpointed_after_each_file(tmp_path: Path, db_path: Path) -> None:
    # The staging connection turns automatic checkpoints off for its private in-memory
    # database (load._staging_connection); the setting is shared with the attached main
    # database, which must still end every ingest checkpointed, with no WAL left behind.
    lines = ["request_id,ts,p,region"] + [f"r{i},{TS},{(i % 89) / 89},eu" for i in range(50_000)]
    preds = write_csv(tmp_path, "p.csv", "\n".join(lines) + "\n")
    labels = write_csv(tmp_path, "l.csv", "request_id,label\n" + "".join(
        f"r{i},{i % 2}\n" for i in range(0, 50_000, 2)))
    wal = Path(str(db_path) + ".wal")
    assert ingest_one(db_path, preds, model="m", model_version="v1").status == "ok"
    assert not wal.exists()
    assert ingest_one(db_path, labels, kind="labels").n_accepted == 25_000
    assert not wal.exists()
    assert scalar(db_path, "SELECT count(label) FROM predictions") == 25_000
