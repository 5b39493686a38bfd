"""Property tests of the ingest's accounting (lossboard.ingest.load).

For any generated mix of good and bad rows, written as CSV or Parquet and ingested:

* per file ``n_read == n_accepted + n_duplicate + n_quarantined`` and ``n_read`` is the number of
  rows written;
* the database agrees: ``count(predictions)``, ``count(quarantine)`` and ``ingest_runs``;
* what was accepted, and why each other row was not, equals an independent Python model of the
  README's rules (first valid occurrence of a key wins; a later identical copy is a duplicate, a
  later different one a conflict);
* re-ingesting the same bytes changes nothing, and the same rows in different bytes add nothing.

Each generated value carries its *meaning* next to the text written to the file, so the oracle
never parses what DuckDB parses: it applies the documented rules to known values.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossboard.db import read_connection
from lossboard.ingest.load import FileResult, IngestOptions, ensure_database, ingest
from lossboard.ingest.mapping import MappingOptions

# An ingest of a few dozen rows takes 0.1-0.25 s here (2 cores), four per example: 15
# examples keep the file near 25 s (under 60 s on a loaded machine). For a longer bug hunt:
# LOSSBOARD_PROPERTY_EXAMPLES=500 python -m pytest tests/test_properties.py
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("LOSSBOARD_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MODEL, MODEL_VERSION = "m", "v1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# validate.TS_MIN / TS_MAX: accepted instants are in [1970-01-01, 2200-01-01) UTC.
TS_MIN_US = 0
TS_MAX_US = int((datetime(2200, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING = _Sentinel("MISSING")  # empty / NULL in the file
BAD = _Sentinel("BAD")  # present but not parseable as the field's type


# --------------------------------------------------------------------------- the oracle
def epoch_to_us(value: float) -> int | None:
    """The README's epoch rule: |x| < 1e11 seconds, < 1e14 ms, < 1e17 us, else ns."""
    if not math.isfinite(value) or abs(value) >= 1e20:
        return None
    for bound, per_second in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if abs(value) >= bound:
            return round(value / per_second * 1_000_000)
    return round(value * 1_000_000)


def ts_reason(ts: Any) -> str | None:
    if ts is MISSING:
        return "missing_ts"
    if ts is BAD or ts is None or not (TS_MIN_US <= ts < TS_MAX_US):
        return "bad_ts"
    return None


def same_float(a: float, b: float) -> bool:
    # DuckDB hashes every NaN alike and 0.0 like -0.0, i.e. value equality with NaN == NaN.
    return (math.isnan(a) and math.isnan(b)) or a == b


@dataclass(frozen=True)
class PredRow:
    """One prediction row: what is written (``*_text``) and what it means."""

    rid_text: Any
    rid: str | None  # the trimmed id; None when empty
    ts_text: Any
    ts: Any  # microseconds since the epoch (UTC), MISSING or BAD
    p_text: Any
    p: Any  # float, MISSING or BAD
    weight_text: Any = None
    weight: Any = 1.0  # float (blank means 1.0), or BAD

    def reason(self) -> str | None:
        """The README's rules, in its order; None when the row is acceptable."""
        if self.rid is None:
            return "missing_request_id"
        if (r := ts_reason(self.ts)) is not None:
            return r
        if self.p is MISSING:
            return "missing_score"
        if self.p is BAD:
            return "bad_score"
        if math.isfinite(self.p) and not 0.0 <= self.p <= 1.0:
            return "score_out_of_range"
        if self.weight is BAD or not math.isfinite(self.weight) or self.weight < 0:
            return "bad_weight"
        return None

    def same_content(self, other: PredRow) -> bool:
        return (self.ts == other.ts and same_float(self.p, other.p)
                and same_float(self.weight, other.weight))


