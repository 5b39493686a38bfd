"""Drift: PSI and exact KS against numpy / scipy references, edge cases, and the sample's
planted incidents (docs/metrics/drift.md).

Most cases run on an in-memory database with lossboard's schema and rows inserted directly
(``drift_db``), so hypothesis can try many samples quickly; the ingest path is covered by
one ``make_db`` case and by the committed sample.
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from unittest.mock import patch

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from lossboard.dashboard.analysis import drift, drift_engine
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError
from lossboard.ingest.schema import create_schema

from .conftest import binary_frames

REF_START, CUR_START, END = "2026-01-01", "2026-02-01", "2026-03-01"
FLT = Filter(model="m", start=CUR_START, end=END, reference_start=REF_START,
             reference_end=CUR_START)
SWAPPED = Filter(model="m", start=REF_START, end=CUR_START, reference_start=CUR_START,
                 reference_end=END)
TOL = 1e-9


def drift_db(reference: dict[str, list], current: dict[str, list], *,
             types: dict[str, str] | None = None, task: str = "binary",
             shuffle_seed: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory lossboard database with one model ``m``: the reference rows in January
    2026, the current ones in February (one second apart unless a ``ts`` list is given).
    ``reference`` / ``current`` map a column (a feature, ``p``, ``probs`` or ``ts``) to its
    values; ``None`` is NULL and stays apart from NaN. ``types``: feature SQL types (DOUBLE)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_schema(con)
    types = types or {}
    names = list(dict.fromkeys([*reference, *current]))
    features = [c for c in names if c not in ("p", "probs", "ts")]
    arrow_type = {"DOUBLE": pa.float64(), "VARCHAR": pa.string(), "BIGINT": pa.int64()}
    for name in features:
        con.execute(f'ALTER TABLE predictions ADD COLUMN "{name}" {types.get(name, "DOUBLE")}')
        con.execute("INSERT INTO columns VALUES ('predictions', ?, 'feature', ?, 'flag', 1)",
                    [name, types.get(name, "DOUBLE")])
    classes = ["low", "mid", "high"] if task == "multiclass" else ["0", "1"]
    con.execute("INSERT INTO models VALUES ('m', ?, ?, 1)", [task, classes])
    column_types = {**{f: arrow_type[types.get(f, "DOUBLE")] for f in features},
                    "p": pa.float64(), "probs": pa.list_(pa.float64()),
                    "ts": pa.timestamp("us", tz="UTC")}
    data: dict[str, list] = {c: [] for c in [*names, "ts"]}
    for start, window in ((REF_START, reference), (CUR_START, current)):
        n = max((len(v) for v in window.values()), default=0)
        for c in data:
            if c in window:
                data[c].extend(list(window[c]))
            elif c == "ts":
                first = pd.Timestamp(start, tz="UTC")
                data[c].extend(first + pd.to_timedelta(np.arange(n), unit="s"))
            else:
                data[c].extend([None] * n)
    table = pa.table({c: pa.array(v, type=column_types[c], from_pandas=False)
                      for c, v in data.items()})
    if shuffle_seed is not None:
        table = table.take(np.random.default_rng(shuffle_seed).permutation(table.num_rows))
    con.register("incoming", table)
    score = ("probs" if "probs" in names else "p") if {"p", "probs"} & set(names) else "0.5 AS p"
    cols = "".join(f', "{c}"' for c in features)
    con.execute(f"""INSERT INTO predictions BY NAME
        SELECT 'r' || row_number() OVER () AS request_id, ts, 'm' AS model, 'v1' AS model_version,
               {score}, 1.0 AS weight, 1 AS _lb_file_id, 0 AS _lb_row_number,
               0::UBIGINT AS _lb_row_hash{cols}
        FROM incoming""")
    con.unregister("incoming")
    return con


def one(con: duckdb.DuckDBPyConnection, feature: str = "x", flt: Filter = FLT, **kw) -> pd.Series:
    frame = drift.feature_drift(con, flt, features=[feature], **kw)
    assert len(frame) == 1
    return frame.iloc[0]


def usable(values: list) -> np.ndarray:
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    return x[~np.isnan(x)]


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> tuple:
    """The documented definition, independently: inverted-CDF edges from the reference
    (the ceil(n i / bins)-th smallest), equal edges merged, right-closed open-ended bins,
    shares floored at eps on both sides of every term."""
    srt = np.sort(ref)
    n = len(srt)
    edges = np.unique([srt[max(1, math.ceil(n * i / bins)) - 1] for i in range(1, bins)])
    # side='left': a value equal to e_i gets index i, i.e. the bin (e_{i-1}, e_i].
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
    rp = np.maximum(r / r.sum(), eps)
    cp = np.maximum(c / c.sum(), eps)
    return float(np.sum((cp - rp) * np.log(cp / rp))), edges, r, c


def assert_ks_matches(row: pd.Series, ref: np.ndarray, cur: np.ndarray) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = stats.ks_2samp(ref, cur)
    assert abs(row["ks_statistic"] - expected.statistic) <= TOL
    assert abs(row["ks_pvalue"] - expected.pvalue) <= TOL
    fell_back = any("Switching to method=asymp" in str(w.message) for w in caught)
    exact = max(len(ref), len(cur)) <= drift.KS_EXACT_MAX_N and not fell_back
    assert row["ks_method"] == ("exact" if exact else "asymp")


# --------------------------------------------------------------------------- KS vs scipy

values = st.one_of(
    st.integers(-3, 3).map(float),                                   # heavy ties
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.5, 1e-300, -1e300, math.inf, -math.inf]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=st.lists(values, min_size=1, max_size=60), cur=st.lists(values, min_size=1, max_size=60))
def test_ks_matches_scipy_on_random_samples(ref: list[float], cur: list[float]) -> None:
    con = drift_db({"x": ref}, {"x": cur})
    psi, *_ = numpy_psi(np.array(ref), np.array(cur))
    # With the default 65,536 fine bins small samples are resolved by the histogram alone;
    # 3 and 8 fine bins force the value-by-value second stage (and quantile edges in it).
    for fine_bins in (drift.FINE_BINS, 3, 8):
        with patch.object(drift_engine, "FINE_BINS", fine_bins):
            row = one(con)
        assert_ks_matches(row, np.array(ref), np.array(cur))
        assert abs(row["psi"] - psi) <= 1e-12


def test_overlapping_windows_count_shared_rows_in_both_samples() -> None:
    rng = np.random.default_rng(13)
    jan, feb = np.round(rng.normal(0, 1, 700), 1), np.round(rng.normal(0.2, 1, 500), 1)
    con = drift_db({"x": jan.tolist()}, {"x": feb.tolist()})
    whole = Filter(model="m", start=CUR_START, end=END, reference_start=REF_START,
                   reference_end=END)
    row = one(con, flt=whole)
    assert (row["n_reference"], row["n_current"]) == (1200, 500)
    assert_ks_matches(row, np.concatenate([jan, feb]), feb)


@pytest.mark.parametrize("n, m, decimals, shift", [
    (10_000, 10_000, 2, 0.0),     # both at scipy's limit: exact
    (10_000, 10_001, 2, 0.0),     # one above it: asymptotic
    (12_000, 15_000, 1, 0.03),    # asymptotic, heavy ties, a small shift
    (20_000, 5_000, 6, 0.0),      # asymptotic, (almost) continuous: the fine bins must resolve
    (3_000, 40_000, 3, 0.5),
])
def test_ks_matches_scipy_in_both_regimes(n: int, m: int, decimals: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    ref = np.round(rng.normal(0, 1, n), decimals)
    cur = np.round(rng.normal(shift, 1, m), decimals)
    row = one(drift_db({"x": ref.tolist()}, {"x": cur.tolist()}))
    assert_ks_matches(row, ref, cur)
    assert row["ks_statistic"] == stats.ks_2samp(ref, cur).statistic  # bit for bit, in practice


def test_ks_is_exact_where_the_fine_bins_are_lopsided() -> None:
    # One huge outlier squeezes every other value into a few fine bins; inf and -0.0 too.
    rng = np.random.default_rng(3)
    ref = np.concatenate([rng.normal(0, 1, 20_000), [1e12, -math.inf, -0.0]])
    cur = np.concatenate([rng.normal(0.01, 1, 15_000), [math.inf, 0.0]])
    row = one(drift_db({"x": ref.tolist()}, {"x": cur.tolist()}))
    assert_ks_matches(row, ref, cur)


def test_ks_pvalue_reproduces_scipy_from_the_gap_alone() -> None:
    rng = np.random.default_rng(11)
    for n, m in [(1, 1), (3, 7), (50, 50), (400, 90), (10_000, 9_999)]:
        a, b = rng.integers(0, 5, n), rng.integers(0, 6, m)
        grid = np.union1d(a, b)
        ca = np.searchsorted(np.sort(a), grid, side="right")
        cb = np.searchsorted(np.sort(b), grid, side="right")
        gaps = ca / n - cb / m
        i, j = int(np.argmax(gaps)), int(np.argmin(gaps))
        stat, p, _ = drift.ks_pvalue(gaps[i], gaps[j], n, m, (ca[i], cb[i]), (ca[j], cb[j]))
        expected = stats.ks_2samp(a, b)
        assert (stat, p) == (expected.statistic, expected.pvalue)


# --------------------------------------------------------------------------- PSI vs numpy

maybe_missing = st.one_of(st.none(), st.just(math.nan), st.integers(0, 30).map(float),
                          st.floats(-50, 50, allow_nan=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=st.lists(maybe_missing, min_size=1, max_size=80),
       cur=st.lists(maybe_missing, min_size=1, max_size=80),
       bins=st.integers(2, 12), eps=st.sampled_from([1e-4, 1e-2, 1e-9]))
def test_psi_and_bins_match_the_numpy_reference(ref: list, cur: list, bins: int,
                                                 eps: float) -> None:
    con = drift_db({"x": ref}, {"x": cur})
    r, c = usable(ref), usable(cur)
    for fine_bins in (drift.FINE_BINS, 4):  # 4: the quantile edges come from the second stage
        with patch.object(drift_engine, "FINE_BINS", fine_bins):
            row = one(con, bins=bins, eps=eps)
            dist = drift.distribution(con, FLT, "x", bins=bins, eps=eps)
        if len(r) == 0 or len(c) == 0:
            assert row["status"] == "no_data" and pd.isna(row["psi"]) and dist.empty
            continue
        psi, edges, r_counts, c_counts = numpy_psi(r, c, bins, eps)
        assert abs(row["psi"] - psi) <= 1e-12
        assert dist["upper"].tolist()[:-1] == edges.tolist()
        assert dist["n_reference"].tolist() == r_counts.tolist()
        assert dist["n_current"].tolist() == c_counts.tolist()
        assert abs(dist["psi_term"].sum() - row["psi"]) <= 1e-12
        assert row["missing_rate_reference"] == pytest.approx(1 - len(r) / len(ref), abs=1e-15)
        assert row["missing_rate_current"] == pytest.approx(1 - len(c) / len(cur), abs=1e-15)


def test_edges_are_duckdbs_quantile_disc() -> None:
    rng = np.random.default_rng(5)
    ref = np.round(rng.lognormal(3, 1, 997), 1)
    con = drift_db({"x": ref.tolist()}, {"x": ref[:300].tolist()})
    dist = drift.distribution(con, FLT, "x", bins=10)
    # The list literal is DECIMAL, so DuckDB's quantile_disc uses exact fractions i / 10.
    expected = con.execute(
        "SELECT list_distinct(quantile_disc(x, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])) "
        "FROM predictions WHERE ts < ?::TIMESTAMPTZ", [CUR_START]).fetchone()[0]
    assert dist["upper"].tolist()[:-1] == sorted(expected)
    # Right-closed bins over inverted-CDF edges: ceil(n i / 10) - ceil(n (i-1) / 10) per bin.
    assert dist["n_reference"].sum() == 997


def test_tiny_case_with_exact_answer() -> None:
    # Edges of [1, 2, 3, 4] with 2 bins: the ceil(4 / 2) = 2nd smallest, 2. Bins (-inf, 2],
    # (2, +inf): reference [2, 2], current [0, 4]. KS: F_ref(2) - F_cur(2) = 1/2 - 0.
    con = drift_db({"x": [4.0, 1.0, 3.0, 2.0]}, {"x": [3.0, 4.0, 5.0, 6.0]})
    row = one(con, bins=2)
    expected_psi = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert row["psi"] == pytest.approx(expected_psi, rel=1e-15)
    assert row["ks_statistic"] == 0.5
    assert row["ks_pvalue"] == stats.ks_2samp([1, 2, 3, 4], [3, 4, 5, 6]).pvalue


def test_psi_from_counts_docstring_example_and_symmetry() -> None:
    psi, terms = drift.psi_from_counts([50, 50], [25, 75])
    assert psi == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-15)
    assert terms.shape == (2,)
    rng = np.random.default_rng(2)
    for _ in range(20):
        r, c = rng.integers(0, 50, 7), rng.integers(0, 50, 7)
        r[0] += 1
        c[0] += 1
        assert drift.psi_from_counts(r, c)[0] == pytest.approx(drift.psi_from_counts(c, r)[0],
                                                              rel=1e-13)


# --------------------------------------------------------------------------- symmetry, order

def test_swapping_windows_keeps_ks_and_psi_is_symmetric_for_fixed_bins() -> None:
    rng = np.random.default_rng(8)
    ref = np.round(rng.normal(0, 1, 3000), 2)
    cur = np.round(rng.normal(0.3, 1.2, 2000), 2)
    con = drift_db({"x": ref.tolist()}, {"x": cur.tolist()})
    row, swapped = one(con), one(con, flt=SWAPPED)
    assert swapped["ks_statistic"] == row["ks_statistic"]
    assert swapped["ks_pvalue"] == row["ks_pvalue"]
    # PSI's formula is symmetric: on the same bins, swapping the histograms changes nothing ...
    dist = drift.distribution(con, FLT, "x")
    assert drift.psi_from_counts(dist["n_current"], dist["n_reference"])[0] == pytest.approx(
        row["psi"], rel=1e-13)
    # ... but swapped windows also swap whose quantiles make the bins, so the PSI moves.
    assert swapped["psi"] == pytest.approx(numpy_psi(cur, ref)[0], rel=1e-12)
    assert swapped["psi"] != pytest.approx(row["psi"], rel=1e-3)


def test_row_order_changes_nothing() -> None:
    rng = np.random.default_rng(9)
    ref = {"x": np.round(rng.normal(0, 1, 4000), 3).tolist(),
           "cat": rng.choice(["a", "b", "c"], 4000).tolist()}
    cur = {"x": np.round(rng.normal(0.1, 1, 3000), 3).tolist(),
           "cat": rng.choice(["a", "b", "d"], 3000).tolist()}
    types = {"cat": "VARCHAR"}
    frames = [drift.feature_drift(drift_db(ref, cur, types=types, shuffle_seed=seed), FLT)
              for seed in (None, 1, 2)]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])


def test_duplicating_every_row_keeps_psi_and_d() -> None:
    # The ceil(2n i / bins)-th of the doubled sample is the ceil(n i / bins)-th of the original,
    # so inverted-CDF edges, shares and ECDFs do not move (only the p-value does).
    rng = np.random.default_rng(10)
    ref, cur = np.round(rng.normal(0, 1, 333), 1), np.round(rng.normal(0.2, 1, 251), 1)
    once = one(drift_db({"x": ref.tolist()}, {"x": cur.tolist()}))
    twice = one(drift_db({"x": np.repeat(ref, 2).tolist()}, {"x": np.repeat(cur, 2).tolist()}))
    assert twice["psi"] == pytest.approx(once["psi"], rel=1e-13)
    assert twice["ks_statistic"] == once["ks_statistic"]
    assert twice["ks_pvalue"] < once["ks_pvalue"]


# --------------------------------------------------------------------------- edge cases

def test_constant_feature() -> None:
    row = one(drift_db({"x": [5.0] * 40}, {"x": [5.0] * 25}))
    assert (row["psi"], row["ks_statistic"], row["ks_pvalue"]) == (0.0, 0.0, 1.0)
    assert row["status"] == "ok"
    dist = drift.distribution(drift_db({"x": [5.0] * 40}, {"x": [5.0] * 25}), FLT, "x")
    # One edge (the value itself): all reference rows in one bin; the open bin above is empty.
    assert dist["label"].tolist() == ["(-inf, 5]", "(5, +inf)"]
    assert dist["n_reference"].tolist() == [40, 0]


def test_constant_feature_that_moves() -> None:
    row = one(drift_db({"x": [5.0] * 40}, {"x": [6.0] * 25}))
    assert row["ks_statistic"] == 1.0
    assert row["psi"] == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4), rel=1e-15)
    assert row["status"] == "act"


def test_category_only_in_the_current_window_goes_to_unseen() -> None:
    con = drift_db({"c": ["a"] * 6 + ["b"] * 4}, {"c": ["a"] * 5 + ["new"] * 3 + [None] * 2},
                   types={"c": "VARCHAR"})
    row = one(con, "c")
    assert row["kind"] == "categorical" and pd.isna(row["ks_statistic"])
    dist = drift.distribution(con, FLT, "c")
    assert dist["label"].tolist() == ["a", "b", drift.UNSEEN]
    assert dist["n_reference"].tolist() == [6, 4, 0]
    assert dist["n_current"].tolist() == [5, 0, 3]
    r, c = np.array([0.6, 0.4, 1e-4]), np.array([5 / 8, 1e-4, 3 / 8])
    assert row["psi"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-14)
    assert row["missing_rate_current"] == pytest.approx(0.2)
    assert row["n_bins"] == 3


def test_all_null_feature_is_no_data_with_a_reason() -> None:
    row = one(drift_db({"x": [None] * 5, "y": [1.0] * 5}, {"x": [None] * 3, "y": [2.0] * 3}))
    assert row["status"] == "no_data" and row["reason"] == "no_reference_values"
    assert pd.isna(row["psi"]) and pd.isna(row["ks_statistic"])
    assert row["missing_rate_reference"] == 1.0 and row["missing_rate_current"] == 1.0


@pytest.mark.parametrize("reference, current, reason", [
    ({"x": [1.0, 2.0]}, {}, "empty_current_window"),
    ({}, {"x": [1.0, 2.0]}, "empty_reference_window"),
    ({"x": [1.0, 2.0]}, {"x": [None, math.nan]}, "no_current_values"),
])
def test_empty_window_is_no_data(reference: dict, current: dict, reason: str) -> None:
    con = drift_db({"x": reference.get("x", [])}, {"x": current.get("x", [])})
    row = one(con)
    assert (row["status"], row["reason"]) == ("no_data", reason)
    dist = drift.distribution(con, FLT, "x")
    assert dist.empty and dist.attrs["reason"] == reason
    if reason.startswith("empty"):
        assert drift.score_drift(con, FLT).reason == reason


def test_single_row_each() -> None:
    row = one(drift_db({"x": [1.0]}, {"x": [2.0]}))
    assert row["ks_statistic"] == 1.0 and row["ks_pvalue"] == stats.ks_2samp([1.0], [2.0]).pvalue
    assert row["psi"] == pytest.approx(2 * (1 - 1e-4) * math.log(1e4), rel=1e-15)


def test_ranking_and_thresholds() -> None:
    rng = np.random.default_rng(4)
    ref = {"a": rng.normal(0, 1, 2000).tolist(), "b": rng.normal(0, 1, 2000).tolist(),
           "c": rng.normal(0, 1, 2000).tolist()}
    cur = {"a": rng.normal(0, 1, 2000).tolist(), "b": rng.normal(0.5, 1, 2000).tolist(),
           "c": rng.normal(1.5, 1, 2000).tolist()}
    frame = drift.feature_drift(drift_db(ref, cur), FLT)
    assert frame["feature"].tolist() == ["c", "b", "a"]
    assert frame["status"].tolist() == ["act", "watch", "ok"]
    assert frame.columns.tolist() == list(drift.DRIFT_COLUMNS)
    relaxed = drift.feature_drift(drift_db(ref, cur), FLT, watch=0.5, act=5.0)
    assert relaxed["status"].tolist() == ["watch", "ok", "ok"]


def test_score_drift_binary_and_multiclass() -> None:
    rng = np.random.default_rng(6)
    p_ref, p_cur = rng.beta(1, 5, 500), rng.beta(1, 3, 400)
    p_cur[:7] = np.nan
    res = drift.score_drift(drift_db({"p": p_ref.tolist()}, {"p": p_cur.tolist()}), FLT)
    assert (res.feature, res.kind) == (drift.SCORE, "score")
    ok = p_cur[np.isfinite(p_cur)]
    expected = stats.ks_2samp(p_ref, ok)
    assert (res.ks_statistic, res.ks_pvalue) == (expected.statistic, expected.pvalue)
    assert res.missing_rate_current == pytest.approx(7 / 400)
    assert res.psi == pytest.approx(numpy_psi(p_ref, ok)[0], rel=1e-12)

    probs_ref = rng.dirichlet([1, 1, 1], 300) * 2       # top class share after renormalising
    probs_cur = rng.dirichlet([3, 1, 1], 200)
    con = drift_db({"probs": probs_ref.tolist()}, {"probs": probs_cur.tolist()}, task="multiclass")
    res = drift.score_drift(con, FLT)
    top = lambda a: a.max(axis=1) / a.sum(axis=1)  # noqa: E731
    expected = stats.ks_2samp(top(probs_ref), top(probs_cur))
    assert abs(res.ks_statistic - expected.statistic) <= TOL
    assert abs(res.ks_pvalue - expected.pvalue) <= TOL


def test_daily_drift_matches_per_day_references() -> None:
    rng = np.random.default_rng(12)
    ref = np.round(rng.normal(0, 1, 800), 2)
    days = [date(2026, 2, d) for d in (1, 2, 4)]
    cur = [np.round(rng.normal(shift, 1, k), 2) for shift, k in ((0, 300), (0.5, 250), (2, 90))]
    ts = np.concatenate([pd.Timestamp(d, tz="UTC") + pd.to_timedelta(np.arange(len(x)), unit="min")
                         for d, x in zip(days, cur)])
    con = drift_db({"x": ref.tolist()}, {"x": np.concatenate(cur).tolist(), "ts": list(ts)})
    for fine_bins in (drift.FINE_BINS, 5):
        with patch.object(drift_engine, "FINE_BINS", fine_bins):
            frame = drift.daily_drift(con, FLT, feature="x")
        assert frame["day"].tolist() == days
        assert frame["n_current"].tolist() == [300, 250, 90]
        for (_, row), x in zip(frame.iterrows(), cur):
            assert_ks_matches(row, ref, x)
            assert row["psi"] == pytest.approx(numpy_psi(ref, x)[0], rel=1e-12)
        assert frame["status"].iloc[-1] == "act"


def test_daily_drift_over_many_days_overlapping_and_open_windows() -> None:
    # 40 days: more days make the fine histogram coarser per day (the perfect hash table has
    # a size limit), an open end makes the days come from the rows, and a reference window
    # reaching into the current one puts the overlapping rows in both samples.
    rng = np.random.default_rng(14)
    ref = np.round(rng.normal(0, 1, 1500), 2)
    days = [date(2026, 2, 1) + pd.Timedelta(days=i) for i in range(40)]
    cur = [np.round(rng.normal(i / 40, 1, 40 + i), 2) for i in range(40)]
    ts = np.concatenate([pd.Timestamp(d, tz="UTC") + pd.to_timedelta(np.arange(len(x)), unit="min")
                         for d, x in zip(days, cur)])
    con = drift_db({"x": ref.tolist()}, {"x": np.concatenate(cur).tolist(), "ts": list(ts)})
    overlap_end = 9  # the reference window ends on 2026-02-10
    cases = [
        (Filter(model="m", start=CUR_START, end="2026-03-15", reference_start=REF_START,
                reference_end=CUR_START), ref),
        (Filter(model="m", start=CUR_START, reference_start=REF_START, reference_end=CUR_START),
         ref),
        (Filter(model="m", start=CUR_START, end="2026-03-15", reference_start=REF_START,
                reference_end="2026-02-10"), np.concatenate([ref, *cur[:overlap_end]])),
    ]
    for flt, reference in cases:
        for fine_bins in (drift.FINE_BINS, 5):
            with patch.object(drift_engine, "FINE_BINS", fine_bins):
                frame = drift.daily_drift(con, flt, feature="x")
            assert frame["day"].tolist() == days
            for (_, row), x in zip(frame.iterrows(), cur):
                assert_ks_matches(row, reference, x)
                assert abs(row["psi"] - numpy_psi(reference, x)[0]) <= 1e-12
        # PSI only (what the report's and the alerts' "since when" read): the same PSI and
        # status per day, no KS.
        psi_only = drift.daily_drift(con, flt, feature="x", ks=False)
        assert psi_only["day"].tolist() == days
        for (_, row), x in zip(psi_only.iterrows(), cur):
            assert abs(row["psi"] - numpy_psi(reference, x)[0]) <= 1e-12
        assert psi_only["status"].tolist() == frame["status"].tolist()
        assert psi_only["ks_statistic"].isna().all() and psi_only["ks_pvalue"].isna().all()


def test_the_callers_perfect_hash_setting_is_kept() -> None:
    con = drift_db({"x": [1.0, 2.0, 3.0]}, {"x": [2.0, 3.0, 4.0]})
    con.execute("SET perfect_ht_threshold = 10")
    drift.feature_drift(con, FLT)
    drift.daily_drift(con, FLT)
    assert con.execute("SELECT current_setting('perfect_ht_threshold')").fetchone()[0] == 10


def test_a_user_column_named_like_the_internal_ones() -> None:
    # The fine-bin queries name their own columns; user columns v, b and k must not clash.
    rng = np.random.default_rng(15)
    ref = {name: np.round(rng.normal(0, 1, 300), 1).tolist() for name in ("v", "b", "k")}
    cur = {name: np.round(rng.normal(0.3, 1, 200), 1).tolist() for name in ("v", "b", "k")}
    con = drift_db(ref, cur)
    frame = drift.feature_drift(con, FLT).set_index("feature")
    for name in ("v", "b", "k"):
        assert_ks_matches(frame.loc[name], np.array(ref[name]), np.array(cur[name]))


@pytest.mark.parametrize("kwargs, message", [
    ({"bins": 1}, "bins"), ({"bins": 2.5}, "bins"), ({"eps": 0}, "eps"), ({"eps": 1.5}, "eps"),
    ({"watch": 0.3, "act": 0.2}, "watch"), ({"watch": -1}, "watch"),
    ({"features": ["nope"]}, "not a feature"), ({"features": []}, "empty"),
])
def test_bad_parameters_are_refused(kwargs: dict, message: str) -> None:
    con = drift_db({"x": [1.0]}, {"x": [2.0]})
    with pytest.raises(QueryError, match=message):
        drift.feature_drift(con, FLT, **kwargs)


def test_no_reference_window_is_an_error() -> None:
    con = drift_db({"x": [1.0]}, {"x": [2.0]})
    with pytest.raises(QueryError, match="no reference window"):
        drift.feature_drift(con, Filter(model="m"))


# --------------------------------------------------------------------------- through the ingest

def test_through_the_ingest(make_db) -> None:
    preds, _ = binary_frames(np.random.default_rng(1), 3000, start="2026-10-01", hours=48)
    preds.loc[preds["ts"] >= pd.Timestamp("2026-10-02", tz="UTC"), "amount"] *= 1.5
    db = make_db(preds, None, features=("amount", "device"), segments=("region",),
                 activations=("h1_tanh",))
    flt = Filter(start="2026-10-02", end="2026-10-03", reference_start="2026-10-01",
                 reference_end="2026-10-02")
    with read_connection(db) as con:
        frame = drift.feature_drift(con, flt)
    assert frame["feature"].tolist()[0] == "amount"
    ref = preds.loc[preds["ts"] < pd.Timestamp("2026-10-02", tz="UTC"), "amount"].to_numpy()
    cur = preds.loc[preds["ts"] >= pd.Timestamp("2026-10-02", tz="UTC"), "amount"].to_numpy()
    assert_ks_matches(frame.iloc[0], ref, cur)
    assert frame.iloc[0]["psi"] == pytest.approx(numpy_psi(ref, cur)[0], rel=1e-12)


# --------------------------------------------------------------------------- the sample

SAMPLE = dict(model="fraud", start="2026-10-20", end="2026-10-28",
              reference_start="2026-10-01", reference_end="2026-10-16")


def test_sample_amount_drifts_in_eu_only(sample_db) -> None:
    with read_connection(sample_db) as con:
        eu = drift.feature_drift(con, Filter(**SAMPLE, segments=(("region", "eu"),)))
        us = drift.feature_drift(con, Filter(**SAMPLE, segments=(("region", "us"),)))
    eu_amount = eu.set_index("feature").loc["amount"]
    us_amount = us.set_index("feature").loc["amount"]
    assert eu_amount["psi"] > 0.25 and eu_amount["status"] == "act"
    assert us_amount["psi"] < 0.1 and us_amount["status"] == "ok"
    assert eu["feature"].iloc[0] == "amount"
    # text_length belongs to the other model: no value in either window.
    assert us.set_index("feature").loc["text_length", "reason"] == "no_reference_values"


def test_sample_tanh_saturates_from_day_22(sample_db) -> None:
    flt = Filter(model="fraud", start="2026-10-16", end="2026-10-31",
                 reference_start="2026-10-01", reference_end="2026-10-16")
    with read_connection(sample_db) as con:
        daily = drift.daily_drift(con, flt, feature="h1_tanh")
        whole = drift.feature_drift(con, flt, features=["h1_tanh"]).iloc[0]
    before = daily[daily["day"] < date(2026, 10, 23)]
    after = daily[daily["day"] >= date(2026, 10, 23)]
    assert len(before) == 7 and len(after) == 8
    assert (before["psi"] < 0.1).all() and (after["psi"] > 0.25).all()
    assert (after["status"] == "act").all()
    assert (after["ks_statistic"] > 2 * before["ks_statistic"].max()).all()
    assert whole["status"] == "act"


# --------------------------------------------------------------------------- integer features
int_values = st.one_of(st.integers(-5, 5), st.integers(-10**6, 10**6),
                       st.sampled_from([-(2**62), 2**62, 0, 1]))


@settings(max_examples=60, deadline=None)
@given(ref=st.lists(int_values, min_size=1, max_size=80),
       cur=st.lists(st.one_of(int_values, st.none()), min_size=1, max_size=80),
       bins=st.sampled_from([2, 4, 10]), sample=st.sampled_from([3, 1000]),
       fine_bins=st.sampled_from([drift.FINE_BINS, 7, 40]))
def test_integer_features_with_one_value_per_fine_bin(ref: list, cur: list, bins: int,
                                                      sample: int, fine_bins: int) -> None:
    # An integer column whose sampled range fits the fine bins gets one value per bin and no
    # second pass there; values the (tiny: 3 rows) sample missed fall in the end bins, which
    # are read value by value. PSI, counts and KS stay the documented ones.
    con = drift_db({"n": ref}, {"n": cur}, types={"n": "BIGINT"})
    with patch.object(drift_engine, "_RESERVOIR_ROWS", sample), \
            patch.object(drift_engine, "_MIN_SAMPLE_ROWS", 1), \
            patch.object(drift_engine, "FINE_BINS", fine_bins):
        row = one(con, "n", bins=bins)
        dist = drift.distribution(con, FLT, "n", bins=bins)
        daily = drift.daily_drift(con, FLT, feature="n", bins=bins)
    r, c = np.array(ref, dtype=float), usable(cur)
    if len(c) == 0:
        assert row["status"] == "no_data"
        return
    psi, edges, r_counts, c_counts = numpy_psi(r, c, bins)
    assert abs(row["psi"] - psi) <= TOL
    assert dist["upper"].tolist()[:-1] == edges.tolist()
    assert dist["n_reference"].tolist() == r_counts.tolist()
    assert dist["n_current"].tolist() == c_counts.tolist()
    assert_ks_matches(row, r, c)
    assert daily["n_current"].sum() == len(c)


def test_integer_fine_bins_skip_the_second_pass() -> None:
    # 48 distinct counts over 20,000 rows: every quantile edge is a one-value bin, so nothing
    # is read twice (before, the edge bins held most rows and were all read again).
    rng = np.random.default_rng(7)
    con = drift_db({"n": rng.poisson(8, 20_000).tolist()},
                   {"n": rng.poisson(9, 20_000).tolist()}, types={"n": "BIGINT"})
    seen = []
    real = drift_engine._run_numpy

    def spy(con_, sql, params, what):
        seen.append(what)
        return real(con_, sql, params, what)

    with patch.object(drift_engine, "_run_numpy", spy):
        row = one(con, "n")
    assert any(w.startswith("fine histograms") for w in seen), seen  # the spy saw the passes
    assert not any(w.startswith("resolving") for w in seen), seen
    ref = np.array(con.execute("SELECT n FROM predictions WHERE ts < '2026-02-01'").fetchnumpy()["n"], dtype=float)
    cur = np.array(con.execute("SELECT n FROM predictions WHERE ts >= '2026-02-01'").fetchnumpy()["n"], dtype=float)
    assert abs(row["psi"] - numpy_psi(ref, cur)[0]) <= TOL
    assert_ks_matches(row, ref, cur)
