"""`lossboard check`: the deploy-pipeline gate's exit codes and what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossboard.dashboard.cli import app, ensure_sample_database


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sample") / "lossboard.duckdb"
    ensure_sample_database(db)
    return db


def check(db: Path, *args: str):
    return CliRunner().invoke(app, ["check", "--db", str(db), "--model", "fraud", *args])


def test_overconfident_canary_fails(sample_db: Path) -> None:
    result = check(sample_db, "--candidate", "v2", "--baseline", "v1")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("FAIL: v2 log loss")
    assert "worse than the allowed +5.0%" in result.stdout


def test_pass_when_the_tolerance_covers_the_gap(sample_db: Path) -> None:
    # v2 is ~60% worse than v1 (README); a tolerance of +100% lets it through.
    result = check(sample_db, "--candidate", "v2", "--baseline", "v1",
                   "--max-relative-increase", "1.0", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "pass" and payload["exit_code"] == 0
    assert 0.3 < payload["relative_delta"] < 1.0


def test_insufficient_data(sample_db: Path) -> None:
    # Three hours into the canary there are ~100 labelled v2 rows, fewer than 1,000.
    result = check(sample_db, "--candidate", "v2", "--baseline", "v1", "--to",
                   "2026-10-21T03:00Z")
    assert result.exit_code == 3, result.output
    assert result.stdout.startswith("INSUFFICIENT_DATA:")
    assert "at least 1,000 each are needed" in result.stdout
    # With a lower bar the same rows are enough to decide (pass or fail, not 3).
    assert check(sample_db, "--candidate", "v2", "--baseline", "v1", "--to",
                 "2026-10-21T03:00Z", "--min-samples", "50").exit_code in (0, 1)


def test_unknown_version_is_insufficient_data(sample_db: Path) -> None:
    result = check(sample_db, "--candidate", "v9", "--baseline", "v1")
    assert result.exit_code == 3
    assert "no predictions of version(s) v9" in result.stdout


def test_same_version_is_an_error(sample_db: Path) -> None:
    result = check(sample_db, "--candidate", "v1", "--baseline", "v1")
    assert result.exit_code == 1 and "must be different versions" in result.stderr


def test_check_in_a_real_process(sample_db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lossboard.dashboard.cli", "check", "--db", str(sample_db),
         "--model", "fraud", "--candidate", "v2", "--baseline", "v1"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL" in proc.stdout


@pytest.mark.parametrize("command", ["alerts", "check", "metrics"])
def test_help_has_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"Example: lossboard {command} --db" in result.stdout