@dataclass(frozen=True)
class LabelRow:
    rid_text: Any
    rid: str | None
    label_text: str
    label: str | None  # canonical label ('0' / '1' / the trimmed text); None when empty
    label_ts_text: Any = None
    label_ts: Any = MISSING  # MISSING means "the ingest time", which is always valid

    def reason(self) -> str | None:
        if self.rid is None:
            return "missing_request_id"
        if self.label is None or self.label not in ("0", "1"):
            return "bad_label"  # model "m" is registered as binary
        if self.label_ts is not MISSING and ts_reason(self.label_ts) is not None:
            return "bad_ts"
        return None

    def same_content(self, other: LabelRow) -> bool:
        return self.label == other.label


def raw_key(row: Any, text_file: bool) -> tuple[Any, ...]:
    """What the quarantine stores of a row (its raw values), as a comparable key: in a text
    file an empty cell and a missing one are both NULL; a double compares as its repr, as
    its JSON text does (NaN equals NaN, -0.0 differs from 0.0)."""
    fields = ((row.rid_text, row.ts_text, row.p_text, row.weight_text) if isinstance(row, PredRow)
              else (row.rid_text, row.label_text, row.label_ts_text))
    if text_file:
        return tuple(None if v in (None, "") else str(v) for v in fields)
    return tuple(repr(v) if isinstance(v, float) else v for v in fields)


def classify(rows: list[Any], kept: dict[str, Any], conflict: str,
             bad: frozenset[tuple[Any, ...]] = frozenset(), text_file: bool = True
             ) -> tuple[list[str], dict[str, Any], frozenset[tuple[Any, ...]]]:
    """Outcome of each row ('accepted', 'duplicate' or a reason) given the rows already kept
    in the database and the bad rows already quarantined (``bad``: (reason, raw_key)), and
    both afterwards.

    The first valid occurrence of a key wins, whether it came in an earlier file or earlier in
    this one; every later valid copy is compared with that winner: identical -> duplicate,
    different -> the conflict reason (README, "Quarantine reasons"). A bad row an earlier
    file quarantined with the same reason and raw values is a duplicate; the same bad row
    twice in one file is quarantined twice (each is a row the file holds).
    """
    outcomes: list[str] = []
    kept = dict(kept)
    for row in rows:
        reason = row.reason()
        if reason is None:
            winner = kept.get(row.rid)
            if winner is None:
                kept[row.rid] = row
                outcomes.append("accepted")
                continue
            if row.same_content(winner):
                outcomes.append("duplicate")
                continue
            reason = conflict
        outcomes.append("duplicate" if (reason, raw_key(row, text_file)) in bad else reason)
    new_bad = {(o, raw_key(r, text_file)) for o, r in zip(outcomes, rows)
               if o not in ("accepted", "duplicate")}
    return outcomes, kept, bad | new_bad


@dataclass(frozen=True)
class Expected:
    n_accepted: int
    n_duplicate: int
    reasons: dict[str, int]

    @property
    def n_quarantined(self) -> int:
        return sum(self.reasons.values())


def expected(outcomes: list[str]) -> Expected:
    counts = Counter(outcomes)
    n_accepted, n_duplicate = counts.pop("accepted", 0), counts.pop("duplicate", 0)
    return Expected(n_accepted, n_duplicate, dict(counts))


