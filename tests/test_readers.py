"""lossboard.ingest.readers: which files a target names and that each format reads the same.

Unreadable input must come back as a rejected file with a message naming it, never a
traceback, and must write nothing."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TS, ingest_one, only_file, query, run_ingest, write_csv, write_parquet
from lossboard.dashboard.cli import app
from lossboard.errors import IngestError
from lossboard.ingest.readers import detect_format, expand

ROWS = [("a", TS, 0.1), ("b", "2026-01-15T11:00:00Z", 0.2)]
EXPECTED = [("a", datetime(2026, 1, 15, 10, tzinfo=UTC), 0.1),
            ("b", datetime(2026, 1, 15, 11, tzinfo=UTC), 0.2)]
CSV = "request_id,ts,p\n" + "".join(f"{r},{t},{p}\n" for r, t, p in ROWS)
JSONL = "".join(json.dumps({"request_id": r, "ts": t, "p": p}) + "\n" for r, t, p in ROWS)


def _write_format(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    lower = name.lower()
    if ".parquet" in lower or lower.endswith(".pq"):
        return write_parquet(tmp_path, name, {"request_id": [r for r, _, _ in ROWS],
                                              "ts": [t for _, t, _ in ROWS],
                                              "p": [p for _, _, p in ROWS]})
    if ".tsv" in lower or ".tab" in lower:
        text = CSV.replace(",", "\t")
    elif "json" in lower:
        text = JSONL
        if lower.endswith(".json"):
            text = json.dumps([json.loads(line) for line in JSONL.splitlines()])
    else:
        text = CSV
    data = text.encode()
    path.write_bytes(gzip.compress(data) if lower.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", [
    "p.csv", "p.csv.gz", "p.tsv", "p.tsv.gz", "p.tab", "p.parquet", "p.pq",
    "p.jsonl", "p.jsonl.gz", "p.ndjson", "p.ndjson.gz", "p.json", "p.json.gz", "P.CSV",
])
def test_every_format_reads_the_same_rows(tmp_path: Path, db_path: Path, name: str) -> None:
    path = _write_format(tmp_path, name)
    result = ingest_one(db_path, path, model="m", model_version="v1")
    assert (result.n_read, result.n_accepted) == (2, 2)
    assert query(db_path, "SELECT request_id, ts, p FROM predictions ORDER BY request_id") == EXPECTED


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.csv", "csv"), ("a.CSV.GZ", "csv"), ("a.tsv", "tsv"), ("a.tab", "tsv"),
    ("a.parquet", "parquet"), ("a.jsonl.gz", "json"), ("a.ndjson", "json"),
    ("a.xlsx", None), ("a.csv.bz2", None), ("csv", None),
])
def test_detect_format(name: str, fmt: str | None) -> None:
    assert detect_format(Path(name)) == fmt


# --------------------------------------------------------------------------- targets
def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    for rel in ["b.csv", "a.csv", "sub/c.jsonl", "sub/deeper/d.parquet", "sub/notes.txt",
                "_tmp.csv", ".hidden.csv", "sub/_SUCCESS"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root


def test_directory_is_searched_recursively_and_sorted(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    files = expand(root)
    # Readable suffixes only; names starting with . or _ are writer leftovers, skipped.
    assert [f.path.relative_to(root).as_posix() for f in files] == [
        "a.csv", "b.csv", "sub/c.jsonl", "sub/deeper/d.parquet"]
    assert [f.format for f in files] == ["csv", "csv", "json", "parquet"]
    assert not any(f.hive for f in files)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("*.csv", ["a.csv", "b.csv"]),
    ("**/*.jsonl", ["sub/c.jsonl"]),
    ("**/*", ["a.csv", "b.csv", "sub/c.jsonl", "sub/deeper/d.parquet"]),
    ("[a]*.csv", ["a.csv"]),
])
def test_glob(tmp_path: Path, pattern: str, expected: list[str]) -> None:
    root = _tree(tmp_path)
    files = expand(str(root / pattern))
    assert [f.path.relative_to(root).as_posix() for f in files] == expected


def test_single_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "one.csv", CSV)
    assert [(f.path, f.format, f.hive) for f in expand(path)] == [(path, "csv", False)]


def _unreadable_target(tmp_path: Path, case: str) -> str:
    if case == "empty_dir":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if case == "unknown_suffix":
        (tmp_path / "x.xlsx").write_text("x")
        return str(tmp_path / "x.xlsx")
    if case == "glob_no_match":
        return str(tmp_path / "*.nomatch")
    return str(tmp_path / "nope.csv")


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no such file or directory"),
    ("empty_dir", "directory holds no files lossboard can read"),
    ("unknown_suffix", "unknown file type"),
    ("glob_no_match", "the pattern matches no readable file"),
])
def test_nothing_readable_is_an_error(tmp_path: Path, db_path: Path, case: str, message: str) -> None:
    target = _unreadable_target(tmp_path, case)
    with pytest.raises(IngestError) as info:
        expand(target)
    assert str(info.value).startswith(f"{target}: {message}")
    # Through ingest the same target is a rejected entry, not an exception.
    result = only_file(run_ingest(db_path, target, model="m", model_version="v1"))
    assert (result.status, result.message) == ("rejected", str(info.value))


def test_hive_partitions_become_columns(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "preds"
    for day, rid in [("2026-10-01", "a"), ("2026-10-02", "b")]:
        write_parquet(root / f"day={day}", "part.parquet",
                      {"request_id": [rid], "ts": [TS], "p": [0.5]})
    assert [f.hive for f in expand(root)] == [True, True]
    report = run_ingest(db_path, root, model="m", model_version="v1")
    assert [f.status for f in report.files] == ["ok", "ok"]
    assert query(db_path, "SELECT request_id, day FROM predictions ORDER BY request_id") == [
        ("a", date(2026, 10, 1)), ("b", date(2026, 10, 2))]
    assert query(db_path, "SELECT name FROM columns") == [("day",)]


def test_hive_through_a_glob(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "preds"
    write_parquet(root / "region=eu", "part-0.parquet", {"request_id": ["a"], "ts": [TS], "p": [0.5]})
    ingest_one(db_path, str(root / "*" / "*.parquet"), model="m", model_version="v1")
    assert query(db_path, "SELECT request_id, region FROM predictions") == [("a", "eu")]


def test_directory_order_decides_which_conflicting_row_stays(tmp_path: Path, db_path: Path) -> None:
    # Same request in two files with different scores: files go in sorted order, a.csv first.
    write_csv(tmp_path / "d", "b.csv", f"request_id,ts,p\nr1,{TS},0.9\n")
    write_csv(tmp_path / "d", "a.csv", f"request_id,ts,p\nr1,{TS},0.1\n")
    report = run_ingest(db_path, tmp_path / "d", model="m", model_version="v1")
    assert [Path(f.path).name for f in report.files] == ["a.csv", "b.csv"]
    assert query(db_path, "SELECT p FROM predictions") == [(0.1,)]
    assert report.files[1].reasons == {"conflicting_duplicate": 1}


# --------------------------------------------------------------------------- unreadable files
GARBAGE = b"\x00\x01\x02\xff not a real file \xfe" * 64


@pytest.mark.parametrize(("name", "fmt"), [
    ("bad.parquet", "PARQUET"),
    ("bad.csv.gz", "CSV"),
    ("bad.jsonl", "JSON"),
])
def test_unparsable_file_is_rejected_and_writes_nothing(tmp_path: Path, db_path: Path,
                                                        name: str, fmt: str) -> None:
    good = write_csv(tmp_path, "good.csv", CSV)
    ingest_one(db_path, good, model="m", model_version="v1")
    bad = tmp_path / name
    bad.write_bytes(GARBAGE)

    result = only_file(run_ingest(db_path, bad, model="m", model_version="v1"))

    assert result.status == "rejected"
    assert result.message.startswith(f"{bad}: cannot be read as {fmt}")
    assert "\n" not in result.message
    assert (result.n_read, result.n_accepted) == (0, 0)
    assert query(db_path, "SELECT count(*) FROM predictions") == [(2,)]
    assert query(db_path, "SELECT count(*) FROM quarantine") == [(0,)]
    # The rejection is on record, with the same message.
    assert query(db_path, "SELECT path, status, n_read, message FROM ingest_runs ORDER BY file_id") == [
        (str(good), "ok", 2, None), (str(bad), "rejected", 0, result.message)]


def test_unparsable_file_exit_code_from_cli(tmp_path: Path, db_path: Path, cli: CliRunner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good = write_csv(tmp_path, "good.csv", CSV)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(GARBAGE)
    args = ["ingest", "--db", str(db_path), "--model", "m", "--model-version", "v1"]

    res = cli.invoke(app, [*args, str(good), str(bad)])

    # One rejected file makes the run exit 1; the good file still went in.
    assert res.exit_code == 1, res.output
    assert f"rejected: {bad}: cannot be read as PARQUET" in " ".join(res.stderr.split())
    assert "Traceback" not in res.output
    assert query(db_path, "SELECT count(*) FROM predictions") == [(2,)]
