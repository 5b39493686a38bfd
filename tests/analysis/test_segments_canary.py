"""segments.py, canary.py and stats.py against scipy / numpy, plus the sample's incidents."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as sps

from lossboard.dashboard.analysis import canary, segments
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.stats import Moments, welch
from lossboard.db import read_connection
from lossboard.errors import QueryError

from .conftest import binary_frames

EPS = 1e-15


def _moments(x: np.ndarray, w: np.ndarray | None = None) -> Moments:
    w = np.ones_like(x) if w is None else w
    return Moments(len(x), float(w.sum()), float((w * w).sum()), float((w * x).sum()),
                   float((w * x * x).sum()))


def _row_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    pc = np.clip(p, EPS, 1 - EPS)
    return np.where(y == 1, -np.log(pc), -np.log(1 - pc))


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.floats(0, 40), min_size=2, max_size=40),
       hs.lists(hs.floats(0, 40), min_size=2, max_size=40))
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    xa, xb = np.array(a), np.array(b)
    ours = welch(_moments(xa), _moments(xb))
    ref = sps.ttest_ind(xa, xb, equal_var=False)
    assert ours is not None
    assert ours.difference == pytest.approx(xa.mean() - xb.mean(), abs=1e-9)
    if np.isfinite(ref.statistic) and ours.t_statistic is not None and xa.var() > 1e-6 and xb.var() > 1e-6:
        assert ours.t_statistic == pytest.approx(ref.statistic, rel=1e-6, abs=1e-9)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_welch_one_sided_matches_scipy(alternative: str) -> None:
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(1.0, 1.0, 50), rng.normal(0.8, 2.0, 70)
    ours = welch(_moments(xa), _moments(xb), alternative=alternative)
    ref = sps.ttest_ind(xa, xb, equal_var=False, alternative=alternative)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_welch_survives_underflowing_variances() -> None:
    # Found by hypothesis: the variance's square underflows to 0.
    res = welch(_moments(np.array([0.0, 0.0])), _moments(np.array([0.0, 8.185661147603159e-140])))
    assert res is not None and 0.0 <= res.p_value <= 1.0


def test_welch_edge_cases() -> None:
    one = _moments(np.array([1.0]))
    assert welch(_moments(np.array([], dtype=float)), one) is None  # no rows: no test
    res = welch(one, _moments(np.array([0.0, 1.0])))
    assert res.difference == 0.5 and res.p_value is None  # one row: no variance estimate
    const = welch(_moments(np.array([2.0, 2.0])), _moments(np.array([1.0, 1.0])))
    assert const.p_value == 0.0 and const.difference == 1.0  # both constant: certain


def test_excess_loss_matches_reference(make_db) -> None:
    rng = np.random.default_rng(11)
    preds, labels = binary_frames(rng, 3000)
    db = make_db(preds, labels, segments=("region",))
    with read_connection(db) as con:
        got = segments.excess_loss(con, Filter(), "region", min_samples=1000)
    merged = preds.merge(labels, on="request_id")
    loss = _row_loss(merged["p"].to_numpy(), merged["label"].to_numpy())
    assert list(got["value"]) == list(got.sort_values("excess_loss", ascending=False)["value"])
    for row in got.itertuples():
        mask = (merged["region"] == row.value).to_numpy()
        ref = sps.ttest_ind(loss[mask], loss[~mask], equal_var=False)
        assert row.n_labelled == mask.sum()
        assert row.log_loss == pytest.approx(loss[mask].mean(), abs=1e-9)
        assert row.log_loss_rest == pytest.approx(loss[~mask].mean(), abs=1e-9)
        assert row.excess_loss == pytest.approx(loss[mask].mean() - loss[~mask].mean(), abs=1e-9)
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
        se = loss[mask].std(ddof=1) / np.sqrt(mask.sum())
        assert row.ci_low == pytest.approx(loss[mask].mean() - 1.959963984540054 * se, abs=1e-9)
        assert row.low_confidence == (mask.sum() < 1000)


def test_excess_loss_exact_small_case(make_db) -> None:
    # Two rows per region. eu: p=0.5 for labels 1,1 -> loss ln 2 each; us: p=1-ish correct.
    ts = pd.Timestamp("2026-10-01", tz="UTC")
    preds = pd.DataFrame({"request_id": ["a", "b", "c", "d"], "ts": [ts] * 4, "model": "m",
                          "model_version": "v1", "p": [0.5, 0.5, 0.25, 0.25],
                          "region": ["eu", "eu", "us", "us"]})
    labels = pd.DataFrame({"request_id": ["a", "b", "c", "d"], "label": [1, 1, 0, 0]})
    db = make_db(preds, labels, segments=("region",))
    with read_connection(db) as con:
        got = segments.excess_loss(con, Filter(), "region").set_index("value")
    # eu: -ln(0.5) = ln 2; us: -ln(0.75) = ln(4/3); excess(eu) = ln 2 - ln(4/3) = ln 1.5
    assert got.loc["eu", "excess_loss"] == pytest.approx(np.log(1.5), abs=1e-12)
    assert got.loc["us", "excess_loss"] == pytest.approx(-np.log(1.5), abs=1e-12)
    # Both groups are constant, so the difference is certain; variance from moment sums keeps
    # a rounding residue (~1e-17), so the p-value is tiny rather than exactly 0.
    assert got.loc["eu", "p_value"] < 1e-6


def test_excess_loss_empty_and_bad_column(make_db) -> None:
    preds, labels = binary_frames(np.random.default_rng(1), 200)
    db = make_db(preds, labels, segments=("region",))
    with read_connection(db) as con:
        empty = segments.excess_loss(con, Filter(start="2030-01-01"), "region")
        assert empty.empty and list(empty.columns) == segments.EXCESS_COLUMNS
        with pytest.raises(QueryError, match="no predictions column 'nope'"):
            segments.excess_loss(con, Filter(), "nope")


def test_loss_change_decomposition_is_exact(make_db) -> None:
    rng = np.random.default_rng(5)
    preds, labels = binary_frames(rng, 4000, hours=48)
    db = make_db(preds, labels, segments=("region",))
    flt = Filter(start="2026-10-02", end="2026-10-03", reference_start="2026-10-01",
                 reference_end="2026-10-02")
    with read_connection(db) as con:
        got = segments.loss_change(con, flt, "region")
    merged = preds.merge(labels, on="request_id")
    merged["loss"] = _row_loss(merged["p"].to_numpy(), merged["label"].to_numpy())
    day = merged["ts"].dt.floor("D")
    g0 = merged[day == pd.Timestamp("2026-10-01", tz="UTC")]["loss"].mean()
    g1 = merged[day == pd.Timestamp("2026-10-02", tz="UTC")]["loss"].mean()
    assert got["contribution"].sum() == pytest.approx(g1 - g0, abs=1e-12)
    assert (got["mix_effect"] + got["performance_effect"]).to_numpy() == pytest.approx(
        got["contribution"].to_numpy(), abs=1e-15)
    assert list(got["contribution"].abs()) == sorted(got["contribution"].abs(), reverse=True)


def _canary_frames(rng: np.random.Generator, n: int, sharpen: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    preds, labels = binary_frames(rng, n, versions=("v1", "v2"))
    logit = np.log(preds["p"] / (1 - preds["p"]))
    v2 = preds["model_version"] == "v2"
    preds.loc[v2, "p"] = 1 / (1 + np.exp(-logit[v2] * sharpen))
    return preds, labels


def test_canary_matches_scipy_and_fails_overconfident(make_db) -> None:
    rng = np.random.default_rng(8)
    preds, labels = _canary_frames(rng, 6000, sharpen=2.5)
    db = make_db(preds, labels)
    with read_connection(db) as con:
        assert canary.detect_pair(con, Filter()) in {("v1", "v2"), ("v2", "v1")}
        res = canary.compare_versions(con, Filter(), baseline="v1", candidate="v2", min_samples=1000)
    merged = preds.merge(labels, on="request_id")
    ts_us = merged["ts"].dt.floor("us")  # DuckDB stores microseconds
    common = ((ts_us >= res.start) & (ts_us <= res.end)).to_numpy()
    loss = _row_loss(merged["p"].to_numpy(), merged["label"].to_numpy())
    c = loss[(merged["model_version"] == "v2").to_numpy() & common]
    b = loss[(merged["model_version"] == "v1").to_numpy() & common]
    assert res.n_candidate == len(c) and res.n_baseline == len(b)
    assert res.log_loss_candidate == pytest.approx(c.mean(), abs=1e-9)
    assert res.relative_delta == pytest.approx(c.mean() / b.mean() - 1, abs=1e-9)
    assert res.p_value == pytest.approx(sps.ttest_ind(c, b, equal_var=False).pvalue, rel=1e-6, abs=1e-300)
    # Non-inferiority: the one-sided test of c against 1.05 * b.
    ref_worse = sps.ttest_ind(c, 1.05 * b, equal_var=False, alternative="greater").pvalue
    assert res.p_value_worse == pytest.approx(ref_worse, rel=1e-6, abs=1e-300)
    assert res.verdict == "fail"


def test_canary_pass_and_insufficient(make_db) -> None:
    rng = np.random.default_rng(9)
    preds, labels = _canary_frames(rng, 4000, sharpen=1.0)
    db = make_db(preds, labels)
    with read_connection(db) as con:
        ok = canary.compare_versions(con, Filter(), baseline="v1", candidate="v2", min_samples=1000)
        few = canary.compare_versions(con, Filter(), baseline="v1", candidate="v2", min_samples=5000)
        absent = canary.compare_versions(con, Filter(), baseline="v1", candidate="v9")
        with pytest.raises(QueryError, match="different versions"):
            canary.compare_versions(con, Filter(), baseline="v1", candidate="v1")
    assert ok.verdict == "pass", ok.reason
    assert few.verdict == "insufficient_data" and "5,000" in few.reason
    assert absent.verdict == "insufficient_data" and "v9" in absent.reason


def test_canary_uses_only_the_common_time_range(make_db) -> None:
    rng = np.random.default_rng(10)
    preds, labels = binary_frames(rng, 3000, hours=72)
    late = preds["ts"] >= pd.Timestamp("2026-10-02", tz="UTC")
    preds["model_version"] = np.where(late & (rng.uniform(size=len(preds)) < 0.5), "v2", "v1")
    db = make_db(preds, labels)
    with read_connection(db) as con:
        res = canary.compare_versions(con, Filter(), baseline="v1", candidate="v2", min_samples=10)
    ts_us = preds["ts"].dt.floor("us")
    v1_common = ((preds["model_version"] == "v1") & (ts_us >= res.start) & (ts_us <= res.end)).sum()
    assert res.n_baseline == v1_common  # v1 rows before v2 started are left out
    assert res.n_baseline < (preds["model_version"] == "v1").sum()
    assert res.start >= pd.Timestamp("2026-10-02", tz="UTC")


def _rollout_db(make_db):
    """v1 alone for a day, then v2 (rolled out 2026-10-02 00:00) beside it on half of the
    traffic for two days; the v2 row at 2026-10-02 12:00:00 is the first of that minute."""
    rng = np.random.default_rng(11)
    preds, labels = binary_frames(rng, 3000, hours=72)
    late = preds["ts"] >= pd.Timestamp("2026-10-02", tz="UTC")
    preds["model_version"] = np.where(late & (np.arange(len(preds)) % 2 == 0), "v2", "v1")
    first = pd.DataFrame({"request_id": ["first"], "ts": [pd.Timestamp("2026-10-02 12:00", tz="UTC")],
                          "model": "m", "model_version": "v2", "p": 0.2, "region": "eu",
                          "amount": 10.0, "device": "ios", "h1_tanh": 0.1})
    return make_db(pd.concat([preds, first], ignore_index=True), labels)


@pytest.mark.parametrize("start", [None, "2026-10-01T12:00Z", "2026-10-02T12:00Z",
                                   "2026-10-02T18:00Z"])
def test_detect_pair_names_the_version_rolled_out_last_in_any_window(make_db, start) -> None:
    # From 2026-10-02T12:00Z the window's first row is v2's: the candidate used to be the
    # version seen later *in the window* (v1 there). It is the one rolled out later.
    db = _rollout_db(make_db)
    with read_connection(db) as con:
        assert canary.version_first_seen(con, "m") == {
            "v1": con.execute("SELECT min(ts) FROM predictions WHERE model_version = 'v1'").fetchone()[0],
            "v2": con.execute("SELECT min(ts) FROM predictions WHERE model_version = 'v2'").fetchone()[0]}
        flt = Filter(start=start, end="2026-10-04")
        if start == "2026-10-02T12:00Z":
            first = con.execute("SELECT model_version FROM predictions WHERE ts >= ? "
                                "ORDER BY ts LIMIT 1", [pd.Timestamp(start)]).fetchone()[0]
            assert first == "v2"  # the case that flipped the pair
        assert canary.detect_pair(con, flt) == ("v1", "v2")
        assert canary.detect_pair(con, replace(flt, versions=("v2",))) == ("v1", "v2")


def test_sample_canary_same_pair_and_verdict_in_every_window(sample_db) -> None:
    # The audit's window from 2026-10-23T23:55Z starts with a v2 row: it said "Verdict pass
    # for v1 vs v2: v1 0.2956 is -37.0% vs v2 0.4692".
    windows = [("2026-10-23T23:55Z", "2026-10-30T23:55Z"), ("2026-10-24T00:00Z", None),
               ("2026-10-21T00:00Z", "2026-10-25T00:00Z"), (None, None),
               ("2026-10-23T23:55:41.466037Z", "2026-10-30T23:55Z")]
    with read_connection(sample_db) as con:
        for start, end in windows:
            flt = Filter(model="fraud", start=start, end=end)
            pair = canary.detect_pair(con, flt)
            res = canary.compare_versions(con, flt, baseline=pair[0], candidate=pair[1])
            assert pair == ("v1", "v2"), (start, end)
            assert res.verdict == "fail" and res.relative_delta > 0.3, (start, end, res.reason)


def test_sample_incidents_where(sample_db) -> None:
    flt = Filter(model="fraud", start="2026-10-19", end="2026-10-27",
                 reference_start="2026-10-01", reference_end="2026-10-15")
    with read_connection(sample_db) as con:
        where = segments.excess_loss_all(con, flt)
        change = segments.loss_change(con, flt, "region")
        pair = canary.detect_pair(con, Filter(model="fraud"))
        res = canary.compare_versions(con, Filter(model="fraud"), baseline=pair[0], candidate=pair[1])
    top = where.iloc[0]
    assert (top["column"], top["value"], bool(top["significant"])) == ("region", "eu", True)
    assert change.iloc[0]["value"] == "eu"  # eu explains most of the rise in global loss
    assert change.iloc[0]["performance_effect"] > 0.8 * change["contribution"].sum()
    assert "queue" not in set(where["column"])  # the triage model's segment is not fraud's
    assert pair == ("v1", "v2") and res.verdict == "fail"