# --------------------------------------------------------------------------- strategies
def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with probability proportional to its weight.

    Most rows must be valid, or the dedupe rules are never exercised; st.one_of would pick
    each branch about equally often.
    """
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


REQUEST_IDS = ["a", "b", "c", "d", "e", "f"]

rid_cell = weighted(
    (6, st.sampled_from([(r, r) for r in REQUEST_IDS])),
    (1, st.sampled_from([(" a ", "a"), ("b ", "b"), ("x,y", "x,y"), ('q"t', 'q"t'),
                     ("", None), ("   ", None)])),
    (1, st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=3).map(lambda s: (s, s))),
)

# Instants around and inside the accepted range, whole seconds (so that every epoch unit
# converts exactly), with the boundaries themselves.
instant = st.one_of(
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2250, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)),
    st.sampled_from([datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
                     datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC),
                     datetime(2024, 1, 1, tzinfo=UTC)]),
)


def _seconds(d: datetime) -> int:
    return int((d - EPOCH).total_seconds())


def _ts_texts(d: datetime) -> list[tuple[str, Any]]:
    secs = _seconds(d)
    plus2 = d + timedelta(hours=2)
    midnight = d.replace(hour=0, minute=0, second=0)
    return [
        (d.strftime("%Y-%m-%dT%H:%M:%S"), secs * 1_000_000),
        (d.strftime("%Y-%m-%d %H:%M:%S+00:00"), secs * 1_000_000),
        (plus2.strftime("%Y-%m-%dT%H:%M:%S+02:00"), secs * 1_000_000),
        (d.strftime("%Y-%m-%d"), _seconds(midnight) * 1_000_000),
        (str(secs), epoch_to_us(secs)),
        (f"{secs}.5", epoch_to_us(secs + 0.5)),
        (str(secs * 1000), epoch_to_us(secs * 1000)),
        (str(secs * 1_000_000), epoch_to_us(secs * 1_000_000)),
    ]


# A few common instants make same-instant-different-text copies (identical duplicates) frequent.
COMMON_INSTANTS = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 12, 30, tzinfo=UTC),
                   datetime(2023, 6, 1, 8, tzinfo=UTC)]
common_ts = st.tuples(st.sampled_from(COMMON_INSTANTS), st.integers(0, 7)).map(
    lambda x: _ts_texts(x[0])[x[1]])
ts_cell = weighted(
    (12, common_ts),
    (1, st.sampled_from([("", MISSING), ("  ", MISSING)])),
    (1, st.sampled_from([(t, BAD) for t in ("garbage", "n/a", "2024-13-45", "2024-02-30", "1e30")])),
    (3, st.tuples(instant, st.integers(0, 7)).map(lambda x: _ts_texts(x[0])[x[1]])),
)

unit_float = st.floats(min_value=0.0, max_value=1.0)
out_of_range = st.one_of(
    st.floats(min_value=1.0, exclude_min=True, allow_infinity=False),
    st.floats(max_value=0.0, exclude_max=True, allow_infinity=False).filter(lambda x: x < 0),
)
common_p = st.sampled_from([("0", 0.0), ("0.25", 0.25), ("0.5", 0.5), ("1", 1.0), ("1.0", 1.0)])
p_cell = weighted(
    (8, common_p),
    (2, unit_float.map(lambda x: (repr(x), x))),
    (1, unit_float.map(lambda x: (f" {x!r} ", x))),
    (1, out_of_range.map(lambda x: (repr(x), x))),
    (1, st.sampled_from([("", MISSING), (" ", MISSING), ("nan", math.nan), ("NaN", math.nan),
                         ("inf", math.inf), ("-inf", -math.inf), ("Infinity", math.inf)])),
    (1, st.sampled_from([(t, BAD) for t in ("abc", "0.5.5", "p=0.3", "--1", "0x10", "1,5")])),
)
common_weight = st.sampled_from([("", 1.0), ("  ", 1.0), ("1", 1.0), ("0", 0.0), ("2.5", 2.5)])
weight_cell = weighted(
    (8, common_weight),
    (2, st.floats(min_value=0.0, max_value=1e6).map(lambda x: (repr(x), x))),
    (1, st.floats(max_value=0.0, exclude_max=True, allow_infinity=False).filter(lambda x: x < 0).map(
        lambda x: (repr(x), x))),
    (1, st.sampled_from([("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("heavy", BAD)])),
)


@st.composite
def prediction_rows(draw: st.DrawFn, max_rows: int = 30) -> tuple[list[PredRow], bool]:
    with_weight = draw(st.booleans())
    n = draw(st.integers(0, max_rows))
    rows = []
    for _ in range(n):
        rid = draw(rid_cell)
        ts = draw(ts_cell)
        p = draw(p_cell)
        w = draw(weight_cell) if with_weight else (None, 1.0)
        rows.append(PredRow(rid[0], rid[1], ts[0], ts[1], p[0], p[1], w[0], w[1]))
    # An exact copy of an earlier row: identical duplicates must be frequent, not lucky.
    for _ in range(draw(st.integers(0, 4)) if rows else 0):
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(rows)))
    return rows, with_weight


LABEL_TEXTS = [("1", "1"), ("0", "0"), ("true", "1"), ("TRUE", "1"), ("yes", "1"), ("no", "0"),
               ("f", "0"), ("1.0", "1"), (" 1 ", "1"), ("0.0", "0"), ("", None), ("  ", None),
               ("2", "2"), ("cat", "cat"), ("-1", "-1"), ("0.5", "0.5")]


@st.composite
def label_rows(draw: st.DrawFn, max_rows: int = 30) -> tuple[list[LabelRow], bool]:
    with_ts = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        rid = draw(rid_cell)
        label = draw(st.sampled_from(LABEL_TEXTS))
        lts = draw(ts_cell) if with_ts else (None, MISSING)
        rows.append(LabelRow(rid[0], rid[1], label[0], label[1], lts[0], lts[1]))
    for _ in range(draw(st.integers(0, 4)) if rows else 0):
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(rows)))
    return rows, with_ts


# --------------------------------------------------------------------------- files
def write_csv(path: Path, header: list[str], records: list[list[Any]], trailing: str = "") -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(records)
    path.write_text(buf.getvalue() + trailing)
    return path


def prediction_csv(path: Path, rows: list[PredRow], with_weight: bool, trailing: str = "") -> Path:
    header = ["request_id", "ts", "p"] + (["weight"] if with_weight else [])
    records = [[r.rid_text, r.ts_text, r.p_text] + ([r.weight_text] if with_weight else [])
               for r in rows]
    return write_csv(path, header, records, trailing)


def label_csv(path: Path, rows: list[LabelRow], with_ts: bool, trailing: str = "") -> Path:
    header = ["request_id", "label"] + (["label_ts"] if with_ts else [])
    records = [[r.rid_text, r.label_text] + ([r.label_ts_text] if with_ts else []) for r in rows]
    return write_csv(path, header, records, trailing)


def shuffled(rows: list[Any], seed: int) -> list[Any]:
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


# --------------------------------------------------------------------------- ingest + checks
@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the schema and nothing else; each example works on a copy."""
    path = tmp_path_factory.mktemp("template") / "empty.duckdb"
    ensure_database(path)
    return path


