"""The ``lossboard`` command line, driven the way a user types it (Typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TS, query, scalar, write_csv
from lossboard.dashboard.cli import app
from lossboard.ingest.schema import REASONS

PREDS = f"""
request_id,ts,p,region,email
a1,{TS},0.1,eu,ann@secret.example
a2,{TS},0.2,us,bob@secret.example
a3,{TS},1.5,us,cat@secret.example
a4,yesterday,0.4,eu,dan@secret.example
a1,{TS},0.1,eu,ann@secret.example
"""
MODEL = ["--model", "fraud", "--model-version", "v3"]


@pytest.fixture(autouse=True)
def _no_stray_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads ./lossboard.toml when present: run every test in an empty folder.
    monkeypatch.chdir(tmp_path)


def invoke(cli: CliRunner, *args: str):
    return cli.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, text: str) -> None:
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or text in " ".join(lines)
    assert lines[0].startswith("error: ")
    assert text in " ".join(result.stderr.split())


@pytest.fixture
def ingested(tmp_path: Path, db_path: Path, cli: CliRunner) -> Path:
    """A database holding PREDS, ingested through the CLI."""
    path = write_csv(tmp_path, "preds.csv", PREDS)
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, path)
    assert result.exit_code == 0, result.output
    return db_path


# --------------------------------------------------------------------------- help
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_every_command_is_listed() -> None:
    # The test below covers these; a new command without an example must fail it.
    assert set(COMMANDS) >= {"ingest", "quarantine", "runs", "columns", "demo", "serve"}


@pytest.mark.parametrize("args", [[]] + [[c] for c in COMMANDS], ids=["app"] + COMMANDS)
def test_help_has_a_runnable_example(cli: CliRunner, args: list[str]) -> None:
    result = invoke(cli, *args, "--help")
    assert result.exit_code == 0
    assert "Example: lossboard" in result.stdout


# --------------------------------------------------------------------------- ingest
def test_ingest_summary(tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    path = write_csv(tmp_path, "preds.csv", PREDS)
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "preds.csv" in out and "predictions" in out
    # read 5 = accepted 2 + duplicate 1 + quarantined 2, in the table's row for the file.
    file_row = next(line for line in out.splitlines() if "preds.csv" in line)
    assert [c.strip() for c in file_row.strip("│ ").split("│")][-4:] == ["5", "2", "1", "2"]
    for reason in ("score_out_of_range", "bad_ts"):
        assert reason in out
    assert "new columns region, email" in " ".join(out.split())


def test_ingest_json(tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    path = write_csv(tmp_path, "preds.csv", PREDS)
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, "--json", path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    t = data["totals"]
    assert t == {"n_read": 5, "n_accepted": 2, "n_duplicate": 1, "n_quarantined": 2}
    assert t["n_read"] == t["n_accepted"] + t["n_duplicate"] + t["n_quarantined"]
    assert data["ok"] is True
    assert data["reasons"] == {"bad_ts": 1, "score_out_of_range": 1}
    (f,) = data["files"]
    assert (f["path"], f["status"], f["kind"]) == (str(path), "ok", "predictions")
    assert f["new_columns"] == ["region", "email"]
    assert data["run_id"] == scalar(db_path, "SELECT run_id FROM ingest_runs")


def test_ingest_json_reports_rejection_and_exit_1(tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    good = write_csv(tmp_path, "preds.csv", PREDS)
    no_score = write_csv(tmp_path, "other.csv", f"request_id,ts,comment\nx,{TS},hello\n")
    result = invoke(cli, "ingest", "--db", db_path, *MODEL, "--json", good, no_score)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [f["status"] for f in data["files"]] == ["ok", "rejected"]
    assert "cannot tell whether this is a predictions, labels or kpi file" in data["files"][1]["message"]
    # The good file's rows are in; the totals count only what was read.
    assert data["totals"]["n_read"] == 5
    assert scalar(db_path, "SELECT count(*) FROM predictions") == 2


def test_ingest_rerun_exit_0_and_skipped(ingested: Path, tmp_path: Path, cli: CliRunner) -> None:
    result = invoke(cli, "ingest", "--db", ingested, *MODEL, "--json", tmp_path / "preds.csv")
    assert result.exit_code == 0
    assert [f["status"] for f in json.loads(result.stdout)["files"]] == ["skipped"]


def test_ingest_into_a_missing_folder(tmp_path: Path, cli: CliRunner) -> None:
    path = write_csv(tmp_path, "preds.csv", PREDS)
    db = tmp_path / "not" / "yet" / "there" / "lb.duckdb"
    result = invoke(cli, "ingest", "--db", db, *MODEL, path)
    assert result.exit_code == 0, result.output
    assert scalar(db, "SELECT count(*) FROM predictions") == 2


def test_ingest_mapping_flags(tmp_path: Path, db_path: Path, cli: CliRunner) -> None:
    # README's example: own column names mapped on the command line.
    path = write_csv(tmp_path, "p.csv", f"event_uuid,scored_at,fraud_score,region,channel,note\n"
                                        f"e1,{TS},0.3,eu,web,x\n")
    result = invoke(cli, "ingest", "--db", db_path, path, "--map", "request_id=event_uuid",
                    "--map", "ts=scored_at", "--map", "p=fraud_score", *MODEL,
                    "--segments", "region,channel", "--pii", "note")
    assert result.exit_code == 0, result.output
    assert query(db_path, "SELECT request_id, model, model_version, p FROM predictions") == [
        ("e1", "fraud", "v3", 0.3)]
    assert query(db_path, "SELECT name, role, role_source FROM columns ORDER BY name") == [
        ("channel", "segment", "flag"), ("note", "pii", "flag"), ("region", "segment", "flag")]


@pytest.mark.parametrize(("args", "message"), [
    (["--map", "prob=score"], "unknown field 'prob' in a mapping"),
    (["--map", "p"], "--map: expected KEY=VALUE, got 'p'"),
    (["--kind", "preds"], "kind must be one of predictions, labels, kpi; got 'preds'"),
    (["--config", "missing.toml"], "config file missing.toml not found"),
])
def test_ingest_flag_errors_are_one_line(tmp_path: Path, db_path: Path, cli: CliRunner,
                                        args: list[str], message: str) -> None:
    path = write_csv(tmp_path, "preds.csv", PREDS)
    result = invoke(cli, "ingest", "--db", db_path, path, *args)
    assert_one_line_error(result, message)
    assert not db_path.exists()


def test_ingest_map_to_missing_column_rejects_the_file(tmp_path: Path, db_path: Path,
                                                       cli: CliRunner) -> None:
    path = write_csv(tmp_path, "preds.csv", PREDS)
    result = invoke(cli, "ingest", "--db", db_path, path, *MODEL, "--map", "p=fraud_score")
    assert result.exit_code == 1
    stderr = " ".join(result.stderr.split())
    assert f"rejected: {path}: --map maps p to column 'fraud_score', which the file does not have" in stderr
    assert "columns found: request_id, ts, p, region, email" in stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- quarantine
def test_quarantine_json(ingested: Path, cli: CliRunner) -> None:
    result = invoke(cli, "quarantine", "--db", ingested, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {(r["reason"], r["n_rows"]) for r in data["by_reason"]} == {("bad_ts", 1),
                                                                       ("score_out_of_range", 1)}
    rows = [(r["row_number"], r["reason"], r["raw"]["request_id"]) for r in data["rows"]]
    assert rows == [(3, "score_out_of_range", "a3"), (4, "bad_ts", "a4")]
    # PII is a hash in the raw row, never the address.
    assert all("@" not in r["raw"]["email"] for r in data["rows"])
    assert "secret.example" not in result.stdout


@pytest.mark.parametrize(("reason", "expected"), [
    ("bad_ts", [(4, "a4")]), ("score_out_of_range", [(3, "a3")]), ("missing_kpi", []),
])
def test_quarantine_by_reason(ingested: Path, cli: CliRunner, reason: str, expected: list) -> None:
    result = invoke(cli, "quarantine", "--db", ingested, "--reason", reason, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["row_number"], r["raw"]["request_id"]) for r in rows] == expected
    assert {r["reason"] for r in rows} <= {reason}


def test_quarantine_table(ingested: Path, cli: CliRunner) -> None:
    result = invoke(cli, "quarantine", "--db", ingested, "--reason", "bad_ts")
    assert result.exit_code == 0, result.output
    assert "quarantined rows (bad_ts)" in result.stdout
    assert "yesterday" in result.stdout
    assert "score_out_of_range" not in result.stdout


def test_quarantine_unknown_reason(ingested: Path, cli: CliRunner) -> None:
    result = invoke(cli, "quarantine", "--db", ingested, "--reason", "bad_timestamp")
    assert_one_line_error(result, "unknown reason 'bad_timestamp'; reasons are: " + ", ".join(REASONS))


def test_read_commands_on_a_missing_database(tmp_path: Path, cli: CliRunner) -> None:
    for command in ("quarantine", "runs", "columns"):
        result = invoke(cli, command, "--db", tmp_path / "nope.duckdb")
        assert_one_line_error(result, f"database {tmp_path / 'nope.duckdb'} does not exist")


# --------------------------------------------------------------------------- runs / columns
def test_runs(ingested: Path, tmp_path: Path, cli: CliRunner) -> None:
    invoke(cli, "ingest", "--db", ingested, *MODEL, tmp_path / "preds.csv")  # skipped
    result = invoke(cli, "runs", "--db", ingested, "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    # Newest first.
    assert [(r["file_id"], r["status"]) for r in runs] == [(2, "skipped"), (1, "ok")]
    assert (runs[1]["n_read"], runs[1]["n_accepted"], runs[1]["n_duplicate"],
            runs[1]["n_quarantined"]) == (5, 2, 1, 2)
    limited = invoke(cli, "runs", "--db", ingested, "--limit", "1", "--json")
    assert [r["file_id"] for r in json.loads(limited.stdout)] == [2]
    table = invoke(cli, "runs", "--db", ingested)
    assert table.exit_code == 0 and table.stdout.startswith("ingest runs")


def test_columns(ingested: Path, cli: CliRunner) -> None:
    result = invoke(cli, "columns", "--db", ingested, "--json")
    assert result.exit_code == 0, result.output
    got = [(c["kind"], c["name"], c["role"], c["role_source"]) for c in json.loads(result.stdout)]
    assert got == [("predictions", "email", "pii", "inferred"),
                   ("predictions", "region", "segment", "inferred")]
    table = invoke(cli, "columns", "--db", ingested)
    assert table.exit_code == 0 and "region" in table.stdout and "segment" in table.stdout


def test_columns_set_pii(ingested: Path, cli: CliRunner) -> None:
    result = invoke(cli, "columns", "--db", ingested, "--set", "region=pii", "--json")
    assert result.exit_code == 0, result.output
    got = {c["name"]: (c["role"], c["role_source"]) for c in json.loads(result.stdout)}
    assert got["region"] == ("pii", "override")
    regions = [r[0] for r in query(ingested, "SELECT region FROM predictions")]
    assert len(regions) == 2 and not {"eu", "us"} & set(regions)
    raws = [json.loads(r[0]) for r in query(ingested, "SELECT CAST(raw AS VARCHAR) FROM quarantine")]
    assert not {"eu", "us"} & {r["region"] for r in raws}


def test_columns_set_pii_leaves_no_raw_bytes_in_the_file(tmp_path: Path, cli: CliRunner) -> None:
    # DuckDB does not wipe freed blocks: without the rewrite the raw values stay findable.
    secret = "secret-address-12345@example.org"
    path = write_csv(tmp_path, "c.csv", f"""\
        request_id,ts,p,contact
        a,{TS},0.5,{secret}
        """)
    db = tmp_path / "c.duckdb"
    assert invoke(cli, "ingest", "--db", db, *MODEL, "--features", "contact", path).exit_code == 0
    assert secret.encode() in db.read_bytes()
    result = invoke(cli, "columns", "--db", db, "--set", "contact=pii")
    assert result.exit_code == 0, result.output
    assert secret.encode() not in db.read_bytes()
    assert scalar(db, "SELECT count(*) FROM predictions") == 1
    assert scalar(db, "SELECT count(*) FROM labelled") == 0  # views survive the rewrite


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "region=secret"], "unknown role 'secret'"),
    (["--set", "nope=feature"], "no predictions column named 'nope' is registered"),
    (["--set", "region"], "--set: expected KEY=VALUE, got 'region'"),
    (["--kind", "stuff"], "unknown kind 'stuff'"),
])
def test_columns_errors(ingested: Path, cli: CliRunner, args: list[str], message: str) -> None:
    assert_one_line_error(invoke(cli, "columns", "--db", ingested, *args), message)


def test_serve_refuses_a_bad_config_before_starting(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "lossboard.toml"
    bad.write_text("[[slo]]\nmodel = 'fraud'\nobjective = 'high'\n")
    result = invoke(cli, "serve", "--db", tmp_path / "lb.duckdb", "--config", bad, "--headless")
    assert result.exit_code != 0
    assert f"{bad} [[slo]] #1" in result.stderr  # the table named as written, not eaten as markup
    missing = invoke(cli, "serve", "--db", tmp_path / "lb.duckdb", "--config", tmp_path / "nope.toml")
    assert missing.exit_code != 0 and "not found" in (missing.stdout + missing.stderr)
