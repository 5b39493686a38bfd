"""Tests for lossboard.dashboard.analysis.samples (the debug view): top-k highest-loss rows and
the error heatmap against numpy references (hypothesis), hand-made cases, and the sample."""

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
from lossboard.dashboard.analysis.samples import (
    MISSING,
    OTHER,
    TOP_LOSS_COLUMNS,
    error_heatmap,
    top_loss_samples,
)
from lossboard.db import read_connection
from lossboard.errors import QueryError

from .conftest import ingest_frames

START = pd.Timestamp("2026-10-01", tz="UTC")
NAN = float("nan")
EPS = 1e-15
TOL = 1e-9
MAX_LOSS_LABEL0 = -math.log(1 - (1 - EPS))  # 34.5396: p = 1 with label 0 (see base.py)


def frame(p: list[float], y: list[int], *, hours: list[float] | None = None, model: str = "m",
          amount: list[float] | None = None, device: list[str | None] | None = None,
          weight: list[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(p)
    hours = hours if hours is not None else [i / 60 for i in range(n)]
    ts = START + pd.to_timedelta(np.asarray(hours, dtype=float) * 3600, unit="s").floor("us")
    preds = pd.DataFrame({
        "request_id": [f"{model}-{i}" for i in range(n)], "ts": ts, "model": model,
        "model_version": "v1", "p": np.asarray(p, dtype=float),
        "region": ["eu" if i % 2 else "us" for i in range(n)],
        "amount": np.asarray(amount if amount is not None else np.arange(n), dtype=float),
        "device": pd.Series(device if device is not None else ["ios"] * n, dtype=object),
        "h1_tanh": np.linspace(-1, 1, n),
        "email": [f"user{i}@example.com" for i in range(n)],
        "weight": np.asarray(weight if weight is not None else [1.0] * n, dtype=float)})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": y, "model": model})
    return preds, labels


FLAGS = dict(segments=("region",), features=("amount", "device"), activations=("h1_tanh",),
             pii=("email",))


def ref_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    pc = np.clip(p, EPS, 1 - EPS)  # clip p, then 1 - p for label 0: base.labelled_rows' order
    return np.where(y == 1, -np.log(pc), -np.log(1 - pc))


# --------------------------------------------------------------------------- random data
@st.composite
def datasets(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 30))
    score = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.1, 1e-16, NAN]), st.floats(0, 1))
    return dict(
        p=draw(st.lists(score, min_size=n, max_size=n)),
        y=draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        hours=draw(st.lists(st.sampled_from([0.0, 1.0, 2.5]), min_size=n, max_size=n)),  # ties
        amount=draw(st.lists(st.one_of(st.sampled_from([1.0, 2.0, NAN]), st.floats(-50, 50)),
                             min_size=n, max_size=n)),
        device=draw(st.lists(st.sampled_from(["ios", "android", "web", "tv", None]),
                             min_size=n, max_size=n)),
        weight=draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=n, max_size=n)),
        labelled=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        k=draw(st.integers(1, 12)), bins=draw(st.integers(1, 5)), top=draw(st.integers(1, 3)))


