"""Defects a user audit found in `lossboard report`, `runs` and `quarantine`, driven through the
CLI the way the user ran them (Typer's CliRunner; repro files were /tmp/audit-cli)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TS, query, scalar, write_csv
from lossboard.dashboard.cli import _short_names, matching_source_files
# invoke, the model flags, and the autouse fixture that runs each test in an empty folder
# (the CLI reads ./lossboard.toml when present).
from test_cli import MODEL, _no_stray_config, invoke  # noqa: F401 - a fixture, by name


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (Python's json accepts them; JSON does not)."""
    def refuse(token: str):
        raise ValueError(f"not valid JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def ingest(cli: CliRunner, db: Path, *paths: object, ok: bool = True) -> None:
    result = invoke(cli, "ingest", "--db", db, *MODEL, *paths)
    assert (result.exit_code == 0) == ok, result.output


def bad_rows_csv(tmp_path: Path, name: str, n_bad_ts: int, n_out_of_range: int = 0) -> Path:
    """A predictions file with one good row, ``n_bad_ts`` rows quarantined as bad_ts and
    ``n_out_of_range`` as score_out_of_range; request ids are unique per file name."""
    stem = Path(name).stem
    lines = ["request_id,ts,p", f"{stem}-ok,{TS},0.5"]
    lines += [f"{stem}-t{i},not a time,0.5" for i in range(n_bad_ts)]
    lines += [f"{stem}-r{i},{TS},1.5" for i in range(n_out_of_range)]
    return write_csv(tmp_path, name, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- 1. report
def _preds_at(tmp_path: Path, stamps: list[str]) -> Path:
    rows = [f"r{i},{ts},{0.2 + 0.6 * (i % 2)},{i % 7}" for i, ts in enumerate(stamps)]
    return write_csv(tmp_path, "preds.csv", "request_id,ts,p,amount\n" + "\n".join(rows) + "\n")


def _labels(tmp_path: Path, n: int) -> Path:
    rows = [f"r{i},{i % 2},2026-01-16T10:00:00Z" for i in range(n)]
    return write_csv(tmp_path, "labels.csv", "request_id,label,label_ts\n" + "\n".join(rows) + "\n")


ONE_INSTANT = [TS] * 20
# Two instants 1 µs apart: the window is 2 µs, a quarter of it rounds to 0 µs.
ONE_MICROSECOND = [TS] * 10 + ["2026-01-15T10:00:00.000001Z"] * 10


@pytest.mark.parametrize(("stamps", "window"), [
    (ONE_INSTANT, []),
    (ONE_MICROSECOND, []),
    # A window the user chose that is one instant long, inside a longer history.
    ([TS] * 10 + ["2026-01-20T10:00:00Z"] * 10,
     ["--from", TS, "--to", "2026-01-15T10:00:00.000001Z"]),
], ids=["one-instant", "one-microsecond", "from-to-one-instant"])
def test_report_without_room_for_a_default_reference_skips_drift_with_a_note(
        tmp_path: Path, db_path: Path, cli: CliRunner, stamps: list[str], window: list[str]) -> None:
    ingest(cli, db_path, _preds_at(tmp_path, stamps), "--features", "amount")
    ingest(cli, db_path, _labels(tmp_path, len(stamps)))
    result = invoke(cli, "report", "--db", db_path, "--model", "fraud", *window, "--json")
    assert result.exit_code == 0, result.output
    rep = strict_json(result.stdout)
    assert rep["reference"] == {"from": None, "to": None, "version": None}
    assert rep["drift"] is None
    assert len(rep["notes"]) == 1 and rep["notes"][0].startswith("no reference window")
    assert "drift" in rep["notes"][0] and "--reference-from" in rep["notes"][0]
    assert not {f["what"] for f in rep["findings"]} & {"loss_regression", "feature_drift",
                                                       "activation_saturation"}
    # The rest of the report is there: 10 of the predictions are in every window above, all labelled.
    assert rep["overall"]["n_labelled"] == rep["overall"]["n_predictions"] >= 10
    assert rep["overall"]["log_loss"] is not None

    text = invoke(cli, "report", "--db", db_path, "--model", "fraud", *window)
    assert text.exit_code == 0, text.output
    assert "no reference window" in text.stdout.splitlines()[0] + text.stdout.splitlines()[1]
    assert "note: no reference window" in " ".join(text.stdout.split())
    assert "None to None" not in text.stdout


def test_report_with_room_for_a_reference_has_no_note(tmp_path: Path, db_path: Path,
                                                       cli: CliRunner) -> None:
    stamps = [f"2026-01-{d:02d}T10:00:00Z" for d in range(1, 21)]
    ingest(cli, db_path, _preds_at(tmp_path, stamps), "--features", "amount")
    result = invoke(cli, "report", "--db", db_path, "--json")
    assert result.exit_code == 0, result.output
    rep = strict_json(result.stdout)
    assert rep["notes"] == []
    # The window is 19 days + 1 µs; its first quarter (4 days 18 h) is the reference.
    assert rep["reference"]["from"] == "2026-01-01T10:00:00Z"
    assert rep["reference"]["to"] == "2026-01-06T04:00:00Z"
    assert {d["feature"] for d in rep["drift"]} == {"amount", "score"}


def test_report_with_an_explicit_empty_reference_window_is_an_error(
        tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    ingest(cli, db_path, _preds_at(tmp_path, ONE_INSTANT))
    result = invoke(cli, "report", "--db", db_path, "--reference-from", TS, "--reference-to", TS)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: empty reference window")
    # The only failure left: without reference flags the same database reports fine.
    assert invoke(cli, "report", "--db", db_path, "--json").exit_code == 0


# --------------------------------------------------------------------------- 2. --limit
@pytest.mark.parametrize("command", ["quarantine", "runs"])
def test_negative_limit_is_a_usage_error(tmp_path: Path, db_path: Path, cli: CliRunner,
                                         command: str) -> None:
    ingest(cli, db_path, bad_rows_csv(tmp_path, "preds.csv", 2))
    result = invoke(cli, command, "--db", db_path, "--limit", "-1")
    assert result.exit_code == 2  # Click's usage error, not a crash
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "BinderException" not in result.output
    assert "--limit" in result.stderr and "greater than or equal to 0" in result.stderr


@pytest.mark.parametrize("command", ["quarantine", "runs"])
def test_limit_help_says_what_zero_means(cli: CliRunner, command: str) -> None:
    result = invoke(cli, command, "--help")
    assert result.exit_code == 0
    assert "0 shows all" in " ".join(result.stdout.replace("│", " ").split())


def test_limit_zero_shows_every_row(tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    ingest(cli, db_path, bad_rows_csv(tmp_path, "a.csv", 60))
    ingest(cli, db_path, bad_rows_csv(tmp_path, "b.csv", 1))
    ingest(cli, db_path, tmp_path / "b.csv")  # skipped: a third ingest_runs row
    rows = strict_json(invoke(cli, "quarantine", "--db", db_path, "--limit", "0", "--json").stdout)
    assert len(rows["rows"]) == rows["total"] == 61 and rows["truncated"] is False
    runs = strict_json(invoke(cli, "runs", "--db", db_path, "--limit", "0", "--json").stdout)
    assert [r["file_id"] for r in runs] == [3, 2, 1]
    table = invoke(cli, "quarantine", "--db", db_path, "--limit", "0")
    assert table.exit_code == 0 and "showing" not in table.stdout


# --------------------------------------------------------------------------- 3. runs --json
def test_runs_json_is_strict_json_with_every_ingest_runs_field(
        tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    good = bad_rows_csv(tmp_path, "preds.csv", 1)
    no_score = write_csv(tmp_path, "other.csv", f"request_id,ts,comment\nx,{TS},hello\n")
    ingest(cli, db_path, good, no_score, ok=False)  # other.csv is rejected: kind, mapping NULL
    result = invoke(cli, "runs", "--db", db_path, "--json")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout
    rejected, ok = strict_json(result.stdout)  # newest first
    assert (rejected["status"], ok["status"]) == ("rejected", "ok")
    assert rejected["kind"] is None and rejected["mapping"] is None
    assert ok["message"] is None
    assert ok["kind"] == "predictions"
    # The fields the JSON used to leave out, with their stored values.
    stored = query(db_path, "SELECT content_hash, n_label_before_prediction, mapping::VARCHAR, "
                            "started_at FROM ingest_runs WHERE file_id = 1")[0]
    assert ok["content_hash"] == stored[0] and len(ok["content_hash"]) == 64
    assert ok["n_label_before_prediction"] == stored[1]
    assert isinstance(ok["mapping"], dict) and ok["mapping"] == json.loads(stored[2])
    assert ok["mapping"]["constants"] == {"model": "fraud", "model_version": "v3"}
    started = datetime.fromisoformat(ok["started_at"])
    assert ok["started_at"].endswith("Z") and "T" in ok["started_at"]
    assert started == stored[3]
    assert started <= datetime.fromisoformat(ok["finished_at"])
    # The older fields are unchanged.
    assert (ok["n_read"], ok["n_accepted"], ok["n_quarantined"]) == (2, 1, 1)


# --------------------------------------------------------------------------- 4. quarantine
@pytest.fixture
def two_files(tmp_path: Path, db_path: Path, cli: CliRunner) -> dict[str, Path]:
    """a.csv: 2 bad_ts + 1 score_out_of_range; data/b.csv: 3 bad_ts; ingested by absolute path."""
    a = bad_rows_csv(tmp_path, "a.csv", 2, 1)
    b = bad_rows_csv(tmp_path, "data/b.csv", 3)
    ingest(cli, db_path, a, b)
    return {"a": a, "b": b}


def _counts(data: dict) -> dict[str, int]:
    return {r["reason"]: r["n_rows"] for r in data["by_reason"]}


@pytest.mark.parametrize(("args", "expected"), [
    ([], {"bad_ts": 5, "score_out_of_range": 1}),
    (["--file", "{a}"], {"bad_ts": 2, "score_out_of_range": 1}),
    (["--file", "{b}"], {"bad_ts": 3}),
    (["--reason", "bad_ts", "--file", "{a}"], {"bad_ts": 2}),
    (["--reason", "score_out_of_range"], {"score_out_of_range": 1}),
], ids=["all", "file-a", "file-b", "reason-and-file", "reason"])
def test_quarantine_counts_follow_the_filters(two_files: dict[str, Path], db_path: Path,
                                             cli: CliRunner, args: list[str], expected: dict) -> None:
    args = [a.format(**two_files) for a in args]
    data = strict_json(invoke(cli, "quarantine", "--db", db_path, *args, "--json").stdout)
    assert _counts(data) == expected
    assert data["total"] == len(data["rows"]) == sum(expected.values())
    assert {r["reason"] for r in data["rows"]} == set(expected)


def test_quarantine_table_counts_follow_file(two_files: dict[str, Path], db_path: Path,
                                            cli: CliRunner) -> None:
    result = invoke(cli, "quarantine", "--db", db_path, "--file", two_files["b"])
    assert result.exit_code == 0, result.output
    by_reason = result.stdout.split("quarantined rows by reason")[1].split("quarantined rows")[0]
    assert "score_out_of_range" not in by_reason
    assert [line.split("│")[3].strip() for line in by_reason.splitlines()
            if "bad_ts" in line] == ["3"]


@pytest.mark.parametrize("given", [
    "{b}",                 # as stored
    "b.csv",               # bare name
    "data/b.csv",          # a trailing part
    "./data/b.csv",        # ./ prefix, relative to the current folder
    "data/../data/b.csv",  # another spelling of the same path
], ids=["stored", "bare-name", "suffix", "dot-slash", "dot-dot"])
def test_quarantine_file_matches_the_same_file_by_another_path(
        two_files: dict[str, Path], db_path: Path, cli: CliRunner, given: str) -> None:
    result = invoke(cli, "quarantine", "--db", db_path, "--file", given.format(**two_files),
                    "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert [r["raw"]["request_id"] for r in data["rows"]] == ["b-t0", "b-t1", "b-t2"]
    assert data["matched_files"] == [str(two_files["b"])]
    assert result.stderr == ""


def test_quarantine_file_relative_to_another_folder(two_files: dict[str, Path], db_path: Path,
                                                   cli: CliRunner, monkeypatch) -> None:
    monkeypatch.chdir(two_files["b"].parent)
    data = strict_json(invoke(cli, "quarantine", "--db", db_path, "--file", "../a.csv",
                              "--json").stdout)
    assert _counts(data) == {"bad_ts": 2, "score_out_of_range": 1}


@pytest.mark.parametrize("given", [
    "ata/b.csv",                              # not a whole path component
    "c.csv",
    "%",                                       # a LIKE wildcard would match every file
    "b.csv'; DROP TABLE quarantine; --",       # a value, never SQL text
], ids=["partial-component", "other-name", "wildcard", "quote"])
def test_quarantine_file_without_a_match_says_which_files_there_are(
        two_files: dict[str, Path], db_path: Path, cli: CliRunner, given: str) -> None:
    result = invoke(cli, "quarantine", "--db", db_path, "--file", given, "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["rows"] == [] and data["by_reason"] == [] and data["total"] == 0
    assert data["matched_files"] == []
    hint = " ".join(result.stderr.split())
    assert hint.startswith(f"note: no quarantined rows from a file matching {given!r}")
    assert f"files with quarantined rows: {two_files['a']}, {two_files['b']}" in hint
    assert scalar(db_path, "SELECT count(*) FROM quarantine") == 6


def test_quarantine_file_hint_lists_at_most_ten_files(tmp_path: Path, db_path: Path,
                                                     cli: CliRunner) -> None:
    folder = tmp_path / "logs"
    for i in range(12):
        bad_rows_csv(folder, f"part-{i:02d}.csv", 1)
    ingest(cli, db_path, folder)
    result = invoke(cli, "quarantine", "--db", db_path, "--file", "nope.csv")
    hint = " ".join(result.stderr.split())
    assert "part-09.csv" in hint and "part-10.csv" not in hint
    assert hint.endswith("(and 2 more)")


def test_quarantine_bare_name_of_several_files_says_so(tmp_path: Path, db_path: Path,
                                                      cli: CliRunner) -> None:
    one = bad_rows_csv(tmp_path, "x/preds.csv", 1)
    two = write_csv(tmp_path, "y/preds.csv", "request_id,ts,p\ny1,later,0.5\n")
    ingest(cli, db_path, one, two)
    result = invoke(cli, "quarantine", "--db", db_path, "--file", "preds.csv", "--json")
    data = strict_json(result.stdout)
    assert data["total"] == 2 and data["matched_files"] == [str(one), str(two)]
    assert "matches 2 files" in result.stderr


def test_quarantine_default_limit_says_how_many_are_hidden(tmp_path: Path, db_path: Path,
                                                          cli: CliRunner) -> None:
    ingest(cli, db_path, bad_rows_csv(tmp_path, "preds.csv", 57))
    table = invoke(cli, "quarantine", "--db", db_path)
    assert table.exit_code == 0, table.output
    assert "showing 50 of 57 rows; --limit 0 shows all" in table.stdout
    data = strict_json(invoke(cli, "quarantine", "--db", db_path, "--json").stdout)
    assert (len(data["rows"]), data["total"], data["truncated"]) == (50, 57, True)
    assert data["matched_files"] is None
    small = invoke(cli, "quarantine", "--db", db_path, "--limit", "60")
    assert "showing" not in small.stdout
    small_json = strict_json(invoke(cli, "quarantine", "--db", db_path, "--limit", "60",
                                    "--json").stdout)
    assert (small_json["total"], small_json["truncated"]) == (57, False)


@pytest.mark.parametrize(("stored", "given", "expected"), [
    (["/srv/data/a.csv"], "a.csv", ["/srv/data/a.csv"]),
    (["/srv/data/a.csv"], "data/a.csv", ["/srv/data/a.csv"]),
    (["/srv/data/a.csv"], "/srv/data//a.csv", ["/srv/data/a.csv"]),
    (["/srv/data/a.csv"], "ta/a.csv", []),
    (["/srv/data/a.csv"], "", []),
    (["/srv/a.csv", "/srv/b/a.csv", "/srv/b.csv"], "a.csv", ["/srv/a.csv", "/srv/b/a.csv"]),
])
def test_matching_source_files(stored: list[str], given: str, expected: list[str]) -> None:
    assert matching_source_files(stored, given) == expected


# --------------------------------------------------------------------------- ingest summary
def test_ingest_names_the_files_it_did_not_read(tmp_path: Path, db_path: Path,
                                                cli: CliRunner) -> None:
    d = tmp_path / "logs"
    write_csv(d, "a.csv", f"""
        id,ts,p
        a,{TS},0.5
    """)
    (d / "notes.txt").write_text("not a log")
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, d)
    assert result.exit_code == 0, result.output
    assert f"not read, of no type lossboard reads: {d / 'notes.txt'}" in " ".join(result.output.split())
    as_json = strict_json(invoke(cli, "ingest", "--db", db_path, *MODEL, d, "--json").stdout)
    assert as_json["ignored"] == [str(d / "notes.txt")]


def test_ingest_summary_tells_files_of_the_same_name_apart(tmp_path: Path, db_path: Path,
                                                          cli: CliRunner) -> None:
    for day in ("dt=2026-11-01", "dt=2026-11-02"):
        write_csv(tmp_path / "hive" / day, "part-0.csv", f"""
            id,ts,p
            {day},{TS},0.5
        """)
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, tmp_path / "hive")
    assert result.exit_code == 0, result.output
    # The notes use the same names as the table (which may fold a long name over two lines).
    assert "note: dt=2026-11-01/part-0.csv: new columns dt" in result.output
    a, b = str(tmp_path / "hive/dt=2026-11-01/part-0.csv"), str(tmp_path / "hive/dt=2026-11-02/part-0.csv")
    assert _short_names([a, b, "/x/c.csv"]) == {
        a: "dt=2026-11-01/part-0.csv", b: "dt=2026-11-02/part-0.csv", "/x/c.csv": "c.csv"}


def test_export_report_without_room_for_a_reference(tmp_path: Path, db_path: Path,
                                                    cli: CliRunner) -> None:
    # The HTML report and the Executive page asked for the reference window's loss and
    # failed with "no reference window" where `lossboard report` now notes it.
    ingest(cli, db_path, _preds_at(tmp_path, ONE_INSTANT))
    ingest(cli, db_path, _labels(tmp_path, len(ONE_INSTANT)))
    out = tmp_path / "r.html"
    result = invoke(cli, "export-report", "--db", db_path, "--model", "fraud", "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "no reference window" in page and "reference log loss — (n = 0)" in page


@pytest.mark.parametrize("args", [["rollup"], ["columns", "--set", "region=feature"]])
def test_a_command_on_a_missing_database_does_not_create_one(tmp_path: Path, cli: CliRunner,
                                                             args: list[str]) -> None:
    typo = tmp_path / "typo.duckdb"
    result = invoke(cli, *args, "--db", typo)
    assert result.exit_code == 1
    assert f"database {typo} does not exist" in " ".join(result.output.split())
    assert not typo.exists()
