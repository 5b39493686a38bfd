"""Tests for lossboard.dashboard.analysis.calibration.

References: scikit-learn's ``calibration_curve`` (which drops empty bins and bins ``(lo, hi]``,
so those comparisons use data with no score on an edge), a numpy reimplementation of our own
convention (``[lo, hi)``, 1.0 in the last bin, empty bins kept, weights), scipy's Wilson
interval, and hand-made cases with exact answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve

from lossboard.dashboard.analysis.base import Z95
from lossboard.dashboard.analysis.calibration import (
    CURVE_COLUMNS,
    CalibrationSummary,
    calibration_errors,
    per_class_reliability,
    reliability,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError
from lossboard.ingest.schema import copy_all_labels, create_schema

from .conftest import binary_frames, ingest_frames

TOL = 1e-9
START = pd.Timestamp("2026-10-01", tz="UTC")
CLASSES = ("a", "b", "c")
MEANS = ["mean_p", "frac_positive", "frac_positive_lo", "frac_positive_hi"]


# --------------------------------------------------------------------------- builders
def binary_tables(p, y, weight=None, prefix: str = "r") -> tuple[pd.DataFrame, pd.DataFrame]:
    p = np.asarray(p, dtype="float64")
    ids = [f"{prefix}{i}" for i in range(len(p))]
    ts = START + pd.to_timedelta(np.arange(len(p)), unit="s")
    preds = pd.DataFrame({"request_id": ids, "ts": ts, "model": "m", "model_version": "v1",
                          "p": p})
    if weight is not None:
        preds["weight"] = np.asarray(weight, dtype="float64")
    labels = pd.DataFrame({"request_id": ids, "label": np.asarray(y, dtype="int64"),
                           "label_ts": ts + pd.Timedelta(hours=1)})
    return preds, labels


def binary_db(make_db: Callable[..., Path], p, y, weight=None) -> Path:
    return make_db(*binary_tables(p, y, weight))


def multiclass_tables(probs: np.ndarray, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"t{i}" for i in range(len(probs))]
    ts = START + pd.to_timedelta(np.arange(len(probs)), unit="s")
    preds = pd.DataFrame({"request_id": ids, "ts": ts, "model": "tri", "model_version": "m1"})
    for k, c in enumerate(CLASSES):
        preds[f"p_{c}"] = probs[:, k]
    lab = pd.DataFrame({"request_id": ids, "label": labels, "label_ts": ts + pd.Timedelta(hours=1)})
    return preds, lab


MULTICLASS_FLAGS = {"class_probs": tuple((c, f"p_{c}") for c in CLASSES)}


@pytest.fixture(scope="module")
def scratch_con() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database with the real schema, refilled by :func:`refill` per example:
    the property test runs a hundred examples and a full ingest costs ~0.35 s each."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_schema(con)
    con.execute("INSERT INTO models VALUES ('m', 'binary', ['0', '1'], 1)")
    yield con
    con.close()


def refill(con: duckdb.DuckDBPyConnection, p, y, weight) -> None:
    frame = pd.DataFrame({"i": np.arange(len(p), dtype="int64"),
                          "p": np.asarray(p, dtype="float64"),
                          "y": np.asarray(y, dtype="int64"),
                          "w": np.asarray(weight, dtype="float64")})
    con.execute("DELETE FROM predictions")
    con.execute("DELETE FROM labels")
    con.register("src", frame)
    con.execute("""INSERT INTO predictions
                   SELECT 'r' || i, TIMESTAMPTZ '2026-10-01' + to_seconds(i), 'm', 'v1',
                          p, NULL, NULL, w, 1, i, 0, NULL, NULL, NULL, NULL FROM src""")
    con.execute("""INSERT INTO labels SELECT 'r' || i, NULL, CAST(y AS VARCHAR),
                   TIMESTAMPTZ '2026-10-02', 'file', 1, i, 0 FROM src""")
    con.unregister("src")
    copy_all_labels(con)


# --------------------------------------------------------------------------- references
def ref_curve(p, y, w, edges: np.ndarray) -> pd.DataFrame:
    """Our convention in numpy: finite scores only, bins [lo, hi) with the top edge in the
    last bin, empty bins kept, weighted means, Wilson band with the Kish n."""
    p, y, w = (np.asarray(a, dtype="float64") for a in (p, y, w))
    ok = np.isfinite(p)
    p, y, w = p[ok], y[ok], w[ok]
    nb = max(len(edges) - 1, 1)
    idx = np.searchsorted(edges[1:-1], p, side="right")  # number of inner edges <= p
    n = np.bincount(idx, minlength=nb)
    ws = np.bincount(idx, weights=w, minlength=nb)
    w2 = np.bincount(idx, weights=w * w, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=w * p, minlength=nb) / ws
        frac = np.bincount(idx, weights=w * y, minlength=nb) / ws
        n_eff = ws * ws / w2
        z2n = Z95**2 / n_eff
        half = Z95 * np.sqrt(frac * (1 - frac) / n_eff + Z95**2 / (4 * n_eff**2)) / (1 + z2n)
        centre = (frac + z2n / 2) / (1 + z2n)
    return pd.DataFrame({"n": n, "weight_sum": ws, "mean_p": mean_p, "frac_positive": frac,
                         "frac_positive_lo": np.maximum(centre - half, 0),
                         "frac_positive_hi": np.minimum(centre + half, 1)})


def ref_errors(curve: pd.DataFrame) -> tuple[float | None, float | None]:
    ws = curve["weight_sum"].to_numpy()
    keep = ws > 0
    if not keep.any():
        return None, None
    gap = np.abs(curve["mean_p"].to_numpy()[keep] - curve["frac_positive"].to_numpy()[keep])
    return float(np.sum(ws[keep] / ws.sum() * gap)), float(gap.max())


def uniform_edges(bins: int) -> np.ndarray:
    return np.array([k / bins for k in range(bins + 1)])


def values(frame: pd.DataFrame, col: str) -> np.ndarray:
    return frame[col].to_numpy(dtype="float64", na_value=np.nan)


def assert_curve(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["n"].tolist() == want["n"].tolist()
    np.testing.assert_allclose(got["weight_sum"], want["weight_sum"], rtol=TOL, atol=TOL)
    for col in MEANS:
        g, w = values(got, col), values(want, col)
        assert (np.isnan(g) == np.isnan(w)).all(), col
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=0, atol=TOL, err_msg=col)


def assert_same_curve(a: pd.DataFrame, b: pd.DataFrame, counts: bool = True) -> None:
    assert a["bin"].tolist() == b["bin"].tolist()
    np.testing.assert_array_equal(a["bin_lo"], b["bin_lo"])
    np.testing.assert_array_equal(a["bin_hi"], b["bin_hi"])
    if counts:
        assert a["n"].tolist() == b["n"].tolist()
    for col in ("mean_p", "frac_positive"):
        np.testing.assert_allclose(values(a, col), values(b, col), rtol=0, atol=1e-12)


def nonempty(curve: pd.DataFrame) -> pd.DataFrame:
    return curve[curve["weight_sum"] > 0]


# --------------------------------------------------------------------------- against sklearn
@pytest.fixture(scope="module")
def random_binary() -> tuple[pd.DataFrame, pd.DataFrame]:
    # 3,000 rows: n - 1 = 2999 is prime, so k (n - 1) / bins is never a whole number and no
    # quantile edge is itself a score (sklearn would put that score one bin lower).
    return binary_frames(np.random.default_rng(11), 3000)


@pytest.fixture(scope="module")
def random_db(tmp_path_factory, random_binary) -> Path:
    db = tmp_path_factory.mktemp("random") / "lossboard.duckdb"
    ingest_frames(db, *random_binary)
    return db


@pytest.mark.parametrize("bins", [1, 5, 7, 10, 20])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_matches_sklearn_calibration_curve(random_db, random_binary, bins, strategy):
    preds, labels = random_binary
    p = preds["p"].to_numpy()
    y = labels["label"].to_numpy()
    if strategy == "uniform":
        assert np.all(np.abs(p * bins - np.round(p * bins)) > 1e-9)  # no score on an edge
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy=strategy)
    with read_connection(random_db) as con:
        curve = reliability(con, Filter(), bins=bins, strategy=strategy)
    assert list(curve.columns) == list(CURVE_COLUMNS)
    assert curve["bin"].tolist() == list(range(len(curve)))
    assert int(curve["n"].sum()) == len(p)
    filled = nonempty(curve)
    np.testing.assert_allclose(values(filled, "frac_positive"), prob_true, rtol=0, atol=TOL)
    np.testing.assert_allclose(values(filled, "mean_p"), prob_pred, rtol=0, atol=TOL)
    if strategy == "quantile":
        want = np.quantile(p, [k / bins for k in range(bins + 1)])
        edges = np.r_[curve["bin_lo"].to_numpy(), curve["bin_hi"].to_numpy()[-1]]
        np.testing.assert_allclose(edges, want, rtol=0, atol=1e-12)
    # Wilson band: scipy's interval for k successes out of n (unit weights).
    for row in filled.itertuples():
        ci = binomtest(round(row.frac_positive * row.n), row.n).proportion_ci(0.95, method="wilson")
        assert row.frac_positive_lo == pytest.approx(ci.low, abs=TOL)
        assert row.frac_positive_hi == pytest.approx(ci.high, abs=TOL)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_errors_match_numpy_reference(random_db, random_binary, strategy):
    preds, labels = random_binary
    p, y = preds["p"].to_numpy(), labels["label"].to_numpy()
    edges = (uniform_edges(10) if strategy == "uniform"
             else np.unique(np.quantile(p, [k / 10 for k in range(11)])))
    want = ref_curve(p, y, np.ones_like(p), edges)
    ece, mce = ref_errors(want)
    with read_connection(random_db) as con:
        curve = reliability(con, Filter(), strategy=strategy)
        summary = calibration_errors(con, Filter(), strategy=strategy)
    assert_curve(curve, want)
    assert summary.ece == pytest.approx(ece, abs=TOL)
    assert summary.mce == pytest.approx(mce, abs=TOL)
    assert (summary.n, summary.bins, summary.n_nonfinite) == (3000, 10, 0)
    assert summary.low_confidence is False  # 3,000 >= DEFAULT_MIN_SAMPLES


# --------------------------------------------------------------------------- random data
finite_scores = st.one_of(st.sampled_from([0.0, 1.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1 / 3]),
                          st.floats(0.0, 1.0))
scores = st.one_of(finite_scores, st.sampled_from([math.nan, math.inf, -math.inf]))
weights = st.one_of(st.sampled_from([0.0, 1.0, 2.5]), st.floats(0.0, 100.0))
rows = st.lists(st.tuples(scores, st.booleans(), weights), max_size=40)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=rows, bins=st.integers(1, 15), strategy=st.sampled_from(["uniform", "quantile"]))
def test_random_data_matches_reference(scratch_con, data, bins, strategy):
    p = np.array([r[0] for r in data], dtype="float64")
    y = np.array([r[1] for r in data], dtype="int64")
    w = np.array([r[2] for r in data], dtype="float64")
    finite = np.isfinite(p)
    refill(scratch_con, p, y, w)
    curve = reliability(scratch_con, Filter(), bins=bins, strategy=strategy)
    summary = calibration_errors(scratch_con, Filter(), bins=bins, strategy=strategy)
    assert curve.attrs["n_nonfinite"] == summary.n_nonfinite == int((~finite).sum())
    assert summary.n == int(finite.sum())
    if strategy == "uniform":
        edges = uniform_edges(bins)
    elif not finite.any():
        assert curve.empty and summary.bins == 0
        assert summary.ece is None and summary.mce is None
        return
    else:
        # Edges agree with numpy's linear quantiles to rounding; DuckDB and numpy may round an
        # interpolated edge differently in the last bit, so rows are assigned with ours.
        edges = np.r_[curve["bin_lo"].to_numpy(), curve["bin_hi"].to_numpy()[-1]]
        want_edges = np.quantile(p[finite], [k / bins for k in range(bins + 1)])
        assert all(np.min(np.abs(want_edges - e)) <= 1e-12 for e in edges)
        assert all(np.min(np.abs(edges - e)) <= 1e-12 for e in want_edges)
        assert np.all(np.diff(curve["bin_lo"]) > 0)
    want = ref_curve(p, y, w, edges)
    assert_curve(curve, want)
    ece, mce = ref_errors(want)
    if ece is None:
        assert summary.ece is None and summary.mce is None
    else:
        assert summary.ece == pytest.approx(ece, abs=TOL)
        assert summary.mce == pytest.approx(mce, abs=TOL)
    band = curve.dropna(subset=["frac_positive"])
    assert (band["frac_positive_lo"] <= band["frac_positive"] + 1e-12).all()
    assert (band["frac_positive"] <= band["frac_positive_hi"] + 1e-12).all()


# --------------------------------------------------------------------------- edges
def test_uniform_edge_rule_lo_inclusive_and_one_in_last_bin(make_db):
    # Scores exactly on every edge k / 10, including 0.0 and 1.0, and the neighbours of 0.3.
    # Ours: [lo, hi), so k / 10 is in bin k and 1.0 in bin 9. (sklearn: (lo, hi], k / 10 in
    # bin k - 1 and 0.0 in bin 0.) The float just below 0.9 times 10 rounds up to 9.0, so
    # floor(p * bins) alone would put it in bin 9; it belongs in bin 8.
    below_09 = np.nextafter(0.9, 0.0)
    assert math.floor(below_09 * 10) == 9
    p = [k / 10 for k in range(11)] + [np.nextafter(0.3, 0.0), np.nextafter(0.3, 1.0), below_09]
    db = binary_db(make_db, p, [0] * len(p))
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=10)
    assert curve["n"].tolist() == [1, 1, 2, 2, 1, 1, 1, 1, 2, 2]
    np.testing.assert_array_equal(curve["bin_lo"], [k / 10 for k in range(10)])
    np.testing.assert_array_equal(curve["bin_hi"], [k / 10 for k in range(1, 11)])


def test_uniform_edges_where_floor_would_be_one_bin_off(make_db):
    # (1/49) * 49 == 0.9999999999999999 in floating point, so floor(p * bins) alone would put
    # the edge 1/49 in bin 0; the edge comparison puts every k/49 in bin k.
    assert math.floor((1 / 49) * 49) == 0
    p = [k / 49 for k in range(50)]
    db = binary_db(make_db, p, [1] * len(p))
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=49)
    assert curve["n"].tolist() == [1] * 48 + [2]


def test_quantile_edges_on_scores_and_merged_ties(make_db):
    # 5 scores, 4 bins: the k/4 quantiles are the scores themselves (index k exactly), so each
    # edge is a score; [lo, hi) puts it in the upper bin, the maximum in the last bin.
    db = binary_db(make_db, [0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 1, 1, 1])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=4, strategy="quantile")
    assert curve["n"].tolist() == [1, 1, 1, 2]
    np.testing.assert_array_equal(curve["bin_lo"], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(curve["bin_hi"], [0.2, 0.3, 0.4, 0.5])


def test_quantile_ties_merge_edges_and_match_sklearn(make_db):
    # 50 x 0.2 and 50 x 0.8, 10 bins: the deciles are 0.2 (k <= 4), 0.5 (k = 5), 0.8 (k >= 6);
    # merged to [0.2, 0.5, 0.8], two bins. sklearn keeps the repeated edges and drops the
    # empty bins, so its non-empty bins are the same two.
    p = [0.2] * 50 + [0.8] * 50
    y = [1] * 10 + [0] * 40 + [1] * 30 + [0] * 20
    db = binary_db(make_db, p, y)
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=10, strategy="quantile")
    assert curve["n"].tolist() == [50, 50]
    np.testing.assert_array_equal(curve["bin_lo"], [0.2, 0.5])
    np.testing.assert_array_equal(curve["bin_hi"], [0.5, 0.8])
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(values(curve, "frac_positive"), prob_true, atol=TOL)
    np.testing.assert_allclose(values(curve, "mean_p"), prob_pred, atol=TOL)


def test_all_equal_scores_collapse_to_one_quantile_bin(make_db):
    db = binary_db(make_db, [0.37] * 8, [1, 0, 0, 1, 0, 0, 0, 1])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=10, strategy="quantile")
        summary = calibration_errors(con, Filter(), bins=10, strategy="quantile")
        uniform = reliability(con, Filter(), bins=10)
    assert curve[["bin", "bin_lo", "bin_hi", "n"]].values.tolist() == [[0, 0.37, 0.37, 8]]
    assert curve["frac_positive"].iloc[0] == pytest.approx(3 / 8, abs=1e-15)
    # ECE = MCE = |0.37 - 3/8| = 0.005
    assert summary.ece == pytest.approx(0.005, abs=1e-12)
    assert summary.mce == pytest.approx(0.005, abs=1e-12)
    assert summary.bins == 1
    assert uniform["n"].tolist() == [0, 0, 0, 8, 0, 0, 0, 0, 0, 0]


# --------------------------------------------------------------------------- hand-made cases
def test_three_rows_exact_fractions(make_db):
    # Scores 1/10, 2/10, 7/10, labels 0, 1, 1, two bins: [0, 1/2) holds the first two
    # (mean 3/20, rate 1/2), [1/2, 1] the third (mean 7/10, rate 1).
    db = binary_db(make_db, [0.1, 0.2, 0.7], [0, 1, 1])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=2)
        summary = calibration_errors(con, Filter(), bins=2)
    assert curve["n"].tolist() == [2, 1]
    np.testing.assert_allclose(values(curve, "mean_p"), [3 / 20, 7 / 10], atol=1e-15)
    np.testing.assert_allclose(values(curve, "frac_positive"), [1 / 2, 1], atol=0)
    ece = (Fraction(2, 3) * abs(Fraction(3, 20) - Fraction(1, 2))
           + Fraction(1, 3) * abs(Fraction(7, 10) - 1))
    assert ece == Fraction(1, 3)
    assert summary.ece == pytest.approx(float(ece), abs=1e-15)
    assert summary.mce == pytest.approx(0.35, abs=1e-15)
    # Wilson for 1 success out of 1: [1 / (1 + z^2), 1].
    assert curve["frac_positive_lo"].iloc[1] == pytest.approx(1 / (1 + Z95**2), abs=1e-15)
    assert curve["frac_positive_hi"].iloc[1] == 1.0
    assert summary == CalibrationSummary(ece=summary.ece, mce=summary.mce, n=3, bins=2,
                                         n_nonempty_bins=2, weight_sum=3.0, n_nonfinite=0,
                                         strategy="uniform", low_confidence=True)


def test_weighted_exact_fractions(make_db):
    # Same rows, weights 1, 3, 2: bin 0 mean (0.1 + 0.6) / 4 = 7/40, rate 3/4; bin 1 mean
    # 7/10, rate 1. ECE = (4/6)(23/40) + (2/6)(3/10) = 29/60; MCE = 23/40.
    db = binary_db(make_db, [0.1, 0.2, 0.7], [0, 1, 1], weight=[1, 3, 2])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=2)
        summary = calibration_errors(con, Filter(), bins=2)
    assert curve["n"].tolist() == [2, 1]
    np.testing.assert_allclose(curve["weight_sum"], [4, 2], atol=0)
    np.testing.assert_allclose(values(curve, "mean_p"), [7 / 40, 7 / 10], atol=1e-15)
    np.testing.assert_allclose(values(curve, "frac_positive"), [3 / 4, 1], atol=1e-15)
    assert summary.ece == pytest.approx(29 / 60, abs=1e-15)
    assert summary.mce == pytest.approx(23 / 40, abs=1e-15)
    # Kish n of bin 0: 4^2 / (1 + 9) = 1.6.
    want = ref_curve([0.1, 0.2, 0.7], [0, 1, 1], [1, 3, 2], uniform_edges(2))
    assert_curve(curve, want)


def test_scores_exactly_zero_and_one(make_db):
    # No clipping: 0.0 in the first bin, 1.0 in the last. ECE = (2/4)(1/2) + (2/4)(0) = 1/4.
    db = binary_db(make_db, [0.0, 0.0, 1.0, 1.0], [0, 1, 1, 1])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=10)
        summary = calibration_errors(con, Filter(), bins=10)
        quantile = reliability(con, Filter(), bins=10, strategy="quantile")
    assert curve["n"].tolist() == [2] + [0] * 8 + [2]
    assert values(curve, "mean_p")[[0, 9]].tolist() == [0.0, 1.0]
    assert summary.ece == pytest.approx(0.25, abs=1e-15)
    assert summary.mce == pytest.approx(0.5, abs=1e-15)
    # Deciles of (0, 0, 1, 1): 0, 0, 0, 0, 0.2, 0.5, 0.8, 1, 1, 1, 1 -> 4 bins, the middle two
    # empty and kept (n = 0, <NA> means).
    assert quantile["n"].tolist() == [2, 0, 0, 2]
    np.testing.assert_allclose(quantile["bin_lo"], [0.0, 0.2, 0.5, 0.8], atol=1e-15)
    assert quantile["mean_p"].isna().tolist() == [False, True, True, False]


def test_nan_and_inf_scores_are_excluded_and_counted(make_db):
    clean_p, clean_y = [0.05, 0.42, 0.42, 0.93], [0, 1, 0, 1]
    db = binary_db(make_db, clean_p + [np.nan, np.inf, -np.inf], clean_y + [1, 0, 1])
    clean = binary_db(make_db, clean_p, clean_y)
    for strategy in ("uniform", "quantile"):
        with read_connection(db) as con:
            curve = reliability(con, Filter(), strategy=strategy)
            summary = calibration_errors(con, Filter(), strategy=strategy)
            per_class = per_class_reliability(con, Filter(), strategy=strategy)
        with read_connection(clean) as con:
            want = reliability(con, Filter(), strategy=strategy)
            want_summary = calibration_errors(con, Filter(), strategy=strategy)
        assert_same_curve(curve, want)
        assert curve.attrs["n_nonfinite"] == summary.n_nonfinite == 3
        assert per_class.attrs["n_nonfinite"] == 3
        assert summary.n == 4 and summary.ece == pytest.approx(want_summary.ece, abs=1e-15)
        assert not per_class[MEANS].isin([np.inf, -np.inf]).any().any()


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only(make_db, label):
    p = [0.1, 0.35, 0.6, 0.85]
    db = binary_db(make_db, p, [label] * 4)
    with read_connection(db) as con:
        curve = nonempty(reliability(con, Filter(), bins=4))
        summary = calibration_errors(con, Filter(), bins=4)
    assert values(curve, "frac_positive").tolist() == [float(label)] * 4
    # Wilson at rate 0 (1) with n = 1: [0, z^2 / (1 + z^2)] ([1 / (1 + z^2), 1]).
    edge = 1 / (1 + Z95**2)
    want_lo, want_hi = (0.0, 1 - edge) if label == 0 else (edge, 1.0)
    np.testing.assert_allclose(values(curve, "frac_positive_lo"), want_lo, atol=1e-15)
    np.testing.assert_allclose(values(curve, "frac_positive_hi"), want_hi, atol=1e-15)
    gaps = np.abs(np.array(p) - label)
    assert summary.ece == pytest.approx(gaps.mean(), abs=1e-15)
    assert summary.mce == pytest.approx(gaps.max(), abs=1e-15)


def test_single_row(make_db):
    db = binary_db(make_db, [0.42], [1])
    with read_connection(db) as con:
        uniform = reliability(con, Filter(), bins=10)
        quantile = reliability(con, Filter(), bins=10, strategy="quantile")
        summary = calibration_errors(con, Filter(), bins=10, strategy="quantile")
    assert uniform["n"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert quantile[["bin_lo", "bin_hi", "n"]].values.tolist() == [[0.42, 0.42, 1]]
    assert summary.ece == pytest.approx(0.58, abs=1e-15)
    assert summary.mce == pytest.approx(0.58, abs=1e-15)
    assert (summary.n, summary.bins, summary.low_confidence) == (1, 1, True)


def test_empty_window_is_explicit_no_data(make_db):
    db = binary_db(make_db, [0.2, 0.8], [0, 1])
    later = Filter(start="2027-01-01")
    with read_connection(db) as con:
        uniform = reliability(con, later, bins=5)
        quantile = reliability(con, later, bins=5, strategy="quantile")
        per_class = per_class_reliability(con, later, bins=5)
        for strategy in ("uniform", "quantile"):
            summary = calibration_errors(con, later, bins=5, strategy=strategy)
            assert summary.n == 0 and summary.ece is None and summary.mce is None
            assert summary.n_nonempty_bins == 0 and summary.weight_sum == 0.0
            assert summary.low_confidence is True
    # Uniform bins exist without data: five empty rows. Quantile edges need scores: no rows.
    assert uniform["n"].tolist() == [0] * 5
    assert uniform[MEANS].isna().all().all()
    assert quantile.empty and list(quantile.columns) == list(CURVE_COLUMNS)
    assert per_class["class"].tolist() == ["0"] * 5 + ["1"] * 5
    assert (per_class["n"] == 0).all()


def test_predictions_without_labels_are_no_data(make_db):
    preds, _ = binary_tables([0.3, 0.6], [0, 1])
    db = make_db(preds, None)
    with read_connection(db) as con:
        summary = calibration_errors(con, Filter())
    assert (summary.n, summary.ece, summary.mce) == (0, None, None)


# --------------------------------------------------------------------------- weights
def test_all_zero_weights_are_no_data(make_db):
    db = binary_db(make_db, [0.1, 0.5, 0.9], [0, 1, 1], weight=[0, 0, 0])
    with read_connection(db) as con:
        curve = reliability(con, Filter(), bins=2)
        summary = calibration_errors(con, Filter(), bins=2)
    assert curve["n"].tolist() == [1, 2] and (curve["weight_sum"] == 0).all()
    assert curve[MEANS].isna().all().all()
    assert (summary.ece, summary.mce, summary.n, summary.n_nonempty_bins) == (None, None, 3, 0)


def test_integer_weights_equal_repeated_rows(make_db):
    rng = np.random.default_rng(3)
    p = rng.uniform(size=40)
    y = (rng.uniform(size=40) < p).astype(int)
    w = rng.integers(0, 4, size=40)
    weighted = binary_db(make_db, p, y, weight=w)
    repeated = binary_db(make_db, np.repeat(p, w), np.repeat(y, w))
    with read_connection(weighted) as con:
        a, sa = reliability(con, Filter(), bins=5), calibration_errors(con, Filter(), bins=5)
    with read_connection(repeated) as con:
        b, sb = reliability(con, Filter(), bins=5), calibration_errors(con, Filter(), bins=5)
    # n counts rows (zero-weight rows included) and the band uses the Kish n, so only the
    # weighted means and the errors must agree.
    assert_same_curve(a, b, counts=False)
    np.testing.assert_allclose(a["weight_sum"], b["weight_sum"], atol=0)
    assert sa.ece == pytest.approx(sb.ece, abs=1e-12) and sa.mce == pytest.approx(sb.mce, abs=1e-12)


# --------------------------------------------------------------------------- invariances
def test_row_order_and_duplication(make_db, random_db, random_binary):
    preds, labels = random_binary
    rng = np.random.default_rng(5)
    order = rng.permutation(len(preds))
    base = random_db
    shuffled = make_db(preds.iloc[order].reset_index(drop=True),
                       labels.iloc[rng.permutation(len(labels))].reset_index(drop=True))
    dup_p, dup_l = preds.copy(), labels.copy()
    dup_p["request_id"] += "-dup"
    dup_l["request_id"] += "-dup"
    doubled = make_db(pd.concat([preds, dup_p]), pd.concat([labels, dup_l]))
    got: dict[str, dict] = {}
    for name, db in (("base", base), ("shuffled", shuffled), ("doubled", doubled)):
        with read_connection(db) as con:
            got[name] = {s: (reliability(con, Filter(), strategy=s),
                             calibration_errors(con, Filter(), strategy=s))
                         for s in ("uniform", "quantile")}
    for s in ("uniform", "quantile"):
        assert_same_curve(got["shuffled"][s][0], got["base"][s][0])
        assert got["shuffled"][s][1].ece == pytest.approx(got["base"][s][1].ece, abs=1e-12)
    # Duplicating every row doubles n and leaves uniform curves and errors unchanged.
    # (Interpolated quantile edges move when the sample is duplicated, as numpy's do.)
    curve, summary = got["doubled"]["uniform"]
    want, want_summary = got["base"]["uniform"]
    assert_same_curve(curve, want, counts=False)
    assert (curve["n"] == 2 * want["n"]).all()
    assert summary.ece == pytest.approx(want_summary.ece, abs=1e-12)
    assert summary.mce == pytest.approx(want_summary.mce, abs=1e-12)


# --------------------------------------------------------------------------- multiclass
@pytest.fixture(scope="module")
def multiclass_data() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(17)
    n = 2000
    probs = rng.dirichlet([2.0, 1.0, 0.7], size=n)
    labels = [CLASSES[rng.choice(3, p=row)] for row in probs]
    # Logged probabilities need not sum to 1: lossboard renormalises them.
    return probs * rng.uniform(0.9, 1.0, size=(n, 1)), labels


@pytest.fixture(scope="module")
def multiclass_db(tmp_path_factory, multiclass_data) -> Path:
    probs, labels = multiclass_data
    bad = np.array([[np.nan, 0.5, 0.5], [0.0, 0.0, 0.0]])  # excluded: NaN, and no mass
    db = tmp_path_factory.mktemp("multiclass") / "lossboard.duckdb"
    ingest_frames(db, *multiclass_tables(np.vstack([probs, bad]), labels + ["a", "b"]),
                  **MULTICLASS_FLAGS)
    return db


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_multiclass_top_label_matches_sklearn(multiclass_db, multiclass_data, strategy):
    probs, labels = multiclass_data
    share = probs / probs.sum(axis=1, keepdims=True)
    top_p = share.max(axis=1)
    correct = (np.array(CLASSES)[share.argmax(axis=1)] == np.array(labels)).astype(int)
    prob_true, prob_pred = calibration_curve(correct, top_p, n_bins=10, strategy=strategy)
    with read_connection(multiclass_db) as con:
        curve = reliability(con, Filter(), strategy=strategy)
        summary = calibration_errors(con, Filter(), strategy=strategy)
    filled = nonempty(curve)
    np.testing.assert_allclose(values(filled, "frac_positive"), prob_true, atol=TOL)
    np.testing.assert_allclose(values(filled, "mean_p"), prob_pred, atol=TOL)
    assert curve.attrs["n_nonfinite"] == summary.n_nonfinite == 2
    if strategy == "uniform":
        # Top-class shares are >= 1/3: the bins below it are empty and kept.
        assert (curve["n"].iloc[:3] == 0).all()
        ece, mce = ref_errors(ref_curve(top_p, correct, np.ones_like(top_p), uniform_edges(10)))
        assert summary.ece == pytest.approx(ece, abs=TOL)
        assert summary.mce == pytest.approx(mce, abs=TOL)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_per_class_one_vs_rest_matches_sklearn(multiclass_db, multiclass_data, strategy):
    probs, labels = multiclass_data
    share = probs / probs.sum(axis=1, keepdims=True)
    with read_connection(multiclass_db) as con:
        frame = per_class_reliability(con, Filter(), bins=8, strategy=strategy)
    assert list(frame.columns) == ["class", *CURVE_COLUMNS]
    assert list(dict.fromkeys(frame["class"])) == list(CLASSES)  # model's class order
    assert frame.attrs["n_nonfinite"] == 2
    for k, c in enumerate(CLASSES):
        curve = frame[frame["class"] == c]
        assert curve["bin"].tolist() == list(range(len(curve)))
        assert int(curve["n"].sum()) == len(labels)
        y = (np.array(labels) == c).astype(int)
        prob_true, prob_pred = calibration_curve(y, share[:, k], n_bins=8, strategy=strategy)
        filled = nonempty(curve)
        np.testing.assert_allclose(values(filled, "frac_positive"), prob_true, atol=TOL)
        np.testing.assert_allclose(values(filled, "mean_p"), prob_pred, atol=TOL)


def test_per_class_of_a_binary_model(random_db, random_binary):
    preds, labels = random_binary
    p, y = preds["p"].to_numpy(), labels["label"].to_numpy()
    with read_connection(random_db) as con:
        frame = per_class_reliability(con, Filter(), bins=10)
        curve = reliability(con, Filter(), bins=10)
    one = frame[frame["class"] == "1"].drop(columns="class").reset_index(drop=True)
    pd.testing.assert_frame_equal(one, curve, check_exact=False, rtol=0, atol=1e-12)
    zero = nonempty(frame[frame["class"] == "0"])
    prob_true, prob_pred = calibration_curve(1 - y, 1 - p, n_bins=10)
    np.testing.assert_allclose(values(zero, "frac_positive"), prob_true, atol=TOL)
    np.testing.assert_allclose(values(zero, "mean_p"), prob_pred, atol=TOL)


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs, message", [
    ({"bins": 0}, "bins must be"), ({"bins": 1001}, "bins must be"),
    ({"bins": 2.5}, "bins must be"), ({"bins": True}, "bins must be"),
    ({"strategy": "kmeans"}, "strategy must be one of"),
])
def test_bad_arguments_name_the_argument(random_db, kwargs, message):
    with read_connection(random_db) as con:
        for fn in (reliability, calibration_errors, per_class_reliability):
            with pytest.raises(QueryError, match=message):
                fn(con, Filter(), **kwargs)


def test_unknown_model_is_a_query_error(random_db):
    with read_connection(random_db) as con, pytest.raises(QueryError, match="no model 'nope'"):
        calibration_errors(con, Filter(model="nope"))


# --------------------------------------------------------------------------- committed sample
def test_sample_overconfident_canary_has_larger_ece(sample_db):
    # overconfident_canary (sample_data/README.md): from 2026-10-21 v2's logit is v1's x2.5.
    window = {"model": "fraud", "start": "2026-10-21T00:00:00Z", "end": "2026-10-31T00:00:00Z"}
    with read_connection(sample_db) as con:
        got = {(v, s): calibration_errors(con, Filter(versions=(v,), **window), strategy=s)
               for v in ("v1", "v2") for s in ("uniform", "quantile")}
        v2_curve = reliability(con, Filter(versions=("v2",), **window))
    for s in ("uniform", "quantile"):
        v1, v2 = got[("v1", s)], got[("v2", s)]
        assert v1.n > 10_000 and v2.n > 5_000 and not v2.low_confidence
        # Measured on the committed sample: uniform 0.028 (v1) vs 0.075 (v2), quantile 0.030
        # vs 0.067.
        assert v2.ece > 2 * v1.ece, (v1, v2)
    # Overconfident: above p = 0.5, v2 says more than happens; below 0.1, less.
    high = v2_curve[v2_curve["bin_lo"] >= 0.5]
    gap = values(high, "mean_p") - values(high, "frac_positive")
    assert np.average(gap, weights=high["weight_sum"]) > 0.1
    low = v2_curve.iloc[0]
    assert low["mean_p"] < low["frac_positive"]


def test_sample_nan_incident_rows_are_counted(sample_db):
    # nan_scores incident: ~30% NaN scores on 2026-10-13 08:00-10:00.
    flt = Filter(model="fraud", start="2026-10-13T08:00:00Z", end="2026-10-13T10:00:00Z")
    with read_connection(sample_db) as con:
        summary = calibration_errors(con, flt)
        n_labelled = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE isnan(p)) FROM labelled WHERE model = 'fraud' "
            "AND ts >= TIMESTAMPTZ '2026-10-13 08:00:00+00' "
            "AND ts < TIMESTAMPTZ '2026-10-13 10:00:00+00'"
        ).fetchone()
    assert (summary.n + summary.n_nonfinite, summary.n_nonfinite) == n_labelled
    assert 0.2 < summary.n_nonfinite / n_labelled[0] < 0.4


def test_sample_triage_per_class_counts(sample_db):
    with read_connection(sample_db) as con:
        frame = per_class_reliability(con, Filter(model="triage"), bins=5)
        top = calibration_errors(con, Filter(model="triage"), bins=5)
    totals = frame.groupby("class", sort=False)["n"].sum()
    assert list(totals.index) == ["low", "medium", "high"]
    assert (totals == top.n).all()
