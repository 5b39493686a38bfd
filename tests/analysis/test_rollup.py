"""The hourly rollup (dashboard/analysis/rollup.py): kept equal to the rows by the ingest, read
by the cube only when current, and the cube it gives equals the cube scanned from the rows.

The figures a cube serves are compared with the row scans in test_cube.py, whose databases
are made by the real ingest and so carry a rollup: those tests read it (asserted here too).
This file checks the rollup itself: every sum of a cube built from it against the same cube
built from the rows, for windows cut inside hours, reference windows, label maturity,
version and segment filters; the incremental refresh after each kind of ingest against a
recomputation from scratch; and that a dirty, foreign or failed rollup is never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from unittest.mock import patch

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lossboard.dashboard.analysis import base, cube, report, rollup, segments
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.cli import app
from lossboard.db import read_connection, write_connection
from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

from .conftest import binary_frames, ingest_frames, write_parquet

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
T0 = pd.Timestamp("2026-10-01T00:00:00Z")


@contextmanager
def answered(owner: object, name: str) -> Iterator[list[bool]]:
    """Patch ``owner.name`` to record, per call, whether it returned something (not None)."""
    real = getattr(owner, name)
    seen: list[bool] = []

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out is not None)
        return out

    with patch.object(owner, name, spy):
        yield seen


def cube_frame(con: duckdb.DuckDBPyConnection, flt: Filter, windows: list[Filter],
               use_rollup: bool) -> pd.DataFrame:
    cols = segments.segment_columns(con)
    with patch.object(rollup, "ENABLED", use_rollup), answered(rollup, "source") as served:
        c = cube.build(con, flt, cols, windows)
    assert served == [use_rollup], "the rollup should serve exactly when enabled"
    try:
        frame = con.execute(f"SELECT * FROM {c.table}").df()
    finally:
        c.drop(con)
    return frame.sort_values(["dim", "value", "slot"], na_position="first").reset_index(drop=True)


def assert_same_cube(con: duckdb.DuckDBPyConnection, flt: Filter, windows: list[Filter]) -> None:
    stored = cube_frame(con, flt, windows, True)
    scanned = cube_frame(con, flt, windows, False)
    assert len(stored) == len(scanned), (flt, len(stored), len(scanned))
    pd.testing.assert_frame_equal(stored, scanned, check_exact=False, rtol=1e-12, atol=1e-9,
                                  check_dtype=False, obj=str(flt))


def frames(seed: int, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    preds, labels = binary_frames(rng, n, hours=24 * 6, versions=("v1", "v2"),
                                  label_fraction=0.7)
    preds.loc[rng.uniform(size=n) < 0.05, "p"] = np.nan
    preds.loc[rng.uniform(size=n) < 0.05, "p"] = rng.choice([0.0, 1.0])
    preds["region"] = preds["region"].astype(object)
    preds.loc[rng.uniform(size=n) < 0.1, "region"] = None
    preds["weight"] = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    return preds, labels


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400),
       start=st.integers(0, 3 * 24 * 60), length=st.integers(1, 4 * 24 * 60),
       seconds=st.integers(0, 59), maturity=st.sampled_from([None, 0.0, 5.5, 30.0]),
       versions=st.sampled_from([(), ("v2",)]),
       segment=st.sampled_from([(), (("region", "eu"),), (("region", "eu"), ("region", "us")),
                                (("device", "web"), ("region", "us"))]))
def test_a_cube_from_the_rollup_equals_one_from_the_rows(make_db, seed, n, start, length,
                                                         seconds, maturity, versions,
                                                         segment) -> None:
    preds, labels = frames(seed, n)
    db = make_db(preds, labels, segments=("region", "device"))
    lo = T0 + pd.Timedelta(minutes=start, seconds=seconds)
    hi = lo + pd.Timedelta(minutes=length)
    flt = Filter(model="m", start=lo.to_pydatetime(), end=hi.to_pydatetime(),
                 versions=versions, segments=segment, maturity_hours=maturity)
    ref = Filter(model="m", start=(lo - pd.Timedelta(hours=7, minutes=3)).to_pydatetime(),
                 end=(lo + pd.Timedelta(minutes=41)).to_pydatetime(), versions=versions,
                 segments=segment, maturity_hours=maturity)
    with read_connection(db) as con:
        assert_same_cube(con, flt, [ref])
        assert_same_cube(con, flt, [])


def test_the_reports_cube_reads_the_rollup(make_db) -> None:
    """The figures test_cube.py compares come from the rollup on its databases."""
    preds, labels = frames(5, 500)
    db = make_db(preds, labels, segments=("region", "device"))
    with read_connection(db) as con:
        flt = report.resolve_windows(con, Filter(model="m"))
        info = base.model_info(con, "m")
        assert rollup.source(con, flt, info, segments.segment_columns(con), ()) is not None
        assert_same_cube(con, flt, report.cube_windows(con, flt))


def test_a_multiclass_rollup_equals_the_rows(make_db) -> None:
    rng = np.random.default_rng(11)
    n = 300
    probs = rng.dirichlet([1, 1, 1], n)
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)],
                          "ts": T0 + pd.to_timedelta(rng.uniform(0, 4 * 86400, n), unit="s"),
                          "model": "mc", "model_version": "v1", "region": rng.choice(["a", "b"], n),
                          "p_x": probs[:, 0], "p_y": probs[:, 1], "p_z": probs[:, 2]})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": rng.choice(["x", "y", "z"], n)})
    db = make_db(preds, labels, segments=("region",),
                 class_probs=(("x", "p_x"), ("y", "p_y"), ("z", "p_z")))
    with read_connection(db) as con:
        flt = Filter(model="mc", start=(T0 + pd.Timedelta(hours=5, minutes=9)).to_pydatetime(),
                     end=(T0 + pd.Timedelta(days=3, minutes=1)).to_pydatetime())
        assert_same_cube(con, flt, [])


def stored_rollup(con: duckdb.DuckDBPyConnection, model: str) -> pd.DataFrame:
    frame = con.execute("SELECT * EXCLUDE (model) FROM rollup WHERE model = ?", [model]).df()
    frame["seg"] = frame["seg"].map(lambda s: tuple(s))
    return frame.sort_values(["slot", "version", "seg"]).reset_index(drop=True)


def recomputed(con: duckdb.DuckDBPyConnection, model: str) -> pd.DataFrame:
    """The rollup as a full recomputation from the rows would make it."""
    info = base.model_info(con, model)
    cols = segments.segment_columns(con)
    sql, params = rollup._fine(con, info, cols)
    store = rollup._store_sql(sql, cols)
    params = {**params, "ru_model": model}
    used = rollup._used(store, params)
    frame = con.execute(f"SELECT * EXCLUDE (model) FROM ({store})", used).df()
    frame["seg"] = frame["seg"].map(lambda s: tuple(s))
    return frame.sort_values(["slot", "version", "seg"]).reset_index(drop=True)


def assert_current(db, model: str = "m") -> None:
    with read_connection(db) as con:
        assert con.execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] == 0
        pd.testing.assert_frame_equal(stored_rollup(con, model), recomputed(con, model),
                                      check_exact=False, rtol=1e-12, atol=1e-9, check_dtype=False)
        row = rollup.status(con)
        assert [r["in_use"] for r in row if r["model"] == model] == [True]


def test_each_ingest_keeps_the_rollup_equal_to_a_recomputation(tmp_path) -> None:
    """Predictions in two overlapping files, then labels in two files (one for predictions
    not yet ingested), then those predictions: after each, only the touched hours were
    recomputed and the rollup equals a recomputation from scratch."""
    rng = np.random.default_rng(21)
    preds, labels = binary_frames(rng, 900, hours=24 * 8, versions=("v1", "v2"))
    preds = preds.sort_values("ts").reset_index(drop=True)
    labels = labels.set_index("request_id").loc[preds["request_id"]].reset_index()
    db = tmp_path / "lossboard.duckdb"
    flags = dict(segments=("region", "device"))
    parts = [preds.iloc[:400], preds.iloc[350:700], preds.iloc[700:]]
    ingest_frames(db, parts[0], None, **flags)
    assert_current(db)
    ingest_frames(db, parts[1], None, **flags)
    assert_current(db)
    ingest_frames(db, None, labels.iloc[:300])
    assert_current(db)
    ingest_frames(db, None, labels.iloc[300:])  # some for predictions still to come
    assert_current(db)
    folder = tmp_path / "last"
    folder.mkdir()
    path = write_parquet(parts[2], folder / "p.parquet")
    result = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="predictions", **flags)))
    assert result.files[0].status == "ok"
    assert result.rollup is not None and result.rollup["partial"] == ["m"], result.rollup
    assert_current(db)
    # Re-ingesting a file changes nothing and recomputes nothing.
    again = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="predictions", **flags)))
    assert again.files[0].status == "skipped"
    assert again.rollup == {"whole": [], "partial": [], "seconds": pytest.approx(again.rollup["seconds"])}
    assert_current(db)


def test_a_dirty_or_foreign_rollup_is_not_read(make_db) -> None:
    preds, labels = frames(8, 300)
    db = make_db(preds, labels, segments=("region", "device"))
    flt = Filter(model="m", start=T0.to_pydatetime(), end=(T0 + pd.Timedelta(days=3)).to_pydatetime())

    def served() -> bool:
        with read_connection(db) as con:
            return rollup.source(con, flt, base.model_info(con, "m"),
                                 segments.segment_columns(con), ()) is not None

    assert served()
    with write_connection(db) as con:
        con.execute("INSERT INTO rollup_dirty VALUES ('m', ?, ?)", [flt.start, flt.start])
    assert not served()
    result = CliRunner().invoke(app, ["rollup", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert served()
    # Another set of segment columns: the stored sums are keyed otherwise, so not read ...
    result = CliRunner().invoke(app, ["columns", "--db", str(db), "--set", "device=feature"])
    assert result.exit_code == 0, result.output
    # ... until the refresh the command runs after a role change recomputed them.
    assert served()
    with read_connection(db) as con:
        assert segments.segment_columns(con) == ["region"]
        assert_same_cube(con, flt, [])
    # A signature that is not the current code's (another lossboard's sums) is not read.
    with write_connection(db) as con:
        con.execute("UPDATE rollup_state SET signature = 'other'")
    assert not served()
    with write_connection(db) as con:
        rollup.refresh(con)
    assert served()


def test_a_rollup_as_large_as_the_rows_is_not_kept_in_use(make_db) -> None:
    preds, labels = frames(9, 200)
    db = make_db(preds, labels, segments=("region", "device"))
    with patch.object(rollup, "MAX_FRACTION", 0.0), patch.object(rollup, "_SMALL", 0):
        with write_connection(db) as con:
            rollup.refresh(con, rebuild=True)
    with read_connection(db) as con:
        assert rollup.status(con)[0]["in_use"] is False
        assert rollup.source(con, Filter(model="m", start=T0.to_pydatetime(),
                                         end=(T0 + pd.Timedelta(days=1)).to_pydatetime()),
                             base.model_info(con, "m"), segments.segment_columns(con), ()) is None


def test_a_failed_refresh_loses_nothing_and_the_next_ingest_catches_up(tmp_path) -> None:
    rng = np.random.default_rng(4)
    preds, labels = binary_frames(rng, 300, hours=24 * 4)
    db = tmp_path / "lossboard.duckdb"
    ingest_frames(db, preds, None, segments=("region",))
    folder = tmp_path / "labels"
    folder.mkdir()
    labels["label"] = labels["label"].astype(str)
    path = write_parquet(labels, folder / "labels.parquet")
    real_run = rollup._run

    def failing(con, sql, params):
        if sql.startswith("INSERT INTO rollup"):
            raise duckdb.IOException("disk full (simulated)")
        return real_run(con, sql, params)

    with patch.object(rollup, "_run", failing):
        result = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="labels")))
    assert result.files[0].status == "ok"
    assert "disk full" in result.rollup["error"]
    with read_connection(db) as con:
        # The labels are in; the rollup's transaction rolled back whole (the old sums and
        # the marks are both still there), and readers scan the rows meanwhile.
        assert con.execute("SELECT count(*) FROM predictions WHERE label IS NOT NULL").fetchone()[0] == len(labels)
        assert con.execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] > 0
        assert rollup.status(con)[0]["in_use"] is False
        assert con.execute("SELECT sum(n_labelled) FROM rollup").fetchone()[0] == 0
    again = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="labels")))
    assert again.files[0].status == "skipped"
    assert again.rollup["partial"] == ["m"]
    assert_current(db)


def test_loss_figures_without_a_cube_read_the_rollup(make_db) -> None:
    """overall, by_bucket and by_version, given no cube, build one from a current rollup (the
    Executive page's calls): the same figures as from the rows."""
    from lossboard.dashboard.analysis import loss

    preds, labels = frames(12, 400)
    db = make_db(preds, labels, segments=("region", "device"))
    lo = T0 + pd.Timedelta(hours=3, minutes=21)
    flt = Filter(model="m", start=lo.to_pydatetime(), end=(lo + pd.Timedelta(days=4)).to_pydatetime())
    calls = [lambda con: loss.overall(con, flt, auc=False), lambda con: loss.overall(con, flt),
             lambda con: loss.by_bucket(con, flt, bucket="day", auc=False),
             lambda con: loss.by_bucket(con, flt, bucket="hour", auc=False),
             lambda con: loss.by_version(con, flt, auc=False)]
    with read_connection(db) as con:
        built: list[bool] = []
        for call in calls:
            with answered(cube, "from_rollup") as seen:
                stored = call(con)
            built += seen
            with patch.object(rollup, "ENABLED", False):
                scanned = call(con)
            if isinstance(stored, pd.DataFrame):
                pd.testing.assert_frame_equal(stored, scanned, check_exact=False, rtol=1e-12,
                                              atol=1e-12)
            else:
                for key, value in vars(stored).items():
                    other = vars(scanned)[key]
                    if isinstance(value, float):
                        assert other == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key
                    else:
                        assert value == other, key
        assert built == [True] * len(calls)
        # A Filter on a column the rollup does not hold: no cube (it would scan the rows).
        odd = replace(flt, segments=(("h1_tanh", "0.5"),))
        assert cube.from_rollup(con, odd) is None
        eu = cube.from_rollup(con, replace(flt, segments=(("region", "eu"),)))
        assert eu is not None
        eu.drop(con)
        # No temp table is left behind.
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0


KILLED_REFRESH = """
import sys, time
from lossboard.dashboard.analysis import rollup
from lossboard.db import write_connection

real = rollup._run

def stalled(con, sql, params):
    real(con, sql, params)
    if sql.startswith("INSERT INTO rollup"):
        print("inside the transaction", flush=True)  # its DELETE and INSERT are done
        time.sleep(120)

rollup._run = stalled
with write_connection(sys.argv[1], 10) as con:
    rollup.refresh(con)
"""


def test_kill_9_inside_a_refresh_leaves_the_old_sums_and_the_marks(make_db) -> None:
    """A refresh killed after it deleted and rewrote a model's hours, before COMMIT: the
    database opens with the rollup as it was and the dirty mark still there (so readers scan
    the rows), and the next refresh makes it current."""
    import signal
    import subprocess
    import sys

    preds, labels = frames(14, 400)
    db = make_db(preds, labels, segments=("region", "device"))
    with write_connection(db) as con:
        # An ingest committed and died before its refresh: its range is marked dirty.
        con.execute("INSERT INTO rollup_dirty VALUES ('m', ?, ?)",
                    [T0.to_pydatetime(), (T0 + pd.Timedelta(days=2)).to_pydatetime()])
        con.execute("UPDATE predictions SET label = NULL, label_ts = NULL, label_ts_source = NULL, "
                    "label_model = NULL WHERE ts < ?", [(T0 + pd.Timedelta(days=1)).to_pydatetime()])
    with read_connection(db) as con:
        before = stored_rollup(con, "m")
        state = con.execute("SELECT * FROM rollup_state").fetchall()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_REFRESH, str(db)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "inside the transaction"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with read_connection(db) as con:
        pd.testing.assert_frame_equal(stored_rollup(con, "m"), before)
        assert con.execute("SELECT * FROM rollup_state").fetchall() == state
        assert con.execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] == 1
        assert rollup.status(con)[0]["in_use"] is False
        # ... so a cube scans the rows, which hold the change the rollup does not have yet.
        assert_cube_scans_the_rows(con)
    result = CliRunner().invoke(app, ["rollup", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert_current(db)


def assert_cube_scans_the_rows(con: duckdb.DuckDBPyConnection) -> None:
    flt = Filter(model="m", start=T0.to_pydatetime(), end=(T0 + pd.Timedelta(days=3)).to_pydatetime())
    with answered(rollup, "source") as served:
        c = cube.build(con, flt, segments.segment_columns(con))
    c.drop(con)
    assert served == [False]
