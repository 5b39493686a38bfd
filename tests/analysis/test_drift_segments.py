"""drift.segment_psi: the PSI of one feature within each value of a segment column, in a
constant number of queries, equal to feature_drift run once per value
(docs/metrics/drift.md)."""

from __future__ import annotations

import math
from dataclasses import replace
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

from lossboard.dashboard.analysis import drift, drift_engine
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError

from .test_drift import FLT, drift_db


def per_value(con, flt: Filter, feature: str, column: str, value: str) -> pd.Series:
    """What segment_psi must equal: feature_drift with the value added to the Filter."""
    frame = drift.feature_drift(con, replace(flt, segments=flt.segments + ((column, value),)),
                                features=[feature])
    return frame.iloc[0]


def assert_equals_loop(con, flt: Filter, feature: str, column: str) -> pd.DataFrame:
    frame = drift.segment_psi(con, flt, feature, column)
    assert frame.columns.tolist() == list(drift.SEGMENT_PSI_COLUMNS)
    assert frame["value"].tolist() == sorted(frame["value"].tolist())
    for row in frame.itertuples():
        expected = per_value(con, flt, feature, column, row.value)
        assert (row.n_reference, row.n_current) == (expected["n_reference"],
                                                    expected["n_current"])
        if pd.isna(expected["psi"]):
            assert pd.isna(row.psi)
        else:
            assert abs(row.psi - expected["psi"]) <= 1e-12
    return frame


def segmented_db(seed: int, task: str = "binary"):
    """Three segments (plus NULL) whose numeric feature, category and score drift
    differently; segment ``only_ref`` has no current row, ``only_cur`` no reference row."""
    rng = np.random.default_rng(seed)
    n_ref, n_cur = 3000, 2500
    seg_ref = rng.choice(["a", "b", "c", "only_ref", None], n_ref, p=[.4, .3, .2, .05, .05])
    seg_cur = rng.choice(["a", "b", "c", "only_cur", None], n_cur, p=[.3, .3, .3, .05, .05])
    shift = {"a": 0.0, "b": 0.4, "c": 1.5, "only_cur": 0.0, "only_ref": 0.0, None: 0.0}
    x_ref = np.round(rng.normal(0, 1, n_ref), 2)
    x_cur = np.round(rng.normal(0, 1, n_cur) + [shift[s] for s in seg_cur], 2)
    x_cur[rng.random(n_cur) < 0.02] = np.nan
    cat_ref = rng.choice(["u", "v", "w"], n_ref)
    cat_cur = np.where(seg_cur == "c", "new", rng.choice(["u", "v", "w"], n_cur))
    ref = {"seg": list(seg_ref), "x": x_ref.tolist(), "cat": cat_ref.tolist()}
    cur = {"seg": list(seg_cur), "x": x_cur.tolist(), "cat": cat_cur.tolist()}
    if task == "binary":
        ref["p"] = rng.beta(1, 4, n_ref).tolist()
        cur["p"] = rng.beta([1 + shift[s] for s in seg_cur], 4).tolist()
    else:
        ref["probs"] = rng.dirichlet([1, 1, 1], n_ref).tolist()
        cur["probs"] = rng.dirichlet([3, 1, 1], n_cur).tolist()
    return drift_db(ref, cur, types={"seg": "VARCHAR", "cat": "VARCHAR"}, task=task)


@pytest.mark.parametrize("feature", ["x", "cat", drift.SCORE])
def test_segment_psi_equals_feature_drift_per_value(feature: str) -> None:
    con = segmented_db(1)
    frame = assert_equals_loop(con, FLT, feature, "seg")
    assert frame["value"].tolist() == ["a", "b", "c", "only_cur", "only_ref"]
    by_value = frame.set_index("value")
    assert pd.isna(by_value.loc["only_cur", "psi"]) and pd.isna(by_value.loc["only_ref", "psi"])
    if feature != "cat":
        assert by_value.loc["c", "psi"] > by_value.loc["a", "psi"]


@pytest.mark.parametrize("fine_bins", [3, 8])
def test_segment_psi_with_tiny_fine_histograms(fine_bins: int) -> None:
    # Few fine bins put every quantile edge in a bin resolved value by value.
    con = segmented_db(2)
    with patch.object(drift_engine, "FINE_BINS", fine_bins):
        for feature in ("x", drift.SCORE):
            assert_equals_loop(con, FLT, feature, "seg")


def test_segment_psi_multiclass_score_and_bins() -> None:
    con = segmented_db(3, task="multiclass")
    frame = drift.segment_psi(con, FLT, drift.SCORE, "seg", bins=4, eps=1e-3)
    for row in frame.itertuples():
        sub = replace(FLT, segments=(("seg", row.value),))
        expected = drift.feature_drift(con, sub, features=[drift.SCORE], bins=4, eps=1e-3)
        psi = expected["psi"].iloc[0]
        assert (pd.isna(psi) and pd.isna(row.psi)) or abs(row.psi - psi) <= 1e-12


