"""Defects a user audit of the ingest found (eighth session), each with the case that showed it:
mixed-type JSON fields, a text score column with one bad value, model-less labels no model
accepts, raw PII left in malformed lines, column names differing in case only, a user column
named rowid, files a directory holds that lossboard does not read, empty files."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest

from conftest import (
    TS, assert_accounted, ingest_one, only_file, quarantined, query, run_ingest, write_csv,
    write_text,
)
from lossboard.db import write_connection
from lossboard.ingest import schema
from lossboard.ingest.readers import expand


# --------------------------------------------------------------------------- JSON
def test_json_timestamps_mixing_text_and_epoch_seconds_are_all_read(tmp_path: Path,
                                                                    db_path: Path) -> None:
    # DuckDB types such a field JSON; its text kept the quotes and every row was bad_ts.
    path = write_text(tmp_path, "mixed.jsonl", """
        {"id": "a", "ts": "2026-11-01T00:00:00Z", "p": 0.1}
        {"id": "b", "ts": 1793491200, "p": 0.2}
        {"id": "c", "ts": "not a time", "p": 0.3}
    """)
    result = ingest_one(db_path, path, model="m", model_version="v")
    assert_accounted(result)
    assert (result.n_accepted, result.reasons) == (2, {"bad_ts": 1})
    assert query(db_path, "SELECT request_id, epoch(ts)::BIGINT FROM predictions ORDER BY 1") == [
        ("a", 1793491200), ("b", 1793491200)]
    # The detail shows the value as the file has it, without JSON quotes.
    assert quarantined(db_path) == [(3, "bad_ts", "not a timestamp in [1970, 2200): not a time")]


def test_json_label_times_mixing_text_and_numbers(tmp_path: Path, db_path: Path) -> None:
    path = write_text(tmp_path, "labels.jsonl", """
        {"id": "x1", "lab": 1, "resolved_at": "2026-11-05T00:00:00Z"}
        {"id": "x2", "lab": "0", "resolved_at": 1793491200}
    """)
    result = ingest_one(db_path, path, kind="labels",
                        map={"request_id": "id", "label": "lab", "label_ts": "resolved_at"})
    assert (result.n_accepted, result.reasons) == (2, {})
    assert query(db_path, "SELECT request_id, label, epoch(label_ts)::BIGINT FROM labels "
                          "ORDER BY 1") == [("x1", "1", 1793836800), ("x2", "0", 1793491200)]


# --------------------------------------------------------------------------- text scores
@pytest.mark.parametrize("kind_flag", [None, "predictions"])
def test_one_bad_score_quarantines_its_row_not_the_file(tmp_path: Path, db_path: Path,
                                                        kind_flag: str | None) -> None:
    # "abc" makes the sniffer type p as text; auto-detection wanted a number and rejected
    # the file ("required field missing: score ... columns found: id, ts, p").
    path = write_csv(tmp_path, "p.csv", f"""
        id,ts,p
        q1,{TS},0.1
        q2,{TS},abc
        q3,{TS},0.3
    """)
    result = ingest_one(db_path, path, model="m", model_version="v", kind=kind_flag)
    assert (result.n_read, result.n_accepted, result.reasons) == (3, 2, {"bad_score": 1})
    assert quarantined(db_path) == [(2, "bad_score", "p is not a number: abc")]
    assert query(db_path, "SELECT request_id, p FROM predictions ORDER BY 1") == [
        ("q1", 0.1), ("q3", 0.3)]


def test_one_bad_kpi_value_quarantines_its_row(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "kpi.csv", f"""
        ts,kpi,value
        {TS},revenue,10.5
        {TS},fraud_losses,abc
        {TS},chargebacks,3
    """)
    result = ingest_one(db_path, path, kind="kpi")
    assert (result.n_accepted, result.reasons) == (2, {"bad_value": 1})


def test_a_text_column_of_class_names_is_still_not_the_score(tmp_path: Path,
                                                             db_path: Path) -> None:
    # The guard the numeric share keeps: "prediction" holding class names is no probability.
    path = write_csv(tmp_path, "p.csv", f"""
        id,ts,prediction
        a,{TS},fraud
        b,{TS},legit
    """)
    result = only_file(run_ingest(db_path, path, model="m", model_version="v",
                                  kind="predictions"))
    assert result.status == "rejected"
    assert "required field(s) missing" in (result.message or "")


# --------------------------------------------------------------------------- labels
def test_a_label_without_model_that_no_registered_model_accepts_is_bad(tmp_path: Path,
                                                                       db_path: Path) -> None:
    ingest_one(db_path, write_csv(tmp_path, "p.csv", f"""
        id,ts,p
        o1,{TS},0.9
        o3,{TS},0.5
    """), model="fraud", model_version="v1")
    result = ingest_one(db_path, write_csv(tmp_path, "l.csv", """
        id,is_fraud
        o1,1
        o3,maybe
    """), map={"label": "is_fraud", "request_id": "id"})
    assert (result.n_accepted, result.reasons) == (1, {"bad_label": 1})
    assert quarantined(db_path) == [
        (2, "bad_label", "no registered model has this label (labels: 0, 1); got maybe")]
    assert query(db_path, "SELECT request_id, label FROM predictions ORDER BY 1") == [
        ("o1", "1"), ("o3", None)]


def test_a_label_without_model_may_be_a_class_of_any_registered_model(tmp_path: Path,
                                                                      db_path: Path) -> None:
    ingest_one(db_path, write_csv(tmp_path, "b.csv", f"""
        id,ts,p
        r1,{TS},0.9
    """), model="binary", model_version="v1")
    ingest_one(db_path, write_csv(tmp_path, "m.csv", f"""
        id,ts,cat,dog
        r2,{TS},0.3,0.7
    """), model="pets", model_version="v1", class_probs=(("cat", "cat"), ("dog", "dog")))
    result = ingest_one(db_path, write_csv(tmp_path, "l.csv", """
        id,label
        r1,1
        r2,dog
        r3,bird
    """))
    assert (result.n_accepted, result.reasons) == (2, {"bad_label": 1})
    assert quarantined(db_path) == [
        (3, "bad_label", "no registered model has this label (labels: 0, 1, cat, dog); got bird")]


def test_labels_before_any_model_is_registered_are_kept(tmp_path: Path, db_path: Path) -> None:
    result = ingest_one(db_path, write_csv(tmp_path, "l.csv", """
        id,label
        r1,maybe
    """), kind="labels")
    assert (result.n_accepted, result.reasons) == (1, {})


# --------------------------------------------------------------------------- PII
def test_columns_set_pii_also_withholds_malformed_lines(tmp_path: Path, db_path: Path) -> None:
    secret = "zed98.hidden@corp.test"
    path = write_csv(tmp_path, "c.csv", f"""
        id,ts,p,contact
        c1,{TS},0.1,ann@corp.test
        c2,{TS},0.2,{secret},EXTRA
    """)
    result = ingest_one(db_path, path, model="m", model_version="v")
    assert result.reasons == {"malformed_row": 1}
    with write_connection(db_path) as con:
        schema.set_column_role(con, "predictions", "contact", "pii")
    schema.compact_database(db_path)

    (raw,) = query(db_path, "SELECT CAST(raw AS VARCHAR) FROM quarantine")[0]
    assert secret not in raw and "line_sha256" in raw
    assert secret.encode() not in db_path.read_bytes()


# --------------------------------------------------------------------------- names
def test_a_later_file_may_spell_a_column_in_another_case(tmp_path: Path, db_path: Path) -> None:
    first = write_csv(tmp_path, "a.csv", f"""
        id,ts,p,region
        a,{TS},0.5,eu
    """)
    later = write_csv(tmp_path, "b.csv", f"""
        id,ts,p,REGION
        b,{TS},0.5,us
    """)
    report = run_ingest(db_path, [first, later], model="m", model_version="v")
    assert [f.status for f in report.files] == ["ok", "ok"], [f.message for f in report.files]
    assert query(db_path, "SELECT request_id, region FROM predictions ORDER BY 1") == [
        ("a", "eu"), ("b", "us")]
    assert query(db_path, "SELECT name FROM columns") == [("region",)]


def test_a_column_named_like_a_lossboard_field_in_another_case(tmp_path: Path,
                                                               db_path: Path) -> None:
    path = write_csv(tmp_path, "a.csv", f"""
        id,ts,p,Label
        a,{TS},0.5,1
    """)
    result = ingest_one(db_path, path, model="m", model_version="v")
    assert result.new_columns == ("src_Label",)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_user_column_named_rowid(tmp_path: Path, db_path: Path, suffix: str) -> None:
    # Stored as src_rowid: a stored rowid would hide DuckDB's row id, which the label copy
    # writes by; and a CSV's rowid hid the row order of the staging copy.
    src = tmp_path / f"p{suffix}"
    con = duckdb.connect()
    fmt = {".csv": "(HEADER)", ".jsonl": "(FORMAT json)", ".parquet": "(FORMAT parquet)"}[suffix]
    con.execute(f"COPY (SELECT 'w' || i AS id, TIMESTAMPTZ '{TS}' AS ts, 0.5 AS p, 100 - i AS rowid "
                f"FROM range(3) t(i)) TO '{src}' {fmt}")
    con.close()
    result = ingest_one(db_path, src, model="m", model_version="v")
    assert result.n_accepted == 3 and result.new_columns == ("src_rowid",)
    ingest_one(db_path, write_csv(tmp_path, "l.csv", """
        id,label
        w0,1
        w2,0
    """), kind="labels")
    assert query(db_path, "SELECT request_id, src_rowid, _lb_row_number, label FROM predictions "
                          "ORDER BY 1") == [("w0", 100, 1, "1"), ("w1", 99, 2, None),
                                            ("w2", 98, 3, "0")]


# --------------------------------------------------------------------------- files
def test_a_directory_reports_the_files_it_did_not_read(tmp_path: Path, db_path: Path) -> None:
    d = tmp_path / "logs"
    write_csv(d, "a.csv", f"""
        id,ts,p
        a,{TS},0.5
    """)
    with gzip.open(d / "b.tab.gz", "wt") as f:
        f.write(f"id\tts\tp\nb\t{TS}\t0.5\n")
    (d / "c.csv.bz2").write_bytes(b"not read")
    (d / "_SUCCESS").write_text("")
    (d / "README.md").write_text("what these logs are")  # beside logs, plainly not one
    (d / ".hidden.csv").write_text("")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'z' AS id, '{TS}' AS ts, 0.5 AS p) TO '{d / 'z.csv.zst'}' "
                "(HEADER, COMPRESSION zstd)")
    con.close()

    ignored: list[Path] = []
    names = [s.path.name for s in expand(d, ignored)]
    assert names == ["a.csv", "b.tab.gz", "z.csv.zst"]
    assert [p.name for p in ignored] == ["c.csv.bz2"]

    report = run_ingest(db_path, d, model="m", model_version="v")
    assert [f.status for f in report.files] == ["ok", "ok", "ok"]
    assert report.ignored == (str(d / "c.csv.bz2"),)
    assert report.as_json()["ignored"] == [str(d / "c.csv.bz2")]


def test_an_empty_file_says_so(tmp_path: Path, db_path: Path) -> None:
    for name in ("e.csv", "e.jsonl"):
        (tmp_path / name).write_bytes(b"")
        result = only_file(run_ingest(db_path, tmp_path / name, model="m", model_version="v"))
        assert result.status == "rejected"
        assert result.message == f"{tmp_path / name}: the file is empty (0 bytes); there is nothing to ingest"


# --------------------------------------------------------------------------- re-sent bad rows
def test_bad_rows_an_earlier_file_brought_are_duplicates(tmp_path: Path, db_path: Path) -> None:
    # A re-export of the same rows (other bytes: one more trailing newline, so not skipped by
    # content hash) must not quarantine its bad rows a second time.
    text = f"""
        id,ts,p,email
        a,{TS},0.1,ann@x.test
        b,not a time,0.2,bob@x.test
        c,{TS},1.5,cid@x.test
        d,{TS},0.3,dan@x.test,EXTRA
        e,{TS},0.4,eve@x.test
    """
    first = ingest_one(db_path, write_csv(tmp_path, "day.csv", text), model="m", model_version="v")
    assert_accounted(first)
    assert (first.n_accepted, first.n_duplicate, first.reasons) == (
        2, 0, {"bad_ts": 1, "malformed_row": 1, "score_out_of_range": 1})

    again = ingest_one(db_path, write_csv(tmp_path, "day-reexport.csv", text + "\n"),
                       model="m", model_version="v")
    assert_accounted(again)
    assert (again.n_accepted, again.n_duplicate, again.n_quarantined) == (0, 5, 0)
    assert query(db_path, "SELECT file_id, row_number, reason FROM quarantine ORDER BY 2") == [
        (1, 2, "bad_ts"), (1, 3, "score_out_of_range"), (1, 4, "malformed_row")]

    # A bad row that differs (another value) is new, and is quarantined.
    changed = text.replace("1.5", "2.5")
    third = ingest_one(db_path, write_csv(tmp_path, "day-fixed.csv", changed),
                       model="m", model_version="v")
    assert (third.n_duplicate, third.reasons) == (4, {"score_out_of_range": 1})