def fresh_db(template: Path, folder: Path) -> Path:
    # A closed DuckDB file is checkpointed: no WAL holds part of its content.
    assert not template.with_name(template.name + ".wal").exists()
    db = folder / "lb.duckdb"
    shutil.copyfile(template, db)
    return db


def prediction_flags(with_weight: bool) -> MappingOptions:
    # Every field mapped explicitly: a column of mixed garbage sniffs as text, and auto-detection
    # rightly refuses a text column as the score.
    fields = {"request_id": "request_id", "ts": "ts", "p": "p"}
    if with_weight:
        fields["weight"] = "weight"
    return MappingOptions(kind="predictions", map=fields, model=MODEL, model_version=MODEL_VERSION)


def label_flags(with_ts: bool) -> MappingOptions:
    fields = {"request_id": "request_id", "label": "label"}
    if with_ts:
        fields["label_ts"] = "label_ts"
    return MappingOptions(kind="labels", map=fields, model=MODEL)


def ingest_one(db: Path, path: Path, flags: MappingOptions) -> FileResult:
    report = ingest([path], IngestOptions(db_path=db, flags=flags, threads=1))
    assert len(report.files) == 1
    return report.files[0]


def check_result(result: FileResult, n_written: int, want: Expected) -> None:
    assert result.status == "ok", result.message
    assert result.n_read == result.n_accepted + result.n_duplicate + result.n_quarantined
    assert result.n_read == n_written
    assert (result.n_accepted, result.n_duplicate) == (want.n_accepted, want.n_duplicate), result
    assert result.reasons == dict(sorted(want.reasons.items()))
    assert result.n_quarantined == want.n_quarantined