def test_segment_psi_when_the_filter_already_holds_the_column() -> None:
    # Adding a value of a column the Filter restricts ORs it with the values there, so every
    # value present gets the PSI of the Filter itself.
    con = segmented_db(4)
    flt = replace(FLT, segments=(("seg", "a"), ("seg", "b")))
    frame = assert_equals_loop(con, flt, "x", "seg")
    assert frame["value"].tolist() == ["a", "b"]
    whole = drift.feature_drift(con, flt, features=["x"])["psi"].iloc[0]
    assert frame["psi"].tolist() == [whole, whole]


def test_segment_psi_under_another_segment_and_a_maturity() -> None:
    con = segmented_db(5)
    flt = replace(FLT, segments=(("cat", "u"),), maturity_hours=1.0)
    assert_equals_loop(con, flt, "x", "seg")


def test_segment_psi_empty_and_errors() -> None:
    con = segmented_db(6)
    empty = replace(FLT, start="2027-01-01", end="2027-02-01", reference_start="2027-02-01",
                    reference_end="2027-03-01")
    frame = drift.segment_psi(con, empty, "x", "seg")
    assert frame.empty and frame.columns.tolist() == list(drift.SEGMENT_PSI_COLUMNS)
    with pytest.raises(QueryError, match="no predictions column"):
        drift.segment_psi(con, FLT, "x", "nope")
    with pytest.raises(QueryError, match="not a feature"):
        drift.segment_psi(con, FLT, "nope", "seg")
    with pytest.raises(QueryError, match="bins"):
        drift.segment_psi(con, FLT, "x", "seg", bins=1)


def test_segment_psi_tiny_case_with_exact_answer() -> None:
    # The docstring's example: segment a has reference [1, 2, 3, 4] and current [3, 4, 5, 6];
    # two bins at the edge 2 give shares [0.5, 0.5] vs [0, 1].
    con = drift_db({"x": [4.0, 1.0, 3.0, 2.0, 9.0], "seg": ["a", "a", "a", "a", "b"]},
                   {"x": [3.0, 4.0, 5.0, 6.0, 9.0], "seg": ["a", "a", "a", "a", "b"]},
                   types={"seg": "VARCHAR"})
    frame = drift.segment_psi(con, FLT, "x", "seg", bins=2).set_index("value")
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert frame.loc["a", "psi"] == pytest.approx(expected, rel=1e-15)
    assert frame.loc["b", "psi"] == 0.0


def test_segment_psi_on_the_sample(sample_db) -> None:
    # The sample's amount drift is planted in region eu only.
    flt = Filter(model="fraud", start="2026-10-20", end="2026-10-28",
                 reference_start="2026-10-01", reference_end="2026-10-16")
    with read_connection(sample_db) as con:
        frame = assert_equals_loop(con, flt, "amount", "region")
    by_value = frame.set_index("value")
    assert by_value["psi"].idxmax() == "eu" and by_value.loc["eu", "psi"] > 0.25


def test_segment_psi_matches_the_numpy_reference() -> None:
    from .test_drift import numpy_psi

    rng = np.random.default_rng(7)
    seg_ref, seg_cur = rng.choice(["a", "b"], 2000), rng.choice(["a", "b"], 1500)
    x_ref = np.round(rng.lognormal(0, 1, 2000), 3)
    x_cur = np.round(rng.lognormal(0, 1, 1500) * np.where(seg_cur == "b", 1.3, 1.0), 3)
    con = drift_db({"x": x_ref.tolist(), "seg": seg_ref.tolist()},
                   {"x": x_cur.tolist(), "seg": seg_cur.tolist()}, types={"seg": "VARCHAR"})
    for fine_bins in (drift.FINE_BINS, 4):
        with patch.object(drift_engine, "FINE_BINS", fine_bins):
            frame = drift.segment_psi(con, FLT, "x", "seg", bins=7).set_index("value")
        for value in ("a", "b"):
            expected = numpy_psi(x_ref[seg_ref == value], x_cur[seg_cur == value], bins=7)[0]
            assert abs(frame.loc[value, "psi"] - expected) <= 1e-12


@pytest.mark.parametrize("held", [(), (("seg", "a"),)], ids=["open", "seg held"])
def test_segment_psis_is_segment_psi_of_each_pair(held: tuple) -> None:
    """Several features within several columns from shared scans: each frame equals its own
    segment_psi call (a numeric feature, a category and the score; a column the Filter
    restricts reads as the Filter for every value)."""
    con = segmented_db(3)
    flt = replace(FLT, segments=held)
    features = ["x", "cat", drift.SCORE]
    got = drift.segment_psis(con, flt, features=features, columns=["seg", "cat"])
    assert list(got) == ["seg", "cat"]
    for column in ("seg", "cat"):
        assert list(got[column]) == features
        for feature in features:
            pd.testing.assert_frame_equal(got[column][feature],
                                          drift.segment_psi(con, flt, feature, column))
    assert len(got["seg"]["x"]) == (1 if held else 5) and got["seg"]["x"]["psi"].notna().any()
