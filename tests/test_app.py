"""The Streamlit dashboard (dashboard/app.py and its pages), run headless with AppTest.

Each test points the app at a database through $LOSSBOARD_DB (dashboard/state.py's
``db_path``), builds that database with the real ingest (``lossboard.ingest.load.ingest``) in
``tmp_path``, and checks what the page shows against the ingest report, never against numbers
copied from a previous run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lossboard.ingest.load import IngestOptions, IngestReport, ensure_database, ingest
from lossboard.ingest.mapping import MappingOptions

APP_PATH = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
# The default page is On-call; these tests are about Data health.
DATA_HEALTH = "pages/data_health.py"
# A cold run imports pandas, duckdb and the page modules; 3 s (the default) is too tight on a
# loaded CI machine, a warm run takes about 1 s here.
TIMEOUT_S = 30

# 8 rows: 4 good, then one row for each of four quarantine reasons. `email` is PII by name.
PREDICTIONS_CSV = """\
request_id,ts,score,region,email
r1,2024-01-01T00:00:00Z,0.10,eu,a@example.com
r2,2024-01-01T01:00:00Z,0.90,us,b@example.com
r3,2024-01-01T02:00:00Z,0.50,eu,c@example.com
r4,not-a-time,0.30,eu,d@example.com
r5,2024-01-01T04:00:00Z,1.70,us,e@example.com
,2024-01-01T05:00:00Z,0.20,us,f@example.com
r7,2024-01-01T06:00:00Z,0.40,eu,g@example.com
r8,2024-01-01T07:00:00Z,,us,h@example.com
"""
# The reason each bad row above gets (README, "Quarantine reasons"), by its request id.
EXPECTED_REASONS = {"r4": "bad_ts", "r5": "score_out_of_range", "r8": "missing_score",
                    "": "missing_request_id"}

# 6 rows for model fraud: r1, r2, r7 match a prediction, r99 has none (yet); `banana` is not
# a 0/1 label and an empty label is no label (both bad_label).
LABELS_CSV = """\
request_id,label,label_ts
r1,0,2024-01-02T00:00:00Z
r2,1,2024-01-02T00:00:00Z
r3,banana,2024-01-02T00:00:00Z
r7,1,2024-01-02T00:00:00Z
r99,1,2024-01-02T00:00:00Z
r50,,2024-01-02T00:00:00Z
"""

# Later predictions for test_new_ingest_shows_up: 2 good rows, one bad timestamp.
MORE_PREDICTIONS_CSV = """\
request_id,ts,score,region,email
r20,2024-01-03T00:00:00Z,0.25,eu,x@example.com
r21,2024-01-03T01:00:00Z,0.75,us,y@example.com
r22,1999-99-99,0.50,us,z@example.com
"""


# --------------------------------------------------------------------------- helpers
def _ingest(db: Path, csv_path: Path, text: str, **flags: str) -> IngestReport:
    csv_path.write_text(text)
    report = ingest([csv_path], IngestOptions(db_path=db, flags=MappingOptions(**flags)))
    problems = [f"{f.path}: {f.message}" for f in report.files if f.status != "ok"]
    assert not problems, f"the test data did not go in: {problems}"
    return report


def _ingest_predictions(db: Path, name: str = "predictions.csv",
                        text: str = PREDICTIONS_CSV) -> IngestReport:
    return _ingest(db, db.parent / name, text, model="fraud", model_version="v1")


def _run_app(db: Path, monkeypatch: pytest.MonkeyPatch, page: str | None = None) -> AppTest:
    """Run the app on its default page, then on ``page`` (AppTest can only switch to a page
    registered by st.navigation after a first run)."""
    monkeypatch.setenv("LOSSBOARD_DB", str(db))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _frame(at: AppTest, has_columns: set[str], lacks_columns: frozenset[str] = frozenset()
           ) -> pd.DataFrame:
    """The one dataframe on the page that has ``has_columns`` and none of ``lacks_columns``."""
    found = [d.value for d in at.dataframe
             if has_columns <= set(d.value.columns) and not lacks_columns & set(d.value.columns)]
    assert len(found) == 1, (f"expected one table with columns {sorted(has_columns)}, found "
                             f"{[list(d.value.columns) for d in at.dataframe]}")
    return found[0]


def _runs_table(at: AppTest) -> pd.DataFrame:
    return _frame(at, {"file_id", "n_read", "n_accepted", "n_duplicate", "n_quarantined"})


def _reasons_table(at: AppTest) -> pd.DataFrame:
    return _frame(at, {"kind", "reason", "n_rows", "n_files"})


def _examples_table(at: AppTest) -> pd.DataFrame:
    return _frame(at, {"row_number", "reason", "raw"})


def _columns_table(at: AppTest) -> pd.DataFrame:
    return _frame(at, {"name", "role", "sql_type"})


def _unmatched_table(at: AppTest) -> pd.DataFrame:
    return _frame(at, {"model", "request_id", "label", "label_ts"}, frozenset({"reason"}))


def _fmt(n: int) -> str:
    """How the page formats a count (thousands separator)."""
    return f"{n:,}"


@pytest.fixture
def predictions_db(tmp_path: Path) -> tuple[Path, IngestReport]:
    db = tmp_path / "lossboard.duckdb"
    return db, _ingest_predictions(db)


@pytest.fixture
def labelled_db(predictions_db: tuple[Path, IngestReport]
                ) -> tuple[Path, IngestReport, IngestReport]:
    db, preds = predictions_db
    labels = _ingest(db, db.parent / "labels.csv", LABELS_CSV, model="fraud")
    return db, preds, labels


# --------------------------------------------------------------------------- onboarding
def test_no_database_shows_onboarding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "missing.duckdb"
    at = _run_app(db, monkeypatch)

    assert [t.value for t in at.title] == ["Welcome to lossboard"]
    assert not at.metric
    assert f"no database at `{db}`" in at.info[0].value
    ingest_code = [c for c in at.code if "lossboard ingest" in c.value]
    assert len(ingest_code) == 1
    assert ingest_code[0].language == "bash"
    lines = ingest_code[0].value.splitlines()
    assert lines[0].startswith(f"lossboard ingest --db {db} ")
    assert lines[1].startswith(f"lossboard ingest --db {db} ")
    assert any(c.value == f"lossboard serve --db {db} --sample" for c in at.code)
    assert not db.exists(), "showing the onboarding page must not create the database"


def test_empty_database_shows_onboarding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `lossboard serve` without --sample leaves behind: the schema, no rows.
    db = tmp_path / "empty.duckdb"
    ensure_database(db)
    at = _run_app(db, monkeypatch)

    assert [t.value for t in at.title] == ["Welcome to lossboard"]
    assert "exists but holds no predictions" in at.info[0].value
    assert any(c.value.startswith(f"lossboard ingest --db {db} ") for c in at.code)


@pytest.mark.parametrize("folder", ["my logs", "it's here", "cost $HOME"])
def test_onboarding_commands_survive_copy_paste(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                folder: str) -> None:
    # The commands are meant to be pasted into a shell: a path with a space, a quote or a `$`
    # must still reach lossboard as one argument. bash itself says what it would pass.
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash to check how the shell splits the commands")
    db = tmp_path / folder / "lossboard.duckdb"
    at = _run_app(db, monkeypatch)

    lines = [line for code in at.code for line in code.value.splitlines()]
    assert len(lines) == 3  # ingest predictions, ingest labels, serve --sample
    for line in lines:
        assert line.startswith("lossboard ")
        printed = subprocess.run([bash, "-c", "printf '%s\\0' " + line.removeprefix("lossboard ")],
                                 capture_output=True, text=True, check=True).stdout
        argv = printed.split("\0")[:-1]
        assert argv[argv.index("--db") + 1] == str(db), line


# --------------------------------------------------------------------------- data health
def test_data_health_metrics_match_ingest_report(
        predictions_db: tuple[Path, IngestReport], monkeypatch: pytest.MonkeyPatch) -> None:
    db, report = predictions_db
    (f,) = report.files
    assert (f.n_read, f.n_accepted, f.n_quarantined) == (8, 4, 4)  # the CSV above
    at = _run_app(db, monkeypatch, DATA_HEALTH)

    assert [t.value for t in at.title] == ["Data health"]
    assert _metrics(at) == {
        "Predictions": _fmt(f.n_accepted),
        "Labels": "0",
        "Labelled predictions": "0",
        "Quarantined rows": _fmt(f.n_quarantined),
        "Files ingested": "1",
    }
    assert any("Models: fraud" in c.value for c in at.caption)


def test_data_health_shows_the_rollup_in_use(predictions_db: tuple[Path, IngestReport],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = predictions_db
    table = _frame(_run_app(db, monkeypatch, DATA_HEALTH), {"model", "in_use", "dirty_ranges"})
    assert table[["model", "in_use", "dirty_ranges"]].values.tolist() == [["fraud", True, 0]]


def test_data_health_ingest_runs_table(predictions_db: tuple[Path, IngestReport],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db, report = predictions_db
    (f,) = report.files
    runs = _runs_table(_run_app(db, monkeypatch, DATA_HEALTH))

    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["run_id"] == report.run_id
    assert row["status"] == "ok" and row["kind"] == "predictions"
    assert (row["n_read"], row["n_accepted"], row["n_duplicate"], row["n_quarantined"]) == (
        f.n_read, f.n_accepted, f.n_duplicate, f.n_quarantined)
    assert row["n_read"] == row["n_accepted"] + row["n_duplicate"] + row["n_quarantined"]


def test_data_health_ingest_runs_fit_the_page(predictions_db: tuple[Path, IngestReport],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # At 1440 px the table ran off the right edge (13 columns, full paths): the page shows
    # each file by its name, its folder once in the caption, counts under short names.
    db, report = predictions_db
    (f,) = report.files
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    (shown,) = [d for d in at.dataframe if "n_read" in d.value.columns]
    order = list(shown.proto.column_order)
    assert "file" in order and "path" not in order and "message" not in order
    assert len(order) <= 12
    assert shown.value["file"].iloc[0] == Path(f.path).name
    assert any(f"Files from {Path(f.path).parent}." in c.value for c in at.caption)
    labels = {k: v.get("label") for k, v in json.loads(shown.proto.columns).items()}
    assert labels["n_quarantined"] == "quar." and labels["file_id"] == "#"


def test_data_health_quarantine_by_reason(predictions_db: tuple[Path, IngestReport],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db, report = predictions_db
    by_reason = _reasons_table(_run_app(db, monkeypatch, DATA_HEALTH))

    assert dict(zip(by_reason["reason"], by_reason["n_rows"])) == report.reasons()
    assert sorted(report.reasons()) == sorted(EXPECTED_REASONS.values())
    assert set(by_reason["kind"]) == {"predictions"}
    assert set(by_reason["n_files"]) == {1}


def test_data_health_reason_selectbox_changes_examples(
        predictions_db: tuple[Path, IngestReport], monkeypatch: pytest.MonkeyPatch) -> None:
    db, report = predictions_db
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    select = at.selectbox(key="reason")
    assert sorted(select.options) == sorted(report.reasons())

    first = select.value
    before = _examples_table(at)
    assert set(before["reason"]) == {first}

    other = next(r for r in select.options if r != first)
    at.selectbox(key="reason").select(other).run()
    assert not at.exception
    assert at.selectbox(key="reason").value == other
    after = _examples_table(at)
    assert set(after["reason"]) == {other}
    assert len(after) == report.reasons()[other]
    assert list(after["row_number"]) != list(before["row_number"])
    # The raw row is kept, with the PII column hashed.
    raws = [json.loads(raw) for raw in after["raw"]]
    assert {EXPECTED_REASONS[r["request_id"] or ""] for r in raws} == {other}
    assert not any("@" in r["email"] for r in raws)


def test_data_health_every_reason_has_examples(predictions_db: tuple[Path, IngestReport],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db, report = predictions_db
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    for reason, n_rows in report.reasons().items():
        at.selectbox(key="reason").select(reason).run()
        assert not at.exception, reason
        examples = _examples_table(at)
        assert (set(examples["reason"]), len(examples)) == ({reason}, n_rows)


def test_data_health_columns_table(predictions_db: tuple[Path, IngestReport],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = predictions_db
    columns = _columns_table(_run_app(db, monkeypatch, DATA_HEALTH))
    roles = {(k, n): r for k, n, r in zip(columns["kind"], columns["name"], columns["role"])}

    assert roles[("predictions", "email")] == "pii"
    assert roles[("predictions", "region")] == "segment"  # text, 2 distinct values


def test_data_health_with_labels(labelled_db: tuple[Path, IngestReport, IngestReport],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db, preds, labels = labelled_db
    (p,), (lab,) = preds.files, labels.files
    assert (lab.n_read, lab.n_accepted, lab.n_quarantined, lab.n_unmatched_labels) == (6, 4, 2, 1)
    at = _run_app(db, monkeypatch, DATA_HEALTH)

    assert _metrics(at) == {
        "Predictions": _fmt(p.n_accepted),
        "Labels": _fmt(lab.n_accepted),
        "Labelled predictions": _fmt(lab.n_accepted - lab.n_unmatched_labels),
        "Quarantined rows": _fmt(p.n_quarantined + lab.n_quarantined),
        "Files ingested": "2",
    }
    assert any("1 labels have no prediction yet" in c.value for c in at.caption)
    runs = _runs_table(at)
    assert list(runs["kind"]) == ["labels", "predictions"]  # newest first
    by_reason = _reasons_table(at)
    assert ("labels", "bad_label", 2) in set(zip(by_reason["kind"], by_reason["reason"],
                                                 by_reason["n_rows"]))
    at.selectbox(key="reason").select("bad_label").run()
    assert not at.exception
    assert sorted(_examples_table(at)["row_number"]) == [3, 6]  # banana and the empty label
    unmatched = _unmatched_table(at)
    assert list(unmatched["request_id"]) == ["r99"]


# --------------------------------------------------------------------------- cache
def test_new_ingest_shows_up_without_restart(predictions_db: tuple[Path, IngestReport],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    db, first = predictions_db
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    assert _metrics(at)["Predictions"] == _fmt(first.totals()["n_accepted"])

    second = _ingest_predictions(db, "more_predictions.csv", MORE_PREDICTIONS_CSV)
    (f,) = second.files
    assert (f.n_accepted, f.n_quarantined) == (2, 1)  # the CSV above
    expected = {
        "Predictions": _fmt(first.totals()["n_accepted"] + f.n_accepted),
        "Quarantined rows": _fmt(first.totals()["n_quarantined"] + f.n_quarantined),
        "Files ingested": "2",
    }

    # A rerun of the open session (what a browser does on the next interaction) ...
    at.run()
    assert not at.exception
    assert {k: _metrics(at)[k] for k in expected} == expected
    assert len(_runs_table(at)) == 2
    # ... and a new session both see the new file: the cache key follows the file.
    fresh = _run_app(db, monkeypatch, DATA_HEALTH)
    assert {k: _metrics(fresh)[k] for k in expected} == expected
    assert _reasons_table(fresh).set_index("reason")["n_rows"].to_dict() == {
        r: first.reasons().get(r, 0) + second.reasons().get(r, 0)
        for r in {*first.reasons(), *second.reasons()}}


def test_first_ingest_replaces_onboarding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lossboard.duckdb"
    ensure_database(db)
    assert [t.value for t in _run_app(db, monkeypatch).title] == ["Welcome to lossboard"]

    report = _ingest_predictions(db)
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    assert [t.value for t in at.title] == ["Data health"]
    assert _metrics(at)["Predictions"] == _fmt(report.totals()["n_accepted"])


def test_not_a_database_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--db predictions.csv` by mistake: a sentence saying so, not a traceback.
    db = tmp_path / "predictions.csv"
    db.write_text(PREDICTIONS_CSV)
    monkeypatch.setenv("LOSSBOARD_DB", str(db))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "cannot open" in at.error[0].value and "predictions.csv" in at.error[0].value


def test_data_health_quarantine_examples_fit_the_page(predictions_db: tuple[Path, IngestReport],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The examples ran off the right edge at 1440 px (full paths, the raw row one line): the
    # file by its name, the detail and raw row in set widths, under 1,000 px in all.
    db, report = predictions_db
    (f,) = report.files
    at = _run_app(db, monkeypatch, DATA_HEALTH)
    (shown,) = [d for d in at.dataframe if "raw" in d.value.columns]
    order = list(shown.proto.column_order)
    assert order == ["file_id", "file", "row_number", "reason", "detail", "raw"]
    assert set(shown.value["file"]) == {Path(f.path).name}
    columns = json.loads(shown.proto.columns)
    assert sum(columns[c]["width"] for c in order) < 1000