def check_database(db: Path, table: str) -> dict[str, Any]:
    """Tables agree with ingest_runs; returns the data table's rows by request id."""
    with read_connection(db) as con:
        n_rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        n_quarantine = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        runs = con.execute(
            "SELECT file_id, status, kind, n_read, n_accepted, n_duplicate, n_quarantined "
            "FROM ingest_runs ORDER BY file_id").fetchall()
        per_file = dict(con.execute(
            "SELECT file_id, count(*) FROM quarantine GROUP BY file_id ORDER BY file_id").fetchall())
        rows_per_file = dict(con.execute(
            f"SELECT _lb_file_id, count(*) FROM {table} GROUP BY ALL ORDER BY ALL").fetchall())
        if table == "predictions":
            data = {r[0]: r[1:] for r in con.execute(
                "SELECT request_id, epoch_us(ts), p, weight, model, model_version FROM predictions "
                "ORDER BY request_id").fetchall()}
        else:
            data = {r[0]: r[1:] for r in con.execute(
                "SELECT request_id, label, epoch_us(label_ts), label_ts_source, model FROM labels "
                "ORDER BY request_id").fetchall()}
    for file_id, status, kind, n_read, n_acc, n_dup, n_q in runs:
        assert n_read == n_acc + n_dup + n_q
        assert per_file.get(file_id, 0) == n_q
        assert rows_per_file.get(file_id, 0) == (n_acc if kind == table else 0)
        if status != "ok":
            assert (n_read, n_acc, n_dup, n_q) == (0, 0, 0, 0)
    assert n_rows == sum(r[4] for r in runs if r[2] == table)
    assert n_quarantine == sum(r[6] for r in runs)
    assert len(data) == n_rows  # (model, request_id) is unique
    return data


def check_predictions(data: dict[str, Any], kept: dict[str, PredRow]) -> None:
    assert set(data) == set(kept)
    for rid, (ts_us, p, weight, model, version) in data.items():
        want = kept[rid]
        assert ts_us == want.ts, rid
        assert same_float(p, want.p), (rid, p, want.p)
        assert same_float(weight, want.weight), (rid, weight, want.weight)
        assert (model, version) == (MODEL, MODEL_VERSION)


def check_labels(data: dict[str, Any], kept: dict[str, LabelRow]) -> None:
    assert set(data) == set(kept)
    for rid, (label, label_ts_us, source, model) in data.items():
        want = kept[rid]
        assert label == want.label, rid
        assert model == MODEL
        if want.label_ts is MISSING:
            assert source == "ingest_time"
        else:
            assert (label_ts_us, source) == (want.label_ts, "file")


def run_status(db: Path) -> list[tuple[str, str]]:
    with read_connection(db) as con:
        return con.execute("SELECT path, status FROM ingest_runs ORDER BY file_id").fetchall()


def byte_different_variants(first: Path, rows: list[Any], seed: int,
                            write: Any) -> list[tuple[Path, list[Any]]]:
    """The same rows in different bytes: shuffled, and with a blank line after the last row."""
    mixed = shuffled(rows, seed)
    variants = [(write(first.with_name("shuffled.csv"), mixed, ""), mixed),
                (write(first.with_name("trailing.csv"), rows, "\n"), rows)]
    # A shuffle of 0 or 1 distinct rows may give the same bytes; that is the re-ingest case.
    return [(p, r) for p, r in variants if p.read_bytes() != first.read_bytes()]


# --------------------------------------------------------------------------- tests
@PROPERTY_SETTINGS
@given(data=prediction_rows(), seed=st.integers(0, 2**32 - 1))
def test_prediction_csv_accounting(tmp_path_factory: pytest.TempPathFactory, empty_db: Path,
                                   data: tuple[list[PredRow], bool], seed: int) -> None:
    rows, with_weight = data
    folder = tmp_path_factory.mktemp("pred_csv")
    db = fresh_db(empty_db, folder)
    flags = prediction_flags(with_weight)
    first = prediction_csv(folder / "preds.csv", rows, with_weight)

    outcomes, kept, bad = classify(rows, {}, "conflicting_duplicate")
    check_result(ingest_one(db, first, flags), len(rows), expected(outcomes))
    check_predictions(check_database(db, "predictions"), kept)

    again = ingest_one(db, first, flags)
    assert again.status == "skipped" and again.n_read == 0, again
    check_predictions(check_database(db, "predictions"), kept)
    assert run_status(db)[-1][1] == "skipped"

    def write(path: Path, rs: list[PredRow], trailing: str) -> Path:
        return prediction_csv(path, rs, with_weight, trailing)

    for path, variant_rows in byte_different_variants(first, rows, seed, write):
        variant_outcomes, after, bad = classify(variant_rows, kept, "conflicting_duplicate", bad)
        want = expected(variant_outcomes)
        assert want.n_accepted == 0
        check_result(ingest_one(db, path, flags), len(rows), want)
        assert after == kept
        check_predictions(check_database(db, "predictions"), kept)


