"""The cube (dashboard/analysis/cube.py) gives the figures the row scans give.

Every function that takes ``cube=`` must return the same frame / summary with and without it,
for the windows the report asks (the window, the reference window, a window from a UTC
midnight on), with window ends that do not fall on an hour, NaN scores, unlabelled rows, NULL
segment values, weights and a multiclass model; and must ignore a cube that does not cover
the Filter (other segments, versions, a window end inside a slot).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import timedelta
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossboard.dashboard.analysis import canary, cube, loss, report, rollup, segments
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection

from .conftest import binary_frames

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def assert_same(a: object, b: object, what: str) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12, obj=what)
        return
    for key, x in asdict(a).items():
        y = asdict(b)[key]
        if isinstance(x, float) and isinstance(y, float):
            assert y == pytest.approx(x, rel=1e-12, abs=1e-12), (what, key)
        else:
            assert x == y, (what, key, x, y)


def windows(flt: Filter) -> list[Filter]:
    midnight = (flt.start + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [flt, flt.reference(), replace(flt, start=midnight)]


def check_all(db, flt: Filter, cols: list[str]) -> cube.Cube:
    with read_connection(db) as con:
        flt = report.resolve_windows(con, flt)
        c = cube.build(con, flt, cols, report.cube_windows(con, flt))
        try:
            # The cube reads the hourly rollup (the ingest made one); the figures it is compared
            # with scan the rows (a function without a cube would build one from the rollup).
            with patch.object(rollup, "ENABLED", False):
                for w in windows(flt):
                    assert c.covers(w), w
                    check_counts(con, w, c)
                    # The canary of w: from the cube for w = flt (its common range is a cube
                    # window), from the rows otherwise; the same result either way.
                    pair = canary.detect_pair(con, w)
                    if pair is not None:
                        assert_same(canary.compare_versions(con, w, baseline=pair[0], candidate=pair[1]),
                                    canary.compare_versions(con, w, baseline=pair[0], candidate=pair[1],
                                                            cube=c), f"canary {w}")
                        if w is flt:  # ... and the cube did serve it
                            common = canary.common_window(con, w)
                            assert canary._moments_from_cube(
                                con, c, w, common.start, common.end - timedelta(microseconds=1),
                                pair) is not None
                    for auc in (True, False):
                        assert_same(loss.overall(con, w, auc=auc), loss.overall(con, w, auc=auc, cube=c),
                                    f"overall {w}")
                    for bucket in ("day", "hour") if w is flt else ("day",):
                        assert_same(loss.by_bucket(con, w, bucket=bucket, auc=False),
                                    loss.by_bucket(con, w, bucket=bucket, auc=False, cube=c), bucket)
                    for window, step in (("1h", "hour"), ("6h", "hour"), ("24h", "day")):
                        assert_same(loss.rolling(con, w, window=window, step=step),
                                    loss.rolling(con, w, window=window, step=step, cube=c), window)
                    assert_same(loss.by_version(con, w, auc=False),
                                loss.by_version(con, w, auc=False, cube=c), "by_version")
                    for col in cols:
                        assert_same(segments.excess_loss(con, w, col),
                                    segments.excess_loss(con, w, col, cube=c), f"excess {col}")
                        if w.has_reference:
                            assert_same(segments.loss_change(con, w, col),
                                        segments.loss_change(con, w, col, cube=c), f"change {col}")
        finally:
            c.drop(con)
        return c


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), weighted=st.booleans(),
       start_minute=st.integers(0, 59), labelled=st.sampled_from([1.0, 0.6]))
def test_binary_figures_equal_with_and_without_cube(make_db, seed, n, weighted, start_minute,
                                                    labelled) -> None:
    rng = np.random.default_rng(seed)
    preds, labels = binary_frames(rng, n, hours=24 * 9, versions=("v1", "v2"),
                                  label_fraction=labelled)
    preds.loc[rng.uniform(size=n) < 0.05, "p"] = np.nan
    preds.loc[rng.uniform(size=n) < 0.05, "p"] = rng.choice([0.0, 1.0])
    preds["region"] = preds["region"].astype(object)
    preds.loc[rng.uniform(size=n) < 0.1, "region"] = None
    if weighted:
        preds["weight"] = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    db = make_db(preds, labels, segments=("region", "device"))
    # A window that starts and ends inside an hour, with a reference that ends inside one too.
    t0 = pd.Timestamp("2026-10-01T00:00:00Z") + pd.Timedelta(minutes=start_minute, seconds=7)
    flt = Filter(model="m", start=t0.to_pydatetime(), end=(t0 + pd.Timedelta(days=8, minutes=13)).to_pydatetime(),
                 reference_start=t0.to_pydatetime(),
                 reference_end=(t0 + pd.Timedelta(days=2, minutes=31)).to_pydatetime())
    check_all(db, flt, ["region", "device"])


def test_multiclass_figures_equal_with_and_without_cube(make_db) -> None:
    rng = np.random.default_rng(7)
    n = 400
    probs = rng.dirichlet([1, 1, 1], n)
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)],
                          "ts": pd.Timestamp("2026-10-01T00:20:00Z") + pd.to_timedelta(
                              rng.uniform(0, 8 * 86400, n), unit="s"),
                          "model": "mc", "model_version": "v1", "region": rng.choice(["a", "b"], n),
                          "p_x": probs[:, 0], "p_y": probs[:, 1], "p_z": probs[:, 2]})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": rng.choice(["x", "y", "z"], n)})
    db = make_db(preds, labels, segments=("region",),
                 class_probs=(("x", "p_x"), ("y", "p_y"), ("z", "p_z")))
    check_all(db, Filter(model="mc"), ["region"])


def test_a_cube_is_not_used_for_a_filter_it_does_not_cover(make_db) -> None:
    rng = np.random.default_rng(3)
    preds, labels = binary_frames(rng, 500, hours=24 * 9, versions=("v1", "v2"))
    db = make_db(preds, labels, segments=("region",))
    with read_connection(db) as con:
        flt = report.resolve_windows(con, Filter(model="m"))
        c = cube.build(con, flt, ["region"], [flt.reference()])
        try:
            inside = flt.start + timedelta(hours=30, minutes=17)
            others = [replace(flt, segments=(("region", "eu"),)), replace(flt, versions=("v2",)),
                      replace(flt, start=inside), replace(flt, maturity_hours=5.0),
                      replace(flt, end=flt.end + timedelta(days=1))]
            for other in others:
                assert not c.covers(other), other
                # ... and the functions then scan the rows: the right figures, not the cube's.
                assert_same(loss.overall(con, other, auc=False),
                            loss.overall(con, other, auc=False, cube=c), f"overall {other}")
                assert_same(segments.excess_loss(con, other, "region"),
                            segments.excess_loss(con, other, "region", cube=c), f"excess {other}")
            cut = loss.overall(con, replace(flt, start=inside), auc=False, cube=c)
            assert cut.n_predictions < loss.overall(con, flt, auc=False).n_predictions
        finally:
            c.drop(con)
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                           [c.table]).fetchone()[0] == 0


def check_counts(con, flt: Filter, c: cube.Cube) -> None:
    """score_saturation and labels.coverage / label_stall read the cube's counts."""
    from lossboard.dashboard.analysis import labels, saturation
    lag = labels.label_lag(con, flt).p90_hours
    for bucket in ("day", "hour"):
        a = saturation.score_saturation(con, flt, bucket=bucket)
        b = saturation.score_saturation(con, flt, bucket=bucket, cube=c)
        assert_same(a.overall, b.overall, f"saturation {bucket}")
        assert_same(a.by_bucket, b.by_bucket, f"saturation {bucket}")
        if lag is not None:
            kw = dict(bucket=bucket, lag_p90_hours=lag, lag_quantiles=False)
            assert_same(labels.coverage(con, flt, **kw), labels.coverage(con, flt, **kw, cube=c),
                        f"coverage {bucket}")
    assert_same(labels.label_stall(con, flt, lag_p90_hours=lag),
                labels.label_stall(con, flt, lag_p90_hours=lag, cube=c), "stall")


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), weighted=st.booleans())
def test_summing_per_value_combination_gives_the_same_cube(make_db, seed, n, weighted) -> None:
    """build sums per (slot, version, combination of segment values) when the combinations are
    few (cube.MAX_COMBINATIONS), else aggregates the segments from the rows apart: the same
    table either way (NULL segment values, unlabelled rows, NaN scores, weights)."""
    from unittest.mock import patch

    rng = np.random.default_rng(seed)
    preds, labels = binary_frames(rng, n, hours=24 * 9, versions=("v1", "v2"), label_fraction=0.6)
    preds.loc[rng.uniform(size=n) < 0.05, "p"] = np.nan
    preds["region"] = preds["region"].astype(object)
    preds.loc[rng.uniform(size=n) < 0.1, "region"] = None
    if weighted:
        preds["weight"] = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    db = make_db(preds, labels, segments=("region", "device"))
    tables = []
    with read_connection(db) as con:
        t0 = pd.Timestamp("2026-10-01T00:17:07Z")
        flt = report.resolve_windows(con, Filter(
            model="m", start=t0.to_pydatetime(), end=(t0 + pd.Timedelta(days=8)).to_pydatetime(),
            reference_start=t0.to_pydatetime(),
            reference_end=(t0 + pd.Timedelta(days=2, minutes=31)).to_pydatetime()))
        # Both ways scan the rows: the hourly rollup the ingest made would serve either.
        for most in (cube.MAX_COMBINATIONS, 0):
            with (patch.object(cube, "MAX_COMBINATIONS", most),
                  patch.object(rollup, "ENABLED", False)):
                assert cube._few_combinations(con, flt, ["region", "device"]) == (most > 0)
                c = cube.build(con, flt, ["region", "device"], report.cube_windows(con, flt))
            try:
                tables.append(con.execute(f'SELECT * FROM "{c.table}" ORDER BY dim, value NULLS '
                                          "FIRST, slot").df())
            finally:
                c.drop(con)
        left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE "
                           "'lb_cube_%'").fetchone()[0]
    assert left == 0  # the per-combination table is dropped with the build
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=False, rtol=1e-12, atol=1e-12)
