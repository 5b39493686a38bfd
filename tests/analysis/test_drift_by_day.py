"""drift.drift_by_day: every UTC day's PSI in one pass, and from its counts the drift of any
run of days to the window's end, equal to feature_drift over that window (docs/metrics/drift.md,
"Drift by day"); with a split, the same within each segment value."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossboard.dashboard.analysis import drift
from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError

from .test_drift import drift_db

#: The current window starts inside its first day, so a run from that day must not reach back
#: before the window.
FLT = Filter(model="m", start=datetime(2026, 2, 1, 9, 30, tzinfo=UTC),
             end=datetime(2026, 2, 6, tzinfo=UTC), reference_start="2026-01-01",
             reference_end=datetime(2026, 2, 1, 9, 30, tzinfo=UTC))
FEATURES = ["x", "cat", drift.SCORE]


def spread_db(seed: int, n_ref: int, n_cur: int, shift: float, fine_nan: float = 0.03):
    """Reference rows in January; current rows from 2026-02-01 00:00 to 02-05 (some before
    the window's 09:30 start, so they are in neither window), drifting by day and segment."""
    rng = np.random.default_rng(seed)
    cur_ts = pd.Timestamp("2026-02-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, 5 * 86_400, n_cur)), unit="s")
    day = (cur_ts - pd.Timestamp("2026-02-01", tz="UTC")).days.to_numpy()
    seg_ref = rng.choice(["a", "b", "c", None], n_ref, p=[.5, .3, .15, .05])
    seg_cur = rng.choice(["a", "b", "c", None], n_cur, p=[.4, .3, .25, .05])
    bump = np.where(seg_cur == "c", shift * 2, 0.0) + shift * day / 4
    x_ref = np.round(rng.normal(0, 1, n_ref), 1)
    x_cur = np.round(rng.normal(0, 1, n_cur) + bump, 1)
    x_cur[rng.random(n_cur) < fine_nan] = np.nan
    cats = ["u", "v", "w"]
    ref = {"seg": list(seg_ref), "x": x_ref.tolist(), "cat": rng.choice(cats, n_ref).tolist(),
           "p": rng.beta(1, 4, n_ref).tolist()}
    cur = {"seg": list(seg_cur), "x": x_cur.tolist(),
           "cat": np.where(bump > 1, "new", rng.choice(cats, n_cur)).tolist(),
           "p": np.clip(rng.beta(1, 4, n_cur) + bump / 10, 0, 1).tolist(),
           "ts": list(cur_ts)}
    return drift_db(ref, cur, types={"seg": "VARCHAR", "cat": "VARCHAR"})


def window_from(flt: Filter, day: date) -> Filter:
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return replace(flt, start=max(midnight, flt.start))


def assert_same(got: drift.DriftResult, expected: pd.Series) -> None:
    for name in ("n_reference", "n_current", "n_reference_rows", "n_current_rows", "n_bins",
                 "status", "kind", "feature"):
        assert getattr(got, name) == expected[name], name
    for name in ("psi", "missing_rate_reference", "missing_rate_current"):
        value = getattr(got, name)
        if pd.isna(expected[name]):
            assert value is None, name
        else:
            assert value == pytest.approx(float(expected[name]), rel=0, abs=1e-12), name
    assert got.ks_statistic is None and got.ks_pvalue is None


def check_since(con, flt: Filter, split: str | None = None) -> drift.DriftByDay:
    days = drift.drift_by_day(con, flt, features=FEATURES, split=split)
    first = flt.start.date()
    for offset in range(-1, 5):  # a day before the window, then each of its days
        day = first + timedelta(days=offset)
        window = window_from(flt, day) if day >= first else flt
        for feature in FEATURES:
            if split is None:
                expected = drift.feature_drift(con, window, features=[feature], ks=False).iloc[0]
                assert_same(days.since(feature, day), expected)
                continue
            for value in days.values:
                sub = replace(window, segments=window.segments + ((split, value),))
                expected = drift.feature_drift(con, sub, features=[feature], ks=False).iloc[0]
                assert_same(days.since(feature, day, value), expected)
    after = days.since("x", flt.end.date(), days.values[0] if days.values else None)
    assert after.status == "no_data" and after.n_current_rows == 0
    return days


def test_since_equals_feature_drift_of_the_window_from_that_day() -> None:
    con = spread_db(1, 3000, 4000, shift=0.8)
    days = check_since(con, FLT)
    # The table is daily_drift's, and a drifting day shows in it.
    pd.testing.assert_frame_equal(days.table(), drift.daily_drift(con, FLT, feature=FEATURES,
                                                                   ks=False))
    table = days.table()
    x = table[table["feature"] == "x"]
    assert x["psi"].iloc[-1] > x["psi"].iloc[0]
    assert x["day"].iloc[0] == date(2026, 2, 1)


def test_since_within_each_segment_value() -> None:
    con = spread_db(2, 3000, 4000, shift=0.8)
    days = check_since(con, FLT, split="seg")
    assert days.values == ("a", "b", "c")
    assert days.since("x", date(2026, 2, 2), "c").psi > days.since("x", date(2026, 2, 2), "a").psi
    # A value neither window holds has no data.
    assert days.since("x", date(2026, 2, 2), "zzz").status == "no_data"


def test_split_of_a_column_the_filter_already_restricts() -> None:
    con = spread_db(3, 2000, 2500, shift=0.5)
    flt = replace(FLT, segments=(("seg", "a"), ("seg", "c")))
    days = check_since(con, flt, split="seg")
    whole = drift.drift_by_day(con, flt, features=FEATURES)
    day = date(2026, 2, 3)
    assert days.since("x", day, "a") == days.since("x", day, "c") == whole.since("x", day)


def test_errors_and_empty_windows() -> None:
    con = spread_db(4, 500, 500, shift=0.0)
    days = drift.drift_by_day(con, FLT, features=["x"])
    with pytest.raises(QueryError, match="not among the features"):
        days.since("cat", date(2026, 2, 2))
    with pytest.raises(QueryError, match="no predictions column"):
        drift.drift_by_day(con, FLT, features=["x"], split="nope")
    empty = replace(FLT, start=datetime(2027, 1, 1, tzinfo=UTC), end=datetime(2027, 1, 3, tzinfo=UTC))
    days = drift.drift_by_day(con, empty, features=["x"])
    assert days.table().empty
    result = days.since("x", date(2027, 1, 1))
    assert result.status == "no_data" and result.reason == "empty_current_window"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_ref=st.integers(1, 300), n_cur=st.integers(1, 300),
       shift=st.sampled_from([0.0, 0.5, 3.0]), nan=st.sampled_from([0.0, 0.3, 1.0]))
def test_since_property(seed: int, n_ref: int, n_cur: int, shift: float, nan: float) -> None:
    con = spread_db(seed, n_ref, n_cur, shift, fine_nan=nan)
    check_since(con, FLT, split="seg" if seed % 2 else None)


def test_several_splits_share_one_pass_and_equal_one_split_each() -> None:
    con = spread_db(5, 2500, 3000, shift=0.8)
    for flt in (FLT, replace(FLT, segments=(("seg", "a"), ("seg", "c")))):
        together = drift.drift_by_day_splits(con, flt, features=FEATURES, splits=["seg", "cat"])
        assert set(together) == {"seg", "cat"}
        for column, days in together.items():
            alone = drift.drift_by_day(con, flt, features=FEATURES, split=column)
            assert days.values == alone.values
            for value in days.values:
                for feature in FEATURES:
                    for day in (date(2026, 2, 1), date(2026, 2, 3)):
                        assert days.since(feature, day, value) == alone.since(feature, day, value)