# Parquet keeps native types: ids may be NULL, timestamps are real timestamps (or epoch
# integers, or text), scores and weights are doubles (NULL, NaN, +-inf, out of range).
ts_native = weighted((6, st.sampled_from(COMMON_INSTANTS)), (1, st.none()), (2, instant))


@st.composite
def parquet_rows(draw: st.DrawFn, max_rows: int = 30) -> tuple[pa.Table, list[PredRow], bool]:
    with_weight = draw(st.booleans())
    ts_type = draw(st.sampled_from(["timestamptz", "timestamp", "epoch_s", "epoch_ms", "text"]))
    ids = weighted((6, st.sampled_from(REQUEST_IDS)), (1, st.sampled_from([" a ", "", None])),
                   (1, st.text(alphabet="abc123", min_size=1, max_size=2)))
    p_native = weighted((6, st.sampled_from([0.0, 0.25, 0.5, 1.0])), (2, unit_float),
                        (1, st.none()), (1, out_of_range),
                        (1, st.sampled_from([math.nan, math.inf, -math.inf])))
    w_native = weighted((6, st.sampled_from([None, 0.0, 1.0, 2.5])),
                        (2, st.floats(min_value=0.0, max_value=1e6)),
                        (1, st.floats(allow_infinity=True, allow_nan=True).filter(
                            lambda x: not (math.isfinite(x) and x >= 0))))
    rows = []  # the *_text fields hold the native values written to the file
    for _ in range(draw(st.integers(0, max_rows))):
        rid, ts, p = draw(ids), draw(ts_native), draw(p_native)
        w = draw(w_native) if with_weight else None
        if ts is None:
            ts_value: Any = None
            ts_meaning: Any = MISSING
        elif ts_type in ("timestamptz", "timestamp"):
            ts_value = ts if ts_type == "timestamptz" else ts.replace(tzinfo=None)
            ts_meaning = _seconds(ts) * 1_000_000
        elif ts_type == "epoch_s":
            ts_value = _seconds(ts)
            ts_meaning = epoch_to_us(ts_value)
        elif ts_type == "epoch_ms":
            ts_value = _seconds(ts) * 1000
            ts_meaning = epoch_to_us(ts_value)
        else:
            ts_value = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
            ts_meaning = _seconds(ts) * 1_000_000
        stripped = rid.strip() if rid is not None else None
        rows.append(PredRow(rid, stripped or None, ts_value, ts_meaning, p,
                            MISSING if p is None else p, w, 1.0 if w is None else w))
    for _ in range(draw(st.integers(0, 4)) if rows else 0):
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(rows)))
    ts_arrow = {"timestamptz": pa.timestamp("us", tz="UTC"), "timestamp": pa.timestamp("us"),
                "epoch_s": pa.int64(), "epoch_ms": pa.int64(), "text": pa.string()}[ts_type]
    arrays = {"request_id": pa.array([r.rid_text for r in rows], pa.string()),
              "ts": pa.array([r.ts_text for r in rows], ts_arrow),
              "p": pa.array([r.p_text for r in rows], pa.float64())}
    if with_weight:
        arrays["weight"] = pa.array([r.weight_text for r in rows], pa.float64())
    return pa.table(arrays), rows, with_weight


