"""lossboard.ingest.validate: the row rules, observed through an ingest.

Timestamps become the right UTC instant (compared with Python's datetime), every quarantine
reason of the README's table has its own hand-made row with its record number, scores keep
NaN/inf, logits go through a sigmoid that matches numpy, labels are canonical text.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from conftest import (
    TS, assert_accounted, ingest_one, query, quarantined, run_ingest, write_csv, write_parquet,
)
from lossboard.ingest.schema import REASONS

BERLIN = ZoneInfo("Europe/Berlin")
BASE = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
EPOCH_S = int(BASE.timestamp())  # 1768471200
US = timedelta(microseconds=1)

# --------------------------------------------------------------------------- timestamps (text)
# (case id, text in the file, expected UTC instant). Expected values are Python datetimes.
TS_OK = [
    ("date_only", "2026-01-15", datetime(2026, 1, 15, tzinfo=UTC)),
    ("iso_t_z", "2026-01-15T10:00:00Z", BASE),
    ("iso_space_naive", "2026-01-15 10:00:00", BASE),
    ("iso_t_naive", "2026-01-15T10:00:00", BASE),
    ("iso_fraction_z", "2026-01-15T10:00:00.123456Z", BASE + 123456 * US),
    ("offset_plus_2", "2026-01-15T10:00:00+02:00", BASE - timedelta(hours=2)),
    ("offset_minus_0530", "2026-01-15T10:00:00-05:30", BASE + timedelta(hours=5, minutes=30)),
    ("epoch_s", str(EPOCH_S), BASE),
    ("epoch_s_fraction", f"{EPOCH_S}.5", BASE + timedelta(seconds=0.5)),
    ("epoch_ms", str(EPOCH_S * 1000 + 123), BASE + timedelta(milliseconds=123)),
    ("epoch_us", str(EPOCH_S * 10**6 + 123456), BASE + 123456 * US),
    ("epoch_ns", str(EPOCH_S * 10**9 + 123456000), BASE + 123456 * US),
    ("padded", "  2026-01-15T10:00:00Z  ", BASE),
    # The accepted range is [1970, 2200): both ends, from the README.
    ("epoch_zero", "0", datetime(1970, 1, 1, tzinfo=UTC)),
    ("last_second", "2199-12-31T23:59:59Z", datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)),
]
TS_BAD = [
    ("garbage", "yesterday", "bad_ts"),
    ("empty", "", "missing_ts"),
    ("year_1900", "1900-01-01", "bad_ts"),
    ("year_2500", "2500-01-01T00:00:00Z", "bad_ts"),
    ("year_2200", "2200-01-01", "bad_ts"),
    ("before_1970", "1969-12-31T23:59:59Z", "bad_ts"),
    ("negative_epoch", "-1", "bad_ts"),
    ("month_13", "2026-13-01", "bad_ts"),
    ("infinity", "infinity", "bad_ts"),
    # < 1e11 is read as seconds: 99,999,999,999 s is the year 5138, a unit mistake.
    ("epoch_s_too_big", "99999999999", "bad_ts"),
]


def _ts_csv(tmp_path: Path, cases: list[tuple[str, str, object]]) -> Path:
    lines = ["request_id,ts,p"] + [f'{rid},"{text}",0.5' for rid, text, _ in cases]
    return write_csv(tmp_path, "ts.csv", "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ts_utc_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ts_utc")
    db = tmp / "lb.duckdb"
    result = ingest_one(db, _ts_csv(tmp, TS_OK + TS_BAD), model="m", model_version="v1")
    assert (result.n_accepted, result.n_quarantined) == (len(TS_OK), len(TS_BAD))
    return db


@pytest.mark.parametrize(("rid", "text", "expected"), TS_OK, ids=[c[0] for c in TS_OK])
def test_text_timestamp_is_the_right_utc_instant(ts_utc_db: Path, rid: str, text: str,
                                                 expected: datetime) -> None:
    (ts,) = query(ts_utc_db, "SELECT ts FROM predictions WHERE request_id = ?", [rid])[0]
    assert ts == expected


@pytest.mark.parametrize(("rid", "text", "reason"), TS_BAD, ids=[c[0] for c in TS_BAD])
def test_bad_text_timestamp_is_quarantined(ts_utc_db: Path, rid: str, text: str, reason: str) -> None:
    rows = query(ts_utc_db, "SELECT reason, detail, json_extract_string(raw, '$.ts') FROM quarantine "
                            "WHERE json_extract_string(raw, '$.request_id') = ?", [rid])
    assert len(rows) == 1
    got_reason, detail, raw_ts = rows[0]
    assert got_reason == reason
    if reason == "bad_ts":
        # The detail shows the offending value so the user can find the unit mistake.
        assert detail == f"not a timestamp in [1970, 2200): {text}"
        assert raw_ts == text


BERLIN_CASES = [
    # Naive values are Berlin wall-clock time: UTC+1 in winter, UTC+2 in summer.
    ("naive_winter", "2026-01-15 10:00:00", datetime(2026, 1, 15, 10, tzinfo=BERLIN)),
    ("naive_summer", "2026-07-15 10:00:00", datetime(2026, 7, 15, 10, tzinfo=BERLIN)),
    ("date_only", "2026-01-15", datetime(2026, 1, 15, tzinfo=BERLIN)),
    # An explicit offset, or an epoch, is already an instant: --timezone does not move it.
    ("with_z", "2026-01-15T10:00:00Z", BASE),
    ("with_offset", "2026-01-15T10:00:00+02:00", BASE - timedelta(hours=2)),
    ("epoch_s", str(EPOCH_S), BASE),
]


@pytest.fixture(scope="module")
def ts_berlin_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ts_berlin")
    db = tmp / "lb.duckdb"
    ingest_one(db, _ts_csv(tmp, BERLIN_CASES), model="m", model_version="v1", timezone="Europe/Berlin")
    return db


@pytest.mark.parametrize(("rid", "text", "expected"), BERLIN_CASES, ids=[c[0] for c in BERLIN_CASES])
def test_timezone_flag_applies_to_naive_values_only(ts_berlin_db: Path, rid: str, text: str,
                                                    expected: datetime) -> None:
    (ts,) = query(ts_berlin_db, "SELECT ts FROM predictions WHERE request_id = ?", [rid])[0]
    assert ts == expected.astimezone(UTC)


def test_naive_winter_berlin_is_utc_minus_one_hour(ts_berlin_db: Path) -> None:
    # Spelled out once: 10:00 in Berlin on 15 January is 09:00 UTC.
    (ts,) = query(ts_berlin_db, "SELECT ts FROM predictions WHERE request_id = 'naive_winter'")[0]
    assert ts == datetime(2026, 1, 15, 9, tzinfo=UTC)


def test_unknown_timezone_rejects_the_file(tmp_path: Path, db_path: Path) -> None:
    path = _ts_csv(tmp_path, TS_OK[:1])
    result = run_ingest(db_path, path, model="m", model_version="v1", timezone="Mars/Olympus").files[0]
    assert result.status == "rejected"
    assert "unknown time zone 'Mars/Olympus'" in result.message


# --------------------------------------------------------------------------- timestamps (native)
NAIVE = datetime(2026, 1, 15, 10, 0, 0, 123456)
NEW_YORK = ZoneInfo("America/New_York")
# (case id, Parquet type, value, expected in a UTC ingest, expected with --timezone
# Europe/Berlin or None when that ingest skips the type). Rows of one type share a file.
PARQUET_TS = [
    ("timestamp_us", pa.timestamp("us"), NAIVE, NAIVE.replace(tzinfo=UTC), NAIVE.replace(tzinfo=BERLIN)),
    ("timestamp_ms", pa.timestamp("ms"), NAIVE.replace(microsecond=123000),
     NAIVE.replace(microsecond=123000, tzinfo=UTC), None),
    ("timestamp_ns", pa.timestamp("ns"), NAIVE, NAIVE.replace(tzinfo=UTC), None),
    ("timestamptz_utc", pa.timestamp("us", tz="UTC"), NAIVE.replace(tzinfo=UTC),
     NAIVE.replace(tzinfo=UTC), None),
    # A zoned value is an instant: neither the file's zone nor --timezone moves it.
    ("timestamptz_new_york", pa.timestamp("us", tz="America/New_York"), NAIVE.replace(tzinfo=NEW_YORK),
     NAIVE.replace(tzinfo=NEW_YORK), NAIVE.replace(tzinfo=NEW_YORK)),
    ("date", pa.date32(), date(2026, 1, 15), datetime(2026, 1, 15, tzinfo=UTC),
     datetime(2026, 1, 15, tzinfo=BERLIN)),
    ("epoch_s_int", pa.int64(), EPOCH_S, BASE, BASE),
    ("epoch_ms_int", pa.int64(), EPOCH_S * 1000 + 5, BASE + timedelta(milliseconds=5), BASE + timedelta(milliseconds=5)),
    ("epoch_s_double", pa.float64(), EPOCH_S + 0.25, BASE + timedelta(seconds=0.25), None),
]
PARQUET_TS_BAD = [
    ("timestamp_1900", pa.timestamp("us"), datetime(1900, 1, 1), "bad_ts"),
    ("timestamp_null", pa.timestamp("us"), None, "missing_ts"),
    ("epoch_nan", pa.float64(), float("nan"), "bad_ts"),
]


def _parquet_ts_db(tmp: Path, berlin: bool) -> Path:
    db = tmp / "lb.duckdb"
    by_type: dict[str, tuple[pa.DataType, list[tuple[str, object]]]] = {}
    for case in PARQUET_TS + PARQUET_TS_BAD:
        rid, arrow_type, value = case[:3]
        if berlin and (len(case) == 4 or case[4] is None):
            continue
        by_type.setdefault(str(arrow_type), (arrow_type, []))[1].append((rid, value))
    paths = [write_parquet(tmp, f"ts_{i}.parquet", {
                 "request_id": [rid for rid, _ in rows],
                 "ts": pa.array([v for _, v in rows], arrow_type),
                 "p": [0.5] * len(rows)})
             for i, (arrow_type, rows) in enumerate(by_type.values())]
    flags = {"timezone": "Europe/Berlin"} if berlin else {}
    report = run_ingest(db, paths, model="m", model_version="v1", **flags)
    assert [f.status for f in report.files] == ["ok"] * len(paths), [f.message for f in report.files]
    return db


@pytest.fixture(scope="module")
def parquet_ts_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"UTC": _parquet_ts_db(tmp_path_factory.mktemp("pq_utc"), berlin=False),
            "Europe/Berlin": _parquet_ts_db(tmp_path_factory.mktemp("pq_berlin"), berlin=True)}


@pytest.mark.parametrize(("rid", "arrow_type", "value", "expected_utc", "expected_berlin"), PARQUET_TS,
                         ids=[c[0] for c in PARQUET_TS])
def test_native_timestamp_types(parquet_ts_dbs: dict[str, Path], rid: str, arrow_type: pa.DataType,
                                value: object, expected_utc: datetime,
                                expected_berlin: datetime | None) -> None:
    for zone, expected in (("UTC", expected_utc), ("Europe/Berlin", expected_berlin)):
        if expected is None:
            continue
        (ts,) = query(parquet_ts_dbs[zone], "SELECT ts FROM predictions WHERE request_id = ?", [rid])[0]
        assert ts == expected.astimezone(UTC), zone


@pytest.mark.parametrize(("rid", "arrow_type", "value", "reason"), PARQUET_TS_BAD,
                         ids=[c[0] for c in PARQUET_TS_BAD])
def test_native_timestamp_bad_values(parquet_ts_dbs: dict[str, Path], rid: str,
                                     arrow_type: pa.DataType, value: object, reason: str) -> None:
    rows = query(parquet_ts_dbs["UTC"], "SELECT reason FROM quarantine WHERE "
                                        "json_extract_string(raw, '$.request_id') = ?", [rid])
    assert rows == [(reason,)]


# --------------------------------------------------------------------------- quarantine reasons
# One hand-made file per kind, each bad row breaking exactly one rule. Expected
# (file, row_number, reason, detail): the row number is the 1-based record position in the
# file (header excluded), the detail text is the message validate.py/load.py writes.
PREDICTIONS = f"""
request_id,ts,model,model_version,p,weight,email
r01,{TS},m,v1,0.5,1,alice@secret.example
,{TS},m,v1,0.5,1,bob@secret.example
r03,,m,v1,0.5,1,carol@secret.example
r04,yesterday,m,v1,0.5,1,dan@secret.example
r05,{TS},,v1,0.5,1,erin@secret.example
r06,{TS},m,,0.5,1,frank@secret.example
r07,{TS},m,v1,,1,grace@secret.example
r08,{TS},m,v1,high,1,heidi@secret.example
r09,{TS},m,v1,1.5,1,ivan@secret.example
r10,{TS},m,v1,-0.01,1,judy@secret.example
r11,{TS},m,v1,0.5,-1,mallory@secret.example
r12,{TS},m,v1,0.5,abc,niaj@secret.example
r13,{TS},m,v1,0.5,inf,olivia@secret.example
r01,{TS},m,v1,0.5,1,alice@secret.example
r01,{TS},m,v1,0.6,1,alice@secret.example
r16,{TS},m,v1,0.5,,peggy@secret.example
r17,{TS},m,v1,0.25,0,alice@secret.example
"""
MULTICLASS = f"""
request_id,ts,p_low,p_mid,p_high
t01,{TS},0.1,0.2,0.7
t02,{TS},,,
t03,{TS},0.2,,0.8
t04,{TS},0.2,x,0.8
t05,{TS},0.2,1.2,-0.4
"""
LABELS = """
request_id,model,label,labelled_at
r01,m,1,2026-01-16T10:00:00Z
,m,1,2026-01-16T10:00:00Z
r16,m,,2026-01-16T10:00:00Z
r17,m,7,2026-01-16T10:00:00Z
t01,tri,x,2026-01-16T10:00:00Z
t01,tri,high,2026-01-16T10:00:00Z
r09,m,1,not a date
r01,m,0,2026-01-16T11:00:00Z
r01,m,true,2026-01-16T10:00:00Z
"""
KPI = f"""
ts,kpi,value
{TS},revenue,10.5
{TS},,3
,revenue,4
2026-01-16T10:00:00Z,revenue,lots
{TS},revenue,11
{TS},revenue,10.5
"""
# Lines with too many / too few fields, around good lines: record numbers must not shift.
MALFORMED = f"""
request_id,ts,p
m1,{TS},0.1
m2,{TS},0.2,EXTRA
m3,{TS},0.3
m4,{TS}
m5,{TS},1.7
"""
MALFORMED_PII = f"""
request_id,ts,p,email
q1,{TS},0.1,quentin@secret.example
q2,{TS},0.2,rupert@secret.example,EXTRA
"""
SECOND_FILE = f"""
request_id,ts,model,model_version,p,weight,email
r16,{TS},m,v1,0.5,,peggy@secret.example
r17,{TS},m,v1,0.99,0,alice@secret.example
"""

REASON_CASES = [
    ("preds.csv", 2, "missing_request_id", "request id is empty"),
    ("preds.csv", 3, "missing_ts", "timestamp is empty"),
    ("preds.csv", 4, "bad_ts", "not a timestamp in [1970, 2200): yesterday"),
    ("preds.csv", 5, "missing_model", "model is empty and no --model given"),
    ("preds.csv", 6, "missing_model_version", "model version is empty and no --model-version given"),
    ("preds.csv", 7, "missing_score", "p is empty"),
    ("preds.csv", 8, "bad_score", "p is not a number: high"),
    ("preds.csv", 9, "score_out_of_range", "p = 1.5 is outside [0, 1]"),
    ("preds.csv", 10, "score_out_of_range", "p = -0.01 is outside [0, 1]"),
    ("preds.csv", 11, "bad_weight", "weight must be a finite number >= 0: -1"),
    ("preds.csv", 12, "bad_weight", "weight must be a finite number >= 0: abc"),
    ("preds.csv", 13, "bad_weight", "weight must be a finite number >= 0: inf"),
    ("preds.csv", 15, "conflicting_duplicate", "differs from row 1 of the same file, which was kept"),
    ("tri.csv", 2, "missing_score", "no class probabilities"),
    ("tri.csv", 3, "missing_score", "a class probability is missing: 0.2, NULL, 0.8"),
    ("tri.csv", 4, "bad_score", "class probabilities: 0.2, x, 0.8"),
    ("tri.csv", 5, "score_out_of_range", "class probabilities outside [0, 1]: 0.2, 1.2, -0.4"),
    ("labels.csv", 2, "missing_request_id", "request id is empty"),
    ("labels.csv", 3, "bad_label", "label is empty"),
    ("labels.csv", 4, "bad_label", "model m is binary; label must be 0 or 1, got 7"),
    ("labels.csv", 5, "bad_label", "model tri has classes low, mid, high; got x"),
    ("labels.csv", 7, "bad_ts", "label time is not a timestamp in [1970, 2200): not a date"),
    ("labels.csv", 8, "conflicting_label", "differs from row 1 of the same file, which was kept"),
    ("kpi.csv", 2, "missing_kpi", "kpi name is empty"),
    ("kpi.csv", 3, "missing_ts", "timestamp is empty"),
    ("kpi.csv", 4, "bad_value", "kpi value is not a number: lots"),
    ("kpi.csv", 5, "conflicting_duplicate", "differs from row 1 of the same file, which was kept"),
    ("malformed.csv", 2, "malformed_row", "Expected Number of Columns: 3 Found: 4"),
    ("malformed.csv", 4, "malformed_row", "Expected Number of Columns: 3 Found: 2"),
    ("malformed.csv", 5, "score_out_of_range", "p = 1.7 is outside [0, 1]"),
    ("malformed_pii.csv", 2, "malformed_row", "Expected Number of Columns: 4 Found: 5"),
    ("second.csv", 2, "conflicting_duplicate",
     "differs from the row already in the database (file 1, row 17), which was kept"),
]


@pytest.fixture(scope="module")
def reasons_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reasons")
    db = tmp / "lb.duckdb"
    flags = {"map": {"p": "p", "weight": "weight"}}
    ingest_one(db, write_csv(tmp, "preds.csv", PREDICTIONS), **flags)
    ingest_one(db, write_csv(tmp, "tri.csv", MULTICLASS), model="tri", model_version="v1",
               class_probs=(("low", "p_low"), ("mid", "p_mid"), ("high", "p_high")))
    ingest_one(db, write_csv(tmp, "labels.csv", LABELS))
    ingest_one(db, write_csv(tmp, "kpi.csv", KPI), kind="kpi", map={"value": "value"})
    ingest_one(db, write_csv(tmp, "malformed.csv", MALFORMED), model="m", model_version="v1")
    ingest_one(db, write_csv(tmp, "malformed_pii.csv", MALFORMED_PII), model="m", model_version="v1")
    ingest_one(db, write_csv(tmp, "second.csv", SECOND_FILE), **flags)
    return db


def _quarantine_rows(db: Path) -> list[tuple[str, int, str, str]]:
    rows = query(db, "SELECT source_file, row_number, reason, detail FROM quarantine "
                     "ORDER BY file_id, row_number")
    return [(Path(f).name, n, r, d) for f, n, r, d in rows]


def test_reason_cases_cover_every_reason_code() -> None:
    assert {c[2] for c in REASON_CASES} == set(REASONS)


@pytest.mark.parametrize("case", REASON_CASES, ids=[f"{c[0]}:{c[1]}:{c[2]}" for c in REASON_CASES])
def test_each_reason_with_row_number_and_detail(reasons_db: Path, case: tuple) -> None:
    file, row_number, reason, detail = case
    assert case in _quarantine_rows(reasons_db)
    # Exactly one reason per quarantined row.
    assert sum(1 for c in _quarantine_rows(reasons_db) if c[:2] == (file, row_number)) == 1


def test_quarantine_holds_exactly_the_expected_rows(reasons_db: Path) -> None:
    # Nothing else was quarantined: the good rows went in and duplicates are only counted.
    assert _quarantine_rows(reasons_db) == REASON_CASES


def test_accepted_rows_and_counts(reasons_db: Path) -> None:
    rows = query(reasons_db, "SELECT path, n_read, n_accepted, n_duplicate, n_quarantined "
                             "FROM ingest_runs ORDER BY file_id")
    counts = {Path(p).name: tuple(c) for p, *c in rows}
    # preds.csv: 17 rows; 13 in REASON_CASES, row 14 an identical repeat of row 1, so
    # r01, r16 and r17 go in.
    assert counts["preds.csv"] == (17, 3, 1, 13)
    assert counts["tri.csv"] == (5, 1, 0, 4)
    # labels.csv: row 9 ('true' == '1' at the same time) repeats row 1.
    assert counts["labels.csv"] == (9, 2, 1, 6)
    assert counts["kpi.csv"] == (6, 1, 1, 4)
    assert counts["malformed.csv"] == (5, 2, 0, 3)
    assert counts["malformed_pii.csv"] == (2, 1, 0, 1)
    # second.csv: r16 identical to the stored row (duplicate), r17 different (conflict).
    assert counts["second.csv"] == (2, 0, 1, 1)
    for n_read, n_accepted, n_duplicate, n_quarantined in counts.values():
        assert n_read == n_accepted + n_duplicate + n_quarantined


def test_first_copy_stays(reasons_db: Path) -> None:
    # r01 conflicted within its file, r17 across files; the first score is kept in both cases.
    rows = query(reasons_db, "SELECT request_id, p, weight FROM predictions "
                             "WHERE request_id IN ('r01', 'r16', 'r17') ORDER BY request_id")
    assert rows == [("r01", 0.5, 1.0), ("r16", 0.5, 1.0), ("r17", 0.25, 0.0)]
    assert query(reasons_db, "SELECT label, label_ts FROM labels WHERE request_id = 'r01'") == [
        ("1", datetime(2026, 1, 16, 10, tzinfo=UTC))]


def test_malformed_line_shown_without_pii_withheld_with_pii(reasons_db: Path) -> None:
    rows = query(reasons_db, "SELECT source_file, CAST(raw AS VARCHAR) FROM quarantine "
                             "WHERE reason = 'malformed_row' ORDER BY file_id, row_number")
    raws = [(Path(f).name, json.loads(r)) for f, r in rows]
    assert raws[0] == ("malformed.csv", {"line": f"m2,{TS},0.2,EXTRA"})
    assert raws[1] == ("malformed.csv", {"line": f"m4,{TS}"})
    name, withheld = raws[2]
    assert name == "malformed_pii.csv"
    assert set(withheld) == {"line_sha256", "note"}
    assert "withheld" in withheld["note"]
    assert "rupert" not in json.dumps(withheld)


def test_accepted_row_numbers_skip_malformed_lines(reasons_db: Path) -> None:
    rows = query(reasons_db, "SELECT request_id, _lb_row_number FROM predictions "
                             "WHERE request_id LIKE 'm%' ORDER BY request_id")
    assert rows == [("m1", 1), ("m3", 3)]


def test_pii_is_hashed_in_raw_json(reasons_db: Path) -> None:
    stored = dict(query(reasons_db, "SELECT request_id, email FROM predictions WHERE request_id = 'r17'"))
    raw = json.loads(query(reasons_db, "SELECT CAST(raw AS VARCHAR) FROM quarantine "
                                       "WHERE row_number = 15 AND reason = 'conflicting_duplicate'")[0][0])
    # alice's row 15 and accepted row 17 carry the same address: the same salted hash.
    assert raw["email"] == stored["r17"]
    assert len(raw["email"]) == 20 and "@" not in raw["email"]
    assert raw["p"] == "0.6"  # non-PII values stay as read


def test_raw_email_never_reaches_the_database_file(reasons_db: Path, tmp_path: Path) -> None:
    # Copy first: the module's database stays untouched. CHECKPOINT folds the WAL into the file.
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(reasons_db.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("CHECKPOINT")
    con.close()
    data = copy.read_bytes()
    assert b"secret.example" not in data
    for name in (b"alice", b"rupert", b"quentin"):
        assert name not in data


# --------------------------------------------------------------------------- bad_value
def test_bad_value_after_the_csv_sniffer_sample(tmp_path: Path, db_path: Path) -> None:
    # DuckDB's CSV sniffer samples 20,480 rows: put the text deep enough that it typed the
    # column DOUBLE, so the value fails the typed cast and is quarantined, not the file.
    n_rows, bad_row = 25_000, 24_321
    lines = ["request_id,ts,p,amount"] + [f"r{i},{TS},0.5,{i}.5" for i in range(1, n_rows + 1)]
    lines[bad_row] = f"r{bad_row},{TS},0.5,lots"
    path = write_csv(tmp_path, "big.csv", "\n".join(lines) + "\n")

    result = ingest_one(db_path, path, model="m", model_version="v1")

    assert (result.n_read, result.n_accepted, result.reasons) == (n_rows, n_rows - 1, {"bad_value": 1})
    assert quarantined(db_path) == [(bad_row, "bad_value", "amount = lots is not a DOUBLE")]
    assert query(db_path, "SELECT sql_type FROM columns WHERE name = 'amount'") == [("DOUBLE",)]


def test_bad_value_in_a_later_parquet_file(tmp_path: Path, db_path: Path) -> None:
    first = write_parquet(tmp_path, "a.parquet", {"request_id": ["a", "b"], "ts": [TS, TS],
                                                  "p": [0.1, 0.2], "amount": [1.5, 2.5]})
    later = write_parquet(tmp_path, "b.parquet", {"request_id": ["c", "d"], "ts": [TS, TS],
                                                  "p": [0.3, 0.4], "amount": ["3.5", "lots"]})
    ingest_one(db_path, first, model="m", model_version="v1")
    result = ingest_one(db_path, later, model="m", model_version="v1")

    assert result.reasons == {"bad_value": 1}
    assert quarantined(db_path) == [(2, "bad_value", "amount = lots is not a DOUBLE")]
    # "3.5" fits the registered DOUBLE and is stored as a number.
    assert query(db_path, "SELECT request_id, amount FROM predictions ORDER BY 1") == [
        ("a", 1.5), ("b", 2.5), ("c", 3.5)]


# --------------------------------------------------------------------------- scores
def test_nan_inf_and_exact_zero_one_are_accepted(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "s.csv", f"""
        request_id,ts,p
        zero,{TS},0
        one,{TS},1
        half,{TS},0.5
        nan,{TS},nan
        NaN,{TS},NaN
        pinf,{TS},inf
        ninf,{TS},-inf
        ninf2,{TS},-Infinity
        """)
    result = ingest_one(db_path, path, model="m", model_version="v1", map={"p": "p"})
    assert (result.n_accepted, result.n_quarantined) == (8, 0)
    p = dict(query(db_path, "SELECT request_id, p FROM predictions"))
    assert (p["zero"], p["one"], p["half"]) == (0.0, 1.0, 0.5)
    assert math.isnan(p["nan"]) and math.isnan(p["NaN"])
    assert p["pinf"] == math.inf
    assert p["ninf"] == -math.inf and p["ninf2"] == -math.inf


def _reference_sigmoid(x: np.ndarray) -> np.ndarray:
    # The textbook form; numpy's exp overflow to inf for x = -1000 still gives exactly 0.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def test_logit_becomes_sigmoid(tmp_path: Path, db_path: Path) -> None:
    rng = np.random.default_rng(20260115)
    logits = [float(x) for x in rng.normal(0.0, 8.0, 200)] + [0.0, 1e-12, -1e-12, 36.0, -36.0, 745.0, -745.0,
                                                 1000.0, -1000.0]
    lines = ["request_id,ts,logit"] + [f"l{i},{TS},{x!r}" for i, x in enumerate(logits)]
    lines += [f"pinf,{TS},inf", f"ninf,{TS},-inf", f"nan,{TS},nan"]
    path = write_csv(tmp_path, "logits.csv", "\n".join(lines) + "\n")

    result = ingest_one(db_path, path, model="m", model_version="v1")

    assert result.n_accepted == len(logits) + 3
    rows = dict((r, (p, lg)) for r, p, lg in query(db_path, "SELECT request_id, p, logit FROM predictions"))
    got_p = np.array([rows[f"l{i}"][0] for i in range(len(logits))])
    got_logit = np.array([rows[f"l{i}"][1] for i in range(len(logits))])
    np.testing.assert_array_equal(got_logit, np.array(logits))  # logged logit kept as is
    # atol only covers the subnormal tail: at x = -745 lossboard's overflow-free form gives
    # exp(-745) = 5e-324, the textbook form 1 / (1 + inf) = 0.
    np.testing.assert_allclose(got_p, _reference_sigmoid(np.array(logits)), rtol=1e-12, atol=1e-300)
    assert rows["l207"][0] == 1.0 and rows["l208"][0] == 0.0  # logit +-1000
    assert rows["pinf"][0] == 1.0 and rows["ninf"][0] == 0.0
    assert math.isnan(rows["nan"][0])


CLASSES = ("low", "mid", "high")


def test_multiclass_via_class_probs(tmp_path: Path, db_path: Path) -> None:
    # Columns in the file in another order than the classes: probs follow --class-probs order.
    path = write_csv(tmp_path, "tri.csv", f"""
        request_id,ts,p_high,p_low,p_mid
        a,{TS},0.7,0.1,0.2
        """)
    ingest_one(db_path, path, model="tri", model_version="v1",
               class_probs=(("low", "p_low"), ("mid", "p_mid"), ("high", "p_high")))
    assert query(db_path, "SELECT probs, p FROM predictions") == [([0.1, 0.2, 0.7], None)]
    assert query(db_path, "SELECT model, task, classes FROM models") == [
        ("tri", "multiclass", list(CLASSES))]


def test_multiclass_via_parquet_list(tmp_path: Path, db_path: Path) -> None:
    path = write_parquet(tmp_path, "tri.parquet", {
        "request_id": ["a", "b", "c"], "ts": [TS] * 3,
        "probs": pa.array([[0.1, 0.2, 0.7], [0.5, 0.5], None], pa.list_(pa.float64()))})
    result = ingest_one(db_path, path, model="tri", model_version="v1", classes=CLASSES)
    assert query(db_path, "SELECT request_id, probs FROM predictions") == [("a", [0.1, 0.2, 0.7])]
    assert result.reasons == {"bad_score": 1, "missing_score": 1}
    assert quarantined(db_path) == [(2, "bad_score", "class probabilities: [0.5, 0.5]"),
                                    (3, "missing_score", "no class probabilities")]
    assert query(db_path, "SELECT classes FROM models") == [(list(CLASSES),)]


def test_multiclass_via_csv_list_text(tmp_path: Path, db_path: Path) -> None:
    path = write_csv(tmp_path, "tri.csv", f"""
        request_id,ts,probs
        a,{TS},"[0.1, 0.2, 0.7]"
        b,{TS},"[0.6,0.3,0.1]"
        c,{TS},"[0.5, 0.5]"
        d,{TS},"[0.1, 0.2, 0.3, 0.4]"
        e,{TS},not a list
        """)
    result = ingest_one(db_path, path, model="tri", model_version="v1", classes=CLASSES,
                        map={"probs": "probs"})
    assert query(db_path, "SELECT request_id, probs FROM predictions ORDER BY 1") == [
        ("a", [0.1, 0.2, 0.7]), ("b", [0.6, 0.3, 0.1])]
    # Wrong length either way, or no list at all: bad_score.
    assert [(n, r) for n, r, _ in quarantined(db_path)] == [(3, "bad_score"), (4, "bad_score"),
                                                           (5, "bad_score")]
    assert_accounted(result)


# --------------------------------------------------------------------------- labels
LABEL_CANON = [
    ("true", "1"), ("TRUE", "1"), (" yes ", "1"), ("1", "1"), ("1.0", "1"), ("t", "1"),
    ("false", "0"), ("No", "0"), ("0", "0"), ("0.0", "0"), ("f", "0"),
    # Anything else is a class name, trimmed, case kept.
    (" High ", "High"), ("fraud", "fraud"), ("2", "2"),
]


@pytest.fixture(scope="module")
def labels_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("labels")
    db = tmp / "lb.duckdb"
    lines = ["request_id,label"] + [f'c{i},"{raw}"' for i, (raw, _) in enumerate(LABEL_CANON)]
    ingest_one(db, write_csv(tmp, "labels.csv", "\n".join(lines) + "\n"))
    return db


@pytest.mark.parametrize(("i", "raw", "canonical"), [(i, *c) for i, c in enumerate(LABEL_CANON)],
                         ids=[repr(c[0]) for c in LABEL_CANON])
def test_label_canonicalisation(labels_db: Path, i: int, raw: str, canonical: str) -> None:
    assert query(labels_db, "SELECT label FROM labels WHERE request_id = ?", [f"c{i}"]) == [(canonical,)]


def test_labels_without_a_time_get_the_ingest_time(tmp_path: Path, db_path: Path) -> None:
    before = datetime.now(UTC)
    no_column = write_csv(tmp_path, "a.csv", "request_id,label\na,1\n")
    ingest_one(db_path, no_column)
    after = datetime.now(UTC)
    empty_value = write_csv(tmp_path, "b.csv", "request_id,label,labelled_at\nb,0,\nc,1,2026-01-16\n")
    ingest_one(db_path, empty_value)

    rows = {r: (ts, src) for r, ts, src in query(
        db_path, "SELECT request_id, label_ts, label_ts_source FROM labels")}
    assert rows["a"][1] == "ingest_time" and before <= rows["a"][0] <= after
    assert rows["b"][1] == "ingest_time"
    assert rows["c"] == (datetime(2026, 1, 16, tzinfo=UTC), "file")


def test_labels_from_boolean_parquet(tmp_path: Path, db_path: Path) -> None:
    path = write_parquet(tmp_path, "l.parquet", {"request_id": ["a", "b", "c"],
                                                 "outcome": [True, False, None]})
    result = ingest_one(db_path, path)
    assert query(db_path, "SELECT request_id, label FROM labels ORDER BY 1") == [("a", "1"), ("b", "0")]
    assert result.reasons == {"bad_label": 1}
