"""Tests for lossboard.dashboard.analysis.saturation: numpy references on random data
(hypothesis), hand-made edge cases with exact answers, and the incidents planted in the sample."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.saturation import (
    ACTIVATION_COLUMNS,
    SCORE_COLUMNS,
    activation_histogram,
    activation_saturation,
    score_histogram,
    score_saturation,
)
from lossboard.db import read_connection
from lossboard.errors import QueryError

START = pd.Timestamp("2026-10-01", tz="UTC")
NAN, INF = float("nan"), float("inf")
TOL = 1e-9


def frame(scores: list[float], acts: list[float] | None = None, *, hours: list[float] | None = None,
          column: str = "p", model: str = "m") -> pd.DataFrame:
    """Predictions at START + hours (default: one per minute) with the given scores."""
    n = len(scores)
    hours = hours if hours is not None else [i / 60 for i in range(n)]
    out = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "ts": START + pd.to_timedelta(np.asarray(hours, dtype=float) * 3600, unit="s").floor("us"),
        "model": model, "model_version": "v1", column: np.asarray(scores, dtype=float)})
    if acts is not None:
        out["h1_tanh"] = np.asarray(acts, dtype=float)
    return out


# --------------------------------------------------------------------------- numpy references
def ref_score_counts(s: np.ndarray, low: float = 0.01, high: float = 0.99,
                     logit: np.ndarray | None = None) -> dict[str, float | None]:
    fin = np.isfinite(s)
    sf = s[fin]
    if logit is None:
        pc = np.clip(sf, 1e-15, 1 - 1e-15)
        lg = np.log(pc / (1 - pc))
    else:
        lg = logit[fin]
    n, nf = len(s), int(fin.sum())
    out: dict[str, float | None] = {
        "n": n, "n_finite": nf, "n_nan": int(np.isnan(s).sum()),
        "n_posinf": int((s == np.inf).sum()), "n_neginf": int((s == -np.inf).sum()),
        "n_low": int((sf < low).sum()), "n_high": int((sf > high).sum()),
        "n_exact_0": int((sf == 0).sum()), "n_exact_1": int((sf == 1).sum()),
        "n_logit_tail": int((np.abs(lg) > 4.6).sum()),
        "n_logit_extreme": int((np.abs(lg) > 9.2).sum())}
    out["nonfinite_rate"] = (n - nf) / n if n else None
    for name, count in (("frac_low", "n_low"), ("frac_high", "n_high"),
                        ("frac_logit_tail", "n_logit_tail"), ("frac_logit_extreme", "n_logit_extreme")):
        out[name] = out[count] / nf if nf else None
    out["frac_saturated"] = (out["n_low"] + out["n_high"]) / nf if nf else None
    return out


def ref_activation(a: np.ndarray, threshold: float = 0.9) -> dict[str, float | None]:
    fin = np.isfinite(a)
    af = a[fin]
    n, nf = len(a), int(fin.sum())
    return {"n_rows": n, "n_null": 0, "n": n, "n_finite": nf, "n_nan": int(np.isnan(a).sum()),
            "n_posinf": int((a == np.inf).sum()), "n_neginf": int((a == -np.inf).sum()),
            "nonfinite_rate": (n - nf) / n if n else None,
            "n_tail": int((np.abs(af) > threshold).sum()),
            "frac_tail": float((np.abs(af) > threshold).sum() / nf) if nf else None,
            "mean": float(np.mean(af)) if nf else None,
            "var": float(np.var(af)) if nf else None}  # np.var: population (ddof=0)


def ref_bins(x: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """The documented bin rule: k = min(floor((x - lo) / (hi - lo) * bins), bins - 1)."""
    x = x[np.isfinite(x) & (x >= lo) & (x <= hi)]
    k = np.minimum(np.floor((x - lo) / (hi - lo) * bins).astype(int), bins - 1)
    return np.bincount(k, minlength=bins)


def assert_close(got: object, want: object, what: str) -> None:
    if want is None:
        assert got is None or got is pd.NA, f"{what}: {got!r} should be no-data"
    else:
        assert got is not None and got is not pd.NA, f"{what}: no data, want {want!r}"
        assert math.isclose(float(got), float(want), rel_tol=TOL, abs_tol=TOL), \
            f"{what}: {got!r} != {want!r}"


def buckets_of(df: pd.DataFrame, bucket: str) -> pd.Series:
    return df["ts"].dt.floor("D" if bucket == "day" else "h")


# --------------------------------------------------------------------------- random data
special_scores = st.sampled_from([0.0, 1.0, 0.01, 0.99, 0.5, 1e-16, 1 - 1e-16, NAN, INF, -INF])
special_acts = st.sampled_from([0.9, -0.9, 1.0, -1.0, 0.0, 1.2, -3.0, NAN, INF, -INF])
rows = st.lists(st.tuples(st.floats(0, 71.99), st.one_of(st.floats(0, 1), special_scores),
                          st.one_of(st.floats(-1.5, 1.5), special_acts)),
                min_size=1, max_size=40)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, bucket=st.sampled_from(["hour", "day"]))
def test_all_functions_match_numpy_on_random_data(make_db: Callable[..., Path],
                                                  rows: list[tuple[float, float, float]],
                                                  bucket: str) -> None:
    hours, scores, acts = map(list, zip(*rows))
    df = frame(scores, acts, hours=hours)
    db = make_db(df, activations=("h1_tanh",))
    df["bucket"] = buckets_of(df, bucket)
    with read_connection(db) as con:
        sat = score_saturation(con, Filter(), bucket=bucket)
        act = activation_saturation(con, Filter(), bucket=bucket)
        sh = score_histogram(con, Filter(), bucket=bucket)
        ah = activation_histogram(con, Filter(), "h1_tanh", bucket=bucket)
    groups = list(df.groupby("bucket"))
    assert list(sat.by_bucket["bucket_start"]) == [b for b, _ in groups]
    for (b, g), (_, got) in zip(groups, sat.by_bucket.iterrows()):
        for key, want in ref_score_counts(g["p"].to_numpy()).items():
            assert_close(got[key], want, f"{b} {key}")
    for key, want in ref_score_counts(df["p"].to_numpy()).items():
        assert_close(getattr(sat.overall, key), want, f"overall {key}")
    for key, want in ref_activation(df["h1_tanh"].to_numpy()).items():
        assert_close(act.overall.iloc[0][key], want, f"activation overall {key}")
    for (b, g), (_, got) in zip(groups, act.by_bucket.iterrows()):
        assert got["bucket_start"] == b
        for key, want in ref_activation(g["h1_tanh"].to_numpy()).items():
            assert_close(got[key], want, f"activation {b} {key}")
    for hist, col, lo, hi in ((sh, "p", 0.0, 1.0), (ah, "h1_tanh", -1.0, 1.0)):
        assert len(hist.counts) == 20 * len(groups)
        for b, g in groups:
            got = hist.counts[hist.counts["bucket_start"] == b]["n"].to_numpy()
            np.testing.assert_array_equal(got, ref_bins(g[col].to_numpy(), lo, hi, 20))
            x = g[col].to_numpy()
            out = hist.outside[hist.outside["bucket_start"] == b].iloc[0]
            assert out["n_nonfinite"] == (~np.isfinite(x)).sum()
            assert out["n_below"] == (np.isfinite(x) & (x < lo)).sum()
            assert out["n_above"] == (np.isfinite(x) & (x > hi)).sum()
            assert out["n_rows"] == out["n_binned"] + out["n_below"] + out["n_above"] \
                + out["n_nonfinite"] + out["n_null"] == len(g)


def test_several_activation_columns_each_match_numpy(make_db: Callable[..., Path]) -> None:
    """Each column's figures stay its own when several are aggregated side by side (one pass
    for all columns), overall and per bucket, in the order the columns were asked for."""
    rng = np.random.default_rng(5)
    n = 300
    a = np.tanh(rng.normal(0, 1.5, n))
    b = rng.uniform(-1.2, 1.2, n)
    b[::17] = np.nan
    b[::29] = np.inf
    df = frame(list(rng.uniform(0, 1, n)), list(a), hours=list(rng.uniform(0, 47.9, n)))
    df["h2_relu"] = b
    db = make_db(df, activations=("h1_tanh", "h2_relu"))
    df["bucket"] = buckets_of(df, "day")
    for columns in (("h1_tanh", "h2_relu"), ("h2_relu", "h1_tanh")):
        with read_connection(db) as con:
            act = activation_saturation(con, Filter(), bucket="day", columns=list(columns))
        assert act.overall["column"].tolist() == list(columns)
        for col in columns:
            got = act.overall[act.overall["column"] == col].iloc[0]
            for key, want in ref_activation(df[col].to_numpy()).items():
                assert_close(got[key], want, f"{col} overall {key}")
            days = act.by_bucket[act.by_bucket["column"] == col]
            for (day, g), (_, row) in zip(df.groupby("bucket"), days.iterrows()):
                assert row["bucket_start"] == day
                for key, want in ref_activation(g[col].to_numpy()).items():
                    assert_close(row[key], want, f"{col} {day} {key}")


def test_histograms_agree_with_numpy_histogram(make_db: Callable[..., Path]) -> None:
    # np.histogram bins [lo, hi) with hi in the last bin, the same convention; random values
    # miss the edges themselves, where the two may round differently.
    rng = np.random.default_rng(11)
    p, a = rng.beta(0.5, 0.5, 3000), np.tanh(rng.normal(0, 1.5, 3000))
    db = make_db(frame(list(p), list(a), hours=list(rng.uniform(0, 23.9, 3000))),
                 activations=("h1_tanh",))
    with read_connection(db) as con:
        sh = score_histogram(con, Filter(), bins=7)
        ah = activation_histogram(con, Filter(), "h1_tanh", bins=20)
    np.testing.assert_array_equal(sh.counts["n"], np.histogram(p, bins=7, range=(0, 1))[0])
    np.testing.assert_array_equal(ah.counts["n"], np.histogram(a, bins=20, range=(-1, 1))[0])
    np.testing.assert_allclose(ah.edges, np.linspace(-1, 1, 21), atol=1e-15)


# --------------------------------------------------------------------------- hand-made cases
# One database for the small binary cases, one model per case: a single ingest keeps the
# file fast. name -> (scores, activations, hours after START or None for one per minute).
CASES: dict[str, tuple[list[float], list[float], list[float] | None]] = {
    "exact": ([0.0, 0.5, 0.995, NAN, INF, -INF, 1.0, 0.01, 0.99], [0.0] * 9, None),
    "doc": ([0.0, 0.5, 0.995, NAN], [0.0] * 4, None),
    "cutoffs": ([0.04, 0.06, 0.5, 0.94, 0.96], [0.0] * 5, None),
    "allnan": ([NAN, INF], [0.0, 0.0], [1, 2]),
    "single": ([0.999], [-0.5], None),
    "threshold": ([0.5] * 5, [0.9, -0.9, float(np.nextafter(0.9, 1)),
                              -float(np.nextafter(0.9, 1)), 0.0], None),
    "actdoc": ([0.5] * 6, [0.95, -0.9, 0.1, NAN, INF, -INF], None),
    "edges": ([0.0, 0.05, 0.5, 1.0], [-1.0, -0.95, 1.0, 1.5], None),
    "buckets": ([0.5] * 4, [0.0] * 4, [0, 0.99, 1, 24.5]),
}


@pytest.fixture(scope="module")
def cases_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .conftest import ingest_frames

    df = pd.concat([frame(s, a, hours=h, model=name) for name, (s, a, h) in CASES.items()],
                   ignore_index=True)
    df["region"] = "eu"
    db = tmp_path_factory.mktemp("saturation") / "cases.duckdb"
    ingest_frames(db, df, activations=("h1_tanh",), segments=("region",))
    return db


def test_exact_case_thresholds_are_strict(cases_db: Path) -> None:
    # 0.01 and 0.99 are not saturated (strict < and >); 0 and 1 are, with |logit| = 34.54.
    with read_connection(cases_db) as con:
        o = score_saturation(con, Filter(model="exact")).overall
    assert (o.n, o.n_finite, o.n_nan, o.n_posinf, o.n_neginf) == (9, 6, 1, 1, 1)
    assert o.nonfinite_rate == 3 / 9
    assert (o.n_low, o.n_high, o.n_exact_0, o.n_exact_1) == (1, 2, 1, 1)
    assert o.frac_low == 1 / 6 and o.frac_high == 2 / 6 and o.frac_saturated == 3 / 6
    # |logit|: 0 -> 34.5, 0.995 -> 5.29, 1 -> 34.5, 0.01 / 0.99 -> 4.595 (< 4.6)
    assert o.n_logit_tail == 3 and o.n_logit_extreme == 2
    assert o.low_confidence is True  # 9 < 1000


def test_docstring_example(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        o = score_saturation(con, Filter(model="doc")).overall
    assert (o.n, o.n_nan, o.n_finite) == (4, 1, 3)
    assert (o.nonfinite_rate, o.frac_low, o.frac_high, o.frac_logit_tail) == (1 / 4, 1 / 3, 1 / 3, 2 / 3)


def test_configurable_cutoffs(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        r = score_saturation(con, Filter(model="cutoffs"), low=0.05, high=0.95, logit_tail=2.0,
                             logit_extreme=3.0)
    assert (r.low, r.high) == (0.05, 0.95)
    assert (r.overall.n_low, r.overall.n_high) == (1, 1)
    # |logit(0.04)| = 3.18, |logit(0.06)| = 2.75, |logit(0.94)| = 2.75, |logit(0.96)| = 3.18
    assert (r.overall.n_logit_tail, r.overall.n_logit_extreme) == (4, 2)


def test_all_nonfinite_bucket_has_no_fractions(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        r = score_saturation(con, Filter(model="allnan"), bucket="hour")
    assert list(r.by_bucket["n_finite"]) == [0, 0]
    assert r.by_bucket["frac_low"].isna().all() and r.by_bucket["frac_low"].dtype == "Float64"
    assert list(r.by_bucket["nonfinite_rate"]) == [1.0, 1.0]
    assert r.overall.frac_low is None and r.overall.frac_logit_tail is None


def test_empty_window_is_explicit_no_data(cases_db: Path) -> None:
    flt = Filter(model="edges", start="2027-01-01")
    with read_connection(cases_db) as con:
        sat = score_saturation(con, flt)
        act = activation_saturation(con, flt)
        sh = score_histogram(con, flt)
        ah = activation_histogram(con, flt, "h1_tanh")
    assert sat.overall.n == 0 and sat.overall.nonfinite_rate is None and sat.overall.frac_low is None
    assert sat.by_bucket.empty and list(sat.by_bucket.columns) == ["bucket_start", "bucket_end", *SCORE_COLUMNS]
    assert list(act.overall["column"]) == ["h1_tanh"] and act.overall.iloc[0]["n"] == 0
    assert act.overall.iloc[0]["frac_tail"] is pd.NA and act.overall.iloc[0]["mean"] is pd.NA
    assert act.by_bucket.empty
    assert list(act.by_bucket.columns) == ["column", "bucket_start", "bucket_end", *ACTIVATION_COLUMNS]
    assert sh.counts.empty and ah.outside.empty


def test_single_row(cases_db: Path) -> None:
    flt = Filter(model="single")
    with read_connection(cases_db) as con:
        sat = score_saturation(con, flt)
        act = activation_saturation(con, flt)
        sh = score_histogram(con, flt)
    assert (sat.overall.n, sat.overall.n_high, sat.overall.frac_high) == (1, 1, 1.0)
    assert len(sat.by_bucket) == 1 and sat.by_bucket.iloc[0]["bucket_start"] == START
    row = act.overall.iloc[0]
    assert (row["n"], row["mean"], row["var"], row["frac_tail"]) == (1, -0.5, 0.0, 0.0)
    assert list(sh.counts["n"]) == [0] * 19 + [1]


def test_activation_exactly_at_threshold_is_not_saturated(cases_db: Path) -> None:
    # |a| > 0.9 strictly: ±0.9 are not saturated, the next doubles up are.
    with read_connection(cases_db) as con:
        row = activation_saturation(con, Filter(model="threshold")).overall.iloc[0]
        row95 = activation_saturation(con, Filter(model="threshold"), threshold=0.95).overall.iloc[0]
    assert (row["n_tail"], row["frac_tail"]) == (2, 2 / 5)
    assert row95["n_tail"] == 0


def test_activation_docstring_example_and_nonfinite(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        row = activation_saturation(con, Filter(model="actdoc")).overall.iloc[0]
    assert (row["n"], row["n_finite"], row["n_nan"], row["n_posinf"], row["n_neginf"]) == (6, 3, 1, 1, 1)
    assert row["nonfinite_rate"] == 0.5 and row["frac_tail"] == 1 / 3
    assert math.isclose(row["mean"], 0.05, rel_tol=1e-12)
    assert math.isclose(row["var"], np.var([0.95, -0.9, 0.1]), rel_tol=1e-12)


def test_activation_null_when_not_logged(make_db: Callable[..., Path]) -> None:
    # A second file without the column: its rows hold NULL, counted apart and not in n.
    db = make_db(frame([0.5, 0.5], [0.95, 0.1]), activations=("h1_tanh",))
    from .conftest import ingest_frames
    later = frame([0.5], hours=[0.5])
    later["request_id"] = ["r-later"]
    ingest_frames(db, later)
    with read_connection(db) as con:
        row = activation_saturation(con, Filter()).overall.iloc[0]
        ah = activation_histogram(con, Filter(), "h1_tanh")
    assert (row["n_rows"], row["n_null"], row["n"], row["n_tail"], row["frac_tail"]) == (3, 1, 2, 1, 0.5)
    assert ah.outside.iloc[0]["n_null"] == 1 and ah.counts["n"].sum() == 2


def test_histogram_edges_and_out_of_range(cases_db: Path) -> None:
    flt = Filter(model="edges")
    with read_connection(cases_db) as con:
        sh = score_histogram(con, flt)
        ah = activation_histogram(con, flt, "h1_tanh")
        ah4 = activation_histogram(con, flt, "h1_tanh", bins=4, lo=-2.0, hi=2.0)
    assert [k for k, n in enumerate(sh.counts["n"]) if n] == [0, 1, 10, 19]
    assert sh.counts.iloc[19][["bin_lo", "bin_hi"]].tolist() == [0.95, 1.0]
    assert dict(enumerate(ah.counts["n"]))[0] == 2 and ah.counts["n"].iloc[19] == 1
    assert ah.outside.iloc[0][["n_above", "n_below", "n_binned"]].tolist() == [1, 0, 3]
    assert list(ah4.counts["n"]) == [0, 2, 0, 2] and ah4.edges == (-2.0, -1.0, 0.0, 1.0, 2.0)


def test_logit_model_uses_stored_logit(make_db: Callable[..., Path]) -> None:
    # The ingest stores p = sigmoid(logit); ±inf logits become p = 1 / 0 (finite scores in the
    # extreme tail), a NaN logit a NaN score.
    logits = [0.0, 5.0, -10.0, INF, -INF, NAN]
    with read_connection(make_db(frame(logits, column="logit"))) as con:
        o = score_saturation(con, Filter()).overall
    assert (o.n, o.n_finite, o.n_nan) == (6, 5, 1)
    assert (o.n_high, o.n_low, o.n_exact_1, o.n_exact_0) == (2, 2, 1, 1)
    assert (o.n_logit_tail, o.n_logit_extreme) == (4, 3)


def test_multiclass_uses_renormalised_top_class(make_db: Callable[..., Path]) -> None:
    # top / sum: [0.2, 0.001, 0] -> 0.995 (high, though 0.2 as logged); [0.4, 0.4, 0.2] -> 0.4;
    # [1, 0, 0] -> exactly 1; [0, 0, 0] -> 0 / 0 = NaN.
    probs = [[0.2, 0.001, 0.0], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    df = frame([0.0] * 4).drop(columns="p")
    for j, name in enumerate("abc"):
        df[f"p_{name}"] = [row[j] for row in probs]
    db = make_db(df, class_probs=tuple((c, f"p_{c}") for c in "abc"))
    with read_connection(db) as con:
        o = score_saturation(con, Filter()).overall
        sh = score_histogram(con, Filter())
    assert (o.n, o.n_nan, o.n_high, o.n_exact_1, o.n_low) == (4, 1, 2, 1, 0)
    assert [k for k, n in enumerate(sh.counts["n"]) if n] == [8, 19]


def test_buckets_are_utc_hours_and_days(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        hours = score_saturation(con, Filter(model="buckets"), bucket="hour").by_bucket
        days = score_saturation(con, Filter(model="buckets"), bucket="day").by_bucket
    assert list(hours["n"]) == [2, 1, 1]
    assert list(hours["bucket_start"]) == [START, START + pd.Timedelta(hours=1),
                                           START + pd.Timedelta(hours=24)]
    assert list(days["n"]) == [3, 1] and str(days["bucket_start"].dt.tz) == "UTC"


@pytest.mark.parametrize("kwargs, message", [
    (dict(bucket="week"), "bucket must be 'hour' or 'day'"),
    (dict(low=0.9, high=0.1), "low must be below high"),
    (dict(low=-0.1), "low must be in"),
    (dict(high=NAN), "high must be in"),
    (dict(logit_tail=0), "logit_tail must be in"),
    (dict(min_samples=-1), "min_samples must be"),
])
def test_score_saturation_rejects_bad_parameters(cases_db: Path, kwargs: dict, message: str) -> None:
    with read_connection(cases_db) as con:
        with pytest.raises(QueryError, match=message):
            score_saturation(con, Filter(model="single"), **kwargs)


def test_histograms_and_activations_reject_bad_input(cases_db: Path) -> None:
    flt = Filter(model="single")
    with read_connection(cases_db) as con:
        with pytest.raises(QueryError, match="bins must be an integer"):
            score_histogram(con, flt, bins=0)
        with pytest.raises(QueryError, match="no predictions column 'nope'"):
            activation_histogram(con, flt, "nope")
        with pytest.raises(QueryError, match="'region' is VARCHAR, not numeric"):
            activation_saturation(con, flt, columns=["region"])
        with pytest.raises(QueryError, match="lo < hi"):
            activation_histogram(con, flt, "h1_tanh", lo=1.0, hi=-1.0)
        with pytest.raises(QueryError, match="several models"):
            score_saturation(con, Filter())


def test_no_activation_columns_gives_empty_frames(make_db: Callable[..., Path]) -> None:
    with read_connection(make_db(frame([0.5]))) as con:
        act = activation_saturation(con, Filter())
    assert act.columns == () and act.overall.empty and act.by_bucket.empty


# --------------------------------------------------------------------------- the sample
def test_sample_nan_scores_on_13_october_morning(sample_db: Path) -> None:
    flt = Filter(model="fraud", start="2026-10-12", end="2026-10-14")
    with read_connection(sample_db) as con:
        hours = score_saturation(con, flt, bucket="hour").by_bucket
    with_nan = hours[hours["n_nan"] > 0]["bucket_start"].tolist()
    # README: ~30% NaN in [2026-10-13T08:00, 10:00), none elsewhere, none on the 12th.
    assert with_nan == [pd.Timestamp("2026-10-13 08:00", tz="UTC"),
                        pd.Timestamp("2026-10-13 09:00", tz="UTC")]
    assert (hours[hours["n_nan"] > 0]["nonfinite_rate"] > 0.2).all()


def test_sample_exact_zero_one_scores_on_15_october_afternoon(sample_db: Path) -> None:
    flt = Filter(model="fraud", start="2026-10-14", end="2026-10-17")
    with read_connection(sample_db) as con:
        hours = score_saturation(con, flt, bucket="hour").by_bucket
    hard = hours[(hours["n_exact_0"] + hours["n_exact_1"]) > 0]
    assert hard["bucket_start"].tolist() == [pd.Timestamp(f"2026-10-15 {h}:00", tz="UTC")
                                             for h in (13, 14, 15)]
    # README: 263 of the 1,324 rows in [13:00, 16:00) are exactly 0.0 or 1.0.
    assert int(hard["n_exact_0"].sum() + hard["n_exact_1"].sum()) == 263


def test_sample_tanh_saturation_from_23_october(sample_db: Path) -> None:
    with read_connection(sample_db) as con:
        days = activation_saturation(con, Filter(model="fraud"), columns=["h1_tanh"]).by_bucket
        before = activation_saturation(con, Filter(model="fraud", end="2026-10-23")).overall
        after = activation_saturation(con, Filter(model="fraud", start="2026-10-23")).overall
    onset = pd.Timestamp("2026-10-23", tz="UTC")
    # README: share of |h1_tanh| > 0.9 goes from 2.2% to 43.6% on 2026-10-23.
    assert (days[days["bucket_start"] < onset]["frac_tail"] < 0.05).all()
    assert (days[days["bucket_start"] >= onset]["frac_tail"] > 0.30).all()
    assert before.iloc[0]["frac_tail"] < 0.05 < 0.30 < after.iloc[0]["frac_tail"]