@PROPERTY_SETTINGS
@given(data=parquet_rows(), seed=st.integers(0, 2**32 - 1))
def test_prediction_parquet_accounting(tmp_path_factory: pytest.TempPathFactory, empty_db: Path,
                                       data: tuple[pa.Table, list[PredRow], bool], seed: int) -> None:
    table, rows, with_weight = data
    folder = tmp_path_factory.mktemp("pred_parquet")
    db = fresh_db(empty_db, folder)
    flags = prediction_flags(with_weight)
    first = folder / "preds.parquet"
    pq.write_table(table, first, compression="snappy")

    outcomes, kept, bad = classify(rows, {}, "conflicting_duplicate", text_file=False)
    check_result(ingest_one(db, first, flags), len(rows), expected(outcomes))
    check_predictions(check_database(db, "predictions"), kept)

    again = ingest_one(db, first, flags)
    assert again.status == "skipped", again
    check_predictions(check_database(db, "predictions"), kept)

    # Same rows, other bytes: another codec; then the rows shuffled.
    recoded = folder / "recoded.parquet"
    pq.write_table(table, recoded, compression="zstd")
    order = np.random.default_rng(seed).permutation(len(rows))
    mixed = folder / "shuffled.parquet"
    pq.write_table(table.take(pa.array(order, pa.int64())), mixed, compression="gzip")
    for path, variant_rows in ((recoded, rows), (mixed, [rows[i] for i in order])):
        variant_outcomes, after, bad = classify(variant_rows, kept, "conflicting_duplicate", bad,
                                                text_file=False)
        want = expected(variant_outcomes)
        assert want.n_accepted == 0
        check_result(ingest_one(db, path, flags), len(rows), want)
        assert after == kept
        check_predictions(check_database(db, "predictions"), kept)


# The predictions the labels refer to: registers model "m" as binary, and gives requests
# "a" and "b" a prediction time to compare label times with.
PRED_TS = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def predictions_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("with_predictions")
    preds = write_csv(folder / "preds.csv", ["request_id", "ts", "p"],
                      [["a", PRED_TS.isoformat(), "0.25"], ["b", PRED_TS.isoformat(), "0.75"]])
    db = folder / "lb.duckdb"
    assert ingest_one(db, preds, prediction_flags(False)).n_accepted == 2
    return db


@PROPERTY_SETTINGS
@given(data=label_rows(), seed=st.integers(0, 2**32 - 1))
def test_label_csv_accounting(tmp_path_factory: pytest.TempPathFactory, predictions_db: Path,
                              data: tuple[list[LabelRow], bool], seed: int) -> None:
    rows, with_ts = data
    folder = tmp_path_factory.mktemp("labels_csv")
    db = fresh_db(predictions_db, folder)
    flags = label_flags(with_ts)
    first = label_csv(folder / "labels.csv", rows, with_ts)

    outcomes, kept, bad = classify(rows, {}, "conflicting_label")
    result = ingest_one(db, first, flags)
    check_result(result, len(rows), expected(outcomes))
    check_labels(check_database(db, "labels"), kept)
    assert result.n_unmatched_labels == sum(1 for rid in kept if rid not in ("a", "b"))
    pred_us = _seconds(PRED_TS) * 1_000_000
    assert result.n_label_before_prediction == sum(
        1 for rid, r in kept.items() if rid in ("a", "b") and r.label_ts is not MISSING
        and r.label_ts < pred_us)

    again = ingest_one(db, first, flags)
    assert again.status == "skipped", again
    check_labels(check_database(db, "labels"), kept)

    def write(path: Path, rs: list[LabelRow], trailing: str) -> Path:
        return label_csv(path, rs, with_ts, trailing)

    for path, variant_rows in byte_different_variants(first, rows, seed, write):
        variant_outcomes, after, bad = classify(variant_rows, kept, "conflicting_label", bad)
        want = expected(variant_outcomes)
        assert want.n_accepted == 0
        check_result(ingest_one(db, path, flags), len(rows), want)
        assert after == kept
        check_labels(check_database(db, "labels"), kept)