def ref_axis(values: pd.Series, numeric: bool, bins: int, top: int) -> tuple[np.ndarray, list[str]]:
    """Bin codes and labels per the documented rules, in numpy / plain Python."""
    if numeric:
        x = values.to_numpy(dtype=float)
        ok = ~np.isnan(x)
        edges = np.array([])
        if ok.any():
            q = np.quantile(x[ok], np.arange(1, bins) / bins) if bins > 1 else np.array([])
            edges = np.unique(q[q > x[ok].min()])
        codes = (x[:, None] >= edges[None, :]).sum(axis=1)
        nb = len(edges) + 1 if ok.any() else 0
        labels = [f"bin{i}" for i in range(nb)]
        if (~ok).any():
            codes = np.where(ok, codes, nb)
            labels.append(MISSING)
        return codes, labels
    counts = values.dropna().value_counts()
    cats = sorted(counts.index, key=lambda c: (-counts[c], c))[:top]
    labels = list(cats) + ([OTHER] if len(counts) > top else [])
    other = len(cats)
    miss = len(labels)
    if values.isna().any():
        labels.append(MISSING)
    codes = np.array([miss if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                      else cats.index(v) if v in cats else other for v in values])
    return codes, labels


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets())
def test_top_k_and_heatmap_match_numpy(make_db: Callable[..., Path], data: dict) -> None:
    preds, labels = frame(data["p"], data["y"], hours=data["hours"], amount=data["amount"],
                          device=data["device"], weight=data["weight"])
    labels = labels[np.asarray(data["labelled"])]
    db = make_db(preds, labels if len(labels) else None, **FLAGS)
    with read_connection(db) as con:
        top = top_loss_samples(con, Filter(), k=data["k"], keep_empty_columns=True)
        hm = error_heatmap(con, Filter(), "amount", "device", bins=data["bins"], top=data["top"],
                           min_samples=2)
    ref = preds.merge(labels[["request_id", "label"]], on="request_id")
    ref["loss"] = ref_loss(ref["p"].to_numpy(), ref["label"].to_numpy())
    scored = ref[np.isfinite(ref["p"])]
    order = sorted(scored.itertuples(), key=lambda r: (-r.loss, r.ts, r.request_id))[:data["k"]]
    assert top.rows["request_id"].tolist() == [r.request_id for r in order]
    np.testing.assert_allclose(top.rows["loss"], [r.loss for r in order], rtol=TOL, atol=TOL)
    assert top.rows["rank"].tolist() == list(range(1, len(order) + 1))
    assert (top.n_scored, top.n_nonfinite) == (len(scored), len(ref) - len(scored))
    # heatmap
    assert hm.n == len(scored) and hm.cells["n"].sum() == hm.n
    xc, xl = ref_axis(scored["amount"], True, data["bins"], data["top"])
    yc, yl = ref_axis(scored["device"], False, data["bins"], data["top"])
    assert len(hm.x_bins) == len(xl) and hm.y_bins["label"].tolist() == yl
    assert len(hm.cells) == len(xl) * len(yl)
    w, loss = scored["weight"].to_numpy(), scored["loss"].to_numpy()
    for _, cell in hm.cells.iterrows():
        sel = (xc == cell["x_bin"]) & (yc == cell["y_bin"])
        assert cell["n"] == sel.sum() and cell["low_confidence"] == (sel.sum() < 2)
        assert math.isclose(cell["weight_sum"], w[sel].sum(), rel_tol=TOL, abs_tol=TOL)
        if w[sel].sum() > 0:
            want = (w[sel] * loss[sel]).sum() / w[sel].sum()
            assert math.isclose(cell["mean_loss"], want, rel_tol=TOL, abs_tol=TOL)
        else:
            assert cell["mean_loss"] is pd.NA
    if w.sum() > 0:
        assert math.isclose(hm.mean_loss, (w * loss).sum() / w.sum(), rel_tol=TOL, abs_tol=TOL)
    else:
        assert hm.mean_loss is None


def test_heatmap_quantile_edges_match_numpy(make_db: Callable[..., Path]) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    amount = rng.lognormal(3, 1, n)
    preds, labels = frame(list(rng.uniform(0.01, 0.99, n)), list(rng.integers(0, 2, n)),
                          amount=list(amount), hours=list(rng.uniform(0, 48, n)))
    with read_connection(make_db(preds, labels, **FLAGS)) as con:
        hm = error_heatmap(con, Filter(), "amount", "region", bins=5)
    inner = np.quantile(amount, [0.2, 0.4, 0.6, 0.8])  # numpy 'linear' = DuckDB quantile_cont
    np.testing.assert_allclose(hm.x_bins["lo"].to_numpy(dtype=float), [amount.min(), *inner],
                               rtol=1e-12)
    np.testing.assert_allclose(hm.x_bins["hi"].to_numpy(dtype=float), [*inner, amount.max()],
                               rtol=1e-12)
    assert hm.x_bins["n"].tolist() == [400] * 5  # distinct values: equal-count quintiles
    assert hm.y_bins["label"].tolist() == ["eu", "us"]