# --------------------------------------------------------------------------- named cases
def test_every_reason_once(tmp_path: Path) -> None:
    """A hand-made file with one row per prediction rule; counts checked by hand."""
    db = tmp_path / "lb.duckdb"
    path = write_csv(tmp_path / "p.csv", ["request_id", "ts", "p", "weight"], [
        ["a", "2024-01-01T00:00:00", "0.5", "1"],      # accepted
        ["a", "1704067200", "0.5", ""],                # same instant, weight 1: duplicate
        ["a", "2024-01-01", "0.6", "1"],               # conflicting_duplicate
        ["", "2024-01-01", "0.1", ""],                 # missing_request_id
        ["b", "", "0.2", ""],                          # missing_ts
        ["c", "garbage", "0.2", ""],                   # bad_ts
        ["d", "1969-12-31T23:59:59", "0.2", ""],       # bad_ts (before 1970)
        ["e", "2024-01-01", "", ""],                   # missing_score
        ["f", "2024-01-01", "abc", ""],                # bad_score
        ["g", "2024-01-01", "1.5", ""],                # score_out_of_range
        ["h", "2024-01-01", "0.5", "-1"],              # bad_weight
        ["i", "2024-01-01", "nan", ""],                # accepted: NaN is a production failure
        ["j", "2024-01-01", "-inf", "0"],              # accepted, weight 0
    ])
    result = ingest_one(db, path, prediction_flags(True))
    assert result.status == "ok", result.message
    assert (result.n_read, result.n_accepted, result.n_duplicate, result.n_quarantined) == (13, 3, 1, 9)
    assert result.reasons == {"bad_score": 1, "bad_ts": 2, "bad_weight": 1,
                              "conflicting_duplicate": 1, "missing_request_id": 1,
                              "missing_score": 1, "missing_ts": 1, "score_out_of_range": 1}
    assert set(check_database(db, "predictions")) == {"a", "i", "j"}


def test_copy_of_the_kept_row_is_a_duplicate_even_after_a_conflict(tmp_path: Path) -> None:
    """The database keeps a = 0.5. A later file holds a = 0.6 then a = 0.5: the first is a
    conflict, the second an identical repeat of the kept row, i.e. a duplicate (README: the
    first stays; identical repeats are duplicates), not a second conflict."""
    db = tmp_path / "lb.duckdb"
    first = write_csv(tmp_path / "one.csv", ["request_id", "ts", "p"], [["a", "2024-01-01", "0.5"]])
    assert ingest_one(db, first, prediction_flags(False)).n_accepted == 1
    later = write_csv(tmp_path / "two.csv", ["request_id", "ts", "p"],
                      [["a", "2024-01-01", "0.6"], ["a", "2024-01-01", "0.5"]])
    result = ingest_one(db, later, prediction_flags(False))
    assert (result.n_accepted, result.n_duplicate, result.reasons) == (
        0, 1, {"conflicting_duplicate": 1})
    with read_connection(db) as con:
        quarantined = con.execute("SELECT row_number, reason FROM quarantine ORDER BY row_number").fetchall()
    assert quarantined == [(1, "conflicting_duplicate")]


def test_label_copy_of_the_kept_label_is_a_duplicate(tmp_path: Path) -> None:
    db = tmp_path / "lb.duckdb"
    preds = write_csv(tmp_path / "p.csv", ["request_id", "ts", "p"], [["a", "2024-01-01", "0.5"]])
    assert ingest_one(db, preds, prediction_flags(False)).n_accepted == 1
    one = write_csv(tmp_path / "l1.csv", ["request_id", "label"], [["a", "1"]])
    assert ingest_one(db, one, label_flags(False)).n_accepted == 1
    two = write_csv(tmp_path / "l2.csv", ["request_id", "label"], [["a", "0"], ["a", "yes"]])
    result = ingest_one(db, two, label_flags(False))
    assert (result.n_accepted, result.n_duplicate, result.reasons) == (0, 1, {"conflicting_label": 1})


def test_header_only_file(tmp_path: Path) -> None:
    db = tmp_path / "lb.duckdb"
    path = write_csv(tmp_path / "p.csv", ["request_id", "ts", "p"], [])
    result = ingest_one(db, path, prediction_flags(False))
    assert (result.status, result.n_read, result.n_accepted) == ("ok", 0, 0), result.message