# --------------------------------------------------------------------------- hand-made cases
@pytest.fixture(scope="module")
def cases_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database, one model per case, ingested once."""
    cases = {
        # losses [0.1, 2.3, 2.3, 0.7]: y = 1 with p = e^-loss; rows 1 and 2 tie, row 2 is older
        "doc": ([math.exp(-0.1), math.exp(-2.3), math.exp(-2.3), math.exp(-0.7)], [1] * 4,
                dict(hours=[0, 2, 1, 3])),
        # equal loss and equal ts: request_id decides ("tie-0" < "tie-1" < "tie-2")
        "tie": ([0.5, 0.5, 0.5], [1, 0, 1], dict(hours=[1, 1, 1])),
        # p exactly 0 / 1, confidently wrong and right, and a NaN score
        "extreme": ([1.0, 0.0, 0.0, 1.0, NAN, 0.5], [0, 1, 0, 1, 1, 0], {}),
        "single": ([0.25], [1], {}),
        # heatmap: 6 categories for top-2, NULLs, numeric ties
        "cats": ([0.2] * 10, [1, 0] * 5,
                 dict(amount=[1, 1, 1, 1, 1, 1, 1, 2, NAN, 3],
                      device=["a", "a", "a", "b", "b", "c", "d", None, None, "e"],
                      weight=[1, 1, 1, 1, 1, 1, 1, 1, 0, 2])),
    }
    frames = [frame(p, y, model=name, **kw) for name, (p, y, kw) in cases.items()]
    db = tmp_path_factory.mktemp("debug") / "cases.duckdb"
    preds = pd.concat([p for p, _ in frames], ignore_index=True)
    labels = pd.concat([lb for _, lb in frames], ignore_index=True)
    ingest_frames(db, preds, labels, **FLAGS)
    return db


def test_top_k_docstring_example_and_tiebreak_by_ts(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        top = top_loss_samples(con, Filter(model="doc"), k=2)
    assert top.rows["request_id"].tolist() == ["doc-2", "doc-1"]  # equal loss: older first
    np.testing.assert_allclose(top.rows["loss"], [2.3, 2.3], rtol=1e-12)
    assert list(top.rows.columns[:len(TOP_LOSS_COLUMNS)]) == list(TOP_LOSS_COLUMNS)


def test_top_k_tiebreak_by_request_id(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        top = top_loss_samples(con, Filter(model="tie"), k=3)
    assert top.rows["request_id"].tolist() == ["tie-0", "tie-1", "tie-2"]
    assert top.rows["rank"].tolist() == [1, 2, 3]  # tied losses still get distinct ranks


def test_exact_zero_one_scores_rank_first_and_nan_is_counted(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        top = top_loss_samples(con, Filter(model="extreme"), k=10)
    rows = top.rows
    assert (top.n_scored, top.n_nonfinite, len(rows)) == (5, 1, 5)
    # p = 1 with label 0 costs -ln(1 - (1 - 1e-15)) = 34.5396; p = 0 with label 1 -ln(1e-15).
    assert rows["request_id"].tolist()[:2] == ["extreme-0", "extreme-1"]
    np.testing.assert_allclose(rows["loss"][:2], [MAX_LOSS_LABEL0, -math.log(EPS)], rtol=1e-12)
    assert rows["clipped"].tolist()[:2] == [True, True]
    assert "extreme-4" not in rows["request_id"].tolist()  # NaN score: no loss, not ranked


def test_user_columns_and_pii_as_stored(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        top = top_loss_samples(con, Filter(model="single"))
        stored = con.execute("SELECT email FROM predictions WHERE request_id = 'single-0'").fetchone()[0]
    assert (top.segment_columns, top.feature_columns, top.activation_columns, top.pii_columns) == (
        ("region",), ("amount", "device"), ("h1_tanh",), ("email",))
    row = top.rows.iloc[0]
    assert row["email"] == stored and "@" not in row["email"]  # the salted hash, never the raw value
    assert row["label"] == "1" and row["p"] == 0.25 and math.isclose(row["loss"], math.log(4))
    assert list(top.rows.columns) == [*TOP_LOSS_COLUMNS, "region", "amount", "device", "h1_tanh",
                                      "email"]


def test_all_null_user_columns_are_dropped_unless_asked(make_db: Callable[..., Path]) -> None:
    preds, labels = frame([0.3, 0.6], [1, 0])
    db = make_db(preds, labels, **FLAGS)
    other = pd.DataFrame({"request_id": ["o1"], "ts": [START], "model": "other",
                          "model_version": "v1", "p": [0.5], "queue": ["tech"]})
    ingest_frames(db, other, segments=("queue",))
    with read_connection(db) as con:
        lean = top_loss_samples(con, Filter(model="m"))
        full = top_loss_samples(con, Filter(model="m"), keep_empty_columns=True)
    assert "queue" not in lean.rows.columns and lean.segment_columns == ("region",)
    assert full.rows["queue"].isna().all() and full.segment_columns == ("queue", "region")


def test_empty_window(cases_db: Path) -> None:
    flt = Filter(model="doc", start="2027-01-01")
    with read_connection(cases_db) as con:
        top = top_loss_samples(con, flt)
        hm = error_heatmap(con, flt, "amount", "device")
    assert top.rows.empty and (top.n_scored, top.n_nonfinite) == (0, 0)
    assert list(top.rows.columns) == list(TOP_LOSS_COLUMNS)
    assert hm.n == 0 and hm.mean_loss is None and hm.cells.empty
    assert hm.x_bins.empty and hm.y_bins.empty


def test_single_row_heatmap(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        hm = error_heatmap(con, Filter(model="single"), "amount", "device")
    assert hm.x_bins["label"].tolist() == ["[0, 0]"] and hm.y_bins["label"].tolist() == ["ios"]
    assert hm.cells["n"].tolist() == [1] and hm.cells["low_confidence"].tolist() == [True]
    assert math.isclose(hm.cells["mean_loss"].iloc[0], math.log(4))


def test_heatmap_top_other_missing_and_ties(cases_db: Path) -> None:
    with read_connection(cases_db) as con:
        hm = error_heatmap(con, Filter(model="cats"), "device", "amount", top=2, bins=4,
                           min_samples=3)
    # device counts: a 3, b 2, then c, d, e 1 each -> top-2 a, b; (other) 3; (missing) 2
    assert hm.x_bins["label"].tolist() == ["a", "b", OTHER, MISSING]
    assert hm.x_bins["n"].tolist() == [3, 2, 3, 2]
    # amount [1 x7, 2, NaN, 3]: quartiles over the 9 numbers are 1, 1, 1 -> all at the minimum,
    # dropped: one bin [1, 3], and NaN in (missing).
    assert hm.y_bins["label"].tolist() == ["[1, 3]", MISSING]
    assert hm.cells["n"].sum() == hm.n == 10
    cell = hm.cells[(hm.cells["x_label"] == MISSING) & (hm.cells["y_label"] == MISSING)].iloc[0]
    assert (cell["n"], cell["weight_sum"], cell["mean_loss"]) == (1, 0.0, pd.NA)
    assert cell["low_confidence"]
    a = hm.cells[(hm.cells["x_label"] == "a") & (hm.cells["y_label"] == "[1, 3]")].iloc[0]
    assert a["n"] == 3 and not a["low_confidence"]  # n >= min_samples = 3
    assert len(hm.cells) == 8 and hm.cells[["x_bin", "y_bin"]].values.tolist() == [
        [i, j] for i in range(4) for j in range(2)]


@pytest.mark.parametrize("call, message", [
    (lambda con: top_loss_samples(con, Filter(model="doc"), k=0), "k must be"),
    (lambda con: error_heatmap(con, Filter(model="doc"), "amount", "device", bins=0), "bins must"),
    (lambda con: error_heatmap(con, Filter(model="doc"), "amount", "device", top=0), "top must"),
    (lambda con: error_heatmap(con, Filter(model="doc"), "email", "device"), "'email' is not a"),
    (lambda con: error_heatmap(con, Filter(model="doc"), "amount", "nope"), "'nope' is not a"),
    (lambda con: top_loss_samples(con, Filter()), "several models"),
])
def test_bad_parameters(cases_db: Path, call: Callable, message: str) -> None:
    with read_connection(cases_db) as con:
        with pytest.raises(QueryError, match=message):
            call(con)


# --------------------------------------------------------------------------- the sample
def test_sample_worst_rows_are_the_hard_zero_one_incident(sample_db: Path) -> None:
    with read_connection(sample_db) as con:
        top = top_loss_samples(con, Filter(model="fraud"), k=17)
        triage = top_loss_samples(con, Filter(model="triage"), k=5)
    # README: in [2026-10-15 13:00, 16:00) 6 of the 12 ones are non-fraud and 11 of the 251
    # zeros are fraud: 17 rows at the maximal (clipped) loss, the 6 ones first.
    assert (top.rows["loss"] > 34.5).all() and top.rows["clipped"].all()
    assert top.rows["ts"].between(pd.Timestamp("2026-10-15 13:00", tz="UTC"),
                                  pd.Timestamp("2026-10-15 16:00", tz="UTC")).all()
    assert top.rows["p"].tolist() == [1.0] * 6 + [0.0] * 11
    assert top.rows["ts"].iloc[:6].is_monotonic_increasing
    assert "queue" not in top.rows.columns and "email" in top.rows.columns
    assert set(triage.rows["label"]) <= {"low", "medium", "high"}


def test_sample_heatmap_shows_the_eu_drift(sample_db: Path) -> None:
    flt = Filter(model="fraud", start="2026-10-19", end="2026-10-27", versions=("v1",))
    with read_connection(sample_db) as con:
        hm = error_heatmap(con, flt, "region", "amount")
    assert hm.cells["n"].sum() == hm.n
    by_region = {r: (g["mean_loss"] * g["weight_sum"]).sum() / g["weight_sum"].sum()
                 for r, g in hm.cells.groupby("x_label")}
    # README: v1 log loss in eu 0.449 on days 18-26, others about 0.2.
    assert by_region["eu"] > 1.5 * max(v for r, v in by_region.items() if r != "eu")
