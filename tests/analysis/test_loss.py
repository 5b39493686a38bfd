"""Tests for lossboard.dashboard.analysis.loss.

Every figure is compared with an independent reference computed here from the frames that
were ingested (scikit-learn where it has the metric, numpy otherwise), to 1e-9:

* random data (hypothesis): binary weighted / unweighted with NaN, ±inf, exact 0 / 1 and tied
  scores, unlabelled rows, zero weights; multiclass with unnormalised and all-zero rows;
  rolling windows against a brute-force loop over window ends;
* hand-made cases: exact fractions, p = 0 / 1, NaN / inf, one class, empty window, one row,
  all weights zero, ties, validation errors;
* properties: row order changes nothing, duplicating every row leaves the means unchanged;
* the committed sample's incidents (sample_data/README.md).

scikit-learn >= 1.5 clips probabilities at machine epsilon, lossboard at 1e-15 (STYLE.md), so
the reference pre-clips before ``log_loss``; its multiclass columns are in sorted label order,
so the reference reorders them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from lossboard.dashboard.analysis import loss
from lossboard.dashboard.analysis.base import CLIP_EPS, Z95
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError

from .conftest import binary_frames, ingest_frames

# An ingest of a tiny frame pair takes ~0.2 s here (2 cores); 25 examples keep each property
# test under ~10 s and the file under a minute.
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
BASE = pd.Timestamp("2026-10-01T00:00:00Z")
COUNTS = ("n_predictions", "n_labelled", "n", "n_nonfinite", "n_clipped")
MEANS = ("log_loss", "perplexity", "entropy", "loss_minus_entropy", "brier", "accuracy", "fpr",
         "fnr", "mean_p", "mean_y", "calibration_in_the_large")
CLASSES = ("low", "medium", "high")  # probability order; sorted order is high, low, medium
CLASS_PROBS = tuple((c, f"p_{c}") for c in CLASSES)
# -ln(1 - (1 - 1e-15)): 1 - (1 - 1e-15) is 9.992e-16 in binary floating point, not 1e-15.
CONFIDENTLY_WRONG = -math.log(1 - (1 - 1e-15))


# ---------------------------------------------------------------------------- references
def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, CLIP_EPS, 1 - CLIP_EPS)


def _common(loss_rows: np.ndarray, w: np.ndarray, entropy_rows: np.ndarray) -> dict[str, object]:
    sw = float(w.sum())
    sw2 = float((w * w).sum())
    out: dict[str, object] = {"n": len(w), "weight_sum": sw,
                              "n_eff": sw * sw / sw2 if sw2 > 0 else None}
    if sw == 0:
        return out | {k: None for k in MEANS} | {"log_loss_var": None}
    ll = float(np.average(loss_rows, weights=w))
    ent = float(np.average(entropy_rows, weights=w))
    out |= {"perplexity": math.exp(ll), "entropy": ent, "loss_minus_entropy": ll - ent,
            "log_loss_var": float(np.average((loss_rows - ll) ** 2, weights=w))
            if out["n_eff"] > 1 else None,
            "mean_sq_loss": float(np.average(loss_rows ** 2, weights=w))}
    return out


def ref_binary(p: np.ndarray, y: np.ndarray, w: np.ndarray, threshold: float = 0.5) -> dict:
    """Every figure of the labelled binary rows (p, y, w), from scikit-learn / numpy."""
    p, y, w = np.asarray(p, float), np.asarray(y, int), np.asarray(w, float)
    ok = np.isfinite(p)
    out = {"n_labelled": len(p), "n_nonfinite": int((~ok).sum()),
           "n_clipped": int((ok & ((p < CLIP_EPS) | (p > 1 - CLIP_EPS))).sum())}
    p, y, w = p[ok], y[ok], w[ok]
    pc = _clip(p)
    per_row = np.where(y == 1, -np.log(pc), -np.log(1 - pc))
    out |= _common(per_row, w, -(pc * np.log(pc) + (1 - pc) * np.log(1 - pc)))
    pos, neg = float(w[y == 1].sum()), float(w[y == 0].sum())
    if out["weight_sum"] > 0:
        pred = (p >= threshold).astype(int)
        out |= {
            "log_loss": log_loss(y, pc, sample_weight=w, labels=[0, 1]),
            "brier": brier_score_loss(y, p, sample_weight=w, pos_label=1),
            "accuracy": accuracy_score(y, pred, sample_weight=w),
            "fpr": float(w[(pred == 1) & (y == 0)].sum()) / neg if neg > 0 else None,
            "fnr": float(w[(pred == 0) & (y == 1)].sum()) / pos if pos > 0 else None,
            "mean_p": float(np.average(p, weights=w)), "mean_y": float(np.average(y, weights=w)),
            "calibration_in_the_large": float(np.average(p, weights=w) - np.average(y, weights=w)),
        }
    keep = w > 0
    both = pos > 0 and neg > 0
    out["roc_auc"] = roc_auc_score(y[keep], p[keep], sample_weight=w[keep]) if both else None
    out["pr_auc"] = (average_precision_score(y[keep], p[keep], sample_weight=w[keep])
                     if pos > 0 else None)
    no_data = not keep.any()
    out["roc_auc_reason"] = ("no_data" if no_data else "no_positive_labels" if pos == 0
                             else "no_negative_labels" if neg == 0 else None)
    out["pr_auc_reason"] = "no_data" if no_data else "no_positive_labels" if pos == 0 else None
    return out


def ref_multiclass(probs: np.ndarray, labels: list[str], w: np.ndarray,
                   classes: tuple[str, ...] = CLASSES) -> dict:
    """Every figure of labelled multiclass rows; ``probs`` columns in ``classes`` order."""
    probs, w = np.asarray(probs, float).reshape(len(labels), len(classes)), np.asarray(w, float)
    k = np.array([classes.index(lab) for lab in labels], dtype=int)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = probs.sum(axis=1)
        ok = np.isfinite(probs).all(axis=1) & (total > 0)
        q = probs / total[:, None]
    q_true = q[np.arange(len(k)), k]
    out = {"n_labelled": len(k), "n_nonfinite": int((~ok).sum()),
           "n_clipped": int((ok & ((q_true < CLIP_EPS) | (q_true > 1 - CLIP_EPS))).sum())}
    q, k, w, lab = q[ok], k[ok], w[ok], np.asarray(labels, dtype=object)[ok]
    qc = _clip(q)
    out |= _common(-np.log(qc[np.arange(len(k)), k]), w, -(qc * np.log(qc)).sum(axis=1))
    if out["weight_sum"] > 0:
        order = sorted(range(len(classes)), key=lambda i: classes[i])  # sklearn's column order
        sorted_labels = [classes[i] for i in order]
        half = 0.5 if len(classes) == 2 else 1.0
        out |= {
            "log_loss": log_loss(lab, qc[:, order], sample_weight=w, labels=sorted_labels),
            "brier": brier_score_loss(lab, q[:, order], sample_weight=w, labels=sorted_labels)
            if len(classes) > 2 else half * float(np.average(
                ((q - np.eye(len(classes))[k]) ** 2).sum(axis=1), weights=w)),
            "accuracy": accuracy_score(k, q.argmax(axis=1), sample_weight=w),
        }
    for name in ("fpr", "fnr", "mean_p", "mean_y", "calibration_in_the_large", "roc_auc",
                 "pr_auc"):
        out[name] = None
    out["roc_auc_reason"] = out["pr_auc_reason"] = "multiclass"
    return out


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def assert_figures(got: Mapping[str, object], want: Mapping[str, object], where: str = "",
                   tol: float = 1e-9) -> None:
    """``got`` (a frame row or LossSummary as a dict) has ``want``'s figures; the standard
    error is checked through the variance it implies (see docs/metrics/loss.md: from
    mergeable sums, var_w is exact to ~1e-15 x mean(loss²), not to 1e-9 of itself)."""
    for name, value in want.items():
        if name in ("log_loss_var", "mean_sq_loss"):
            continue
        actual = got[name]
        if value is None:
            assert _missing(actual), f"{where} {name}: want no data, got {actual!r}"
        elif isinstance(value, str):
            assert actual == value, f"{where} {name}: want {value!r}, got {actual!r}"
        else:
            assert not _missing(actual), f"{where} {name}: want {value!r}, got no data"
            assert math.isclose(float(actual), float(value), rel_tol=tol, abs_tol=tol), (
                f"{where} {name}: want {value!r}, got {actual!r}")
    if "log_loss_var" in want:
        var, se = want["log_loss_var"], got["log_loss_se"]
        if var is None:
            assert _missing(se) and _missing(got["log_loss_ci_low"]), f"{where} se: want None"
        else:
            implied = float(se) ** 2 * (float(got["n_eff"]) - 1)
            assert abs(implied - var) <= 1e-12 * max(want["mean_sq_loss"], 1.0), (where, var)
            for side, sign in (("log_loss_ci_low", -1), ("log_loss_ci_high", 1)):
                bound = float(got["log_loss"]) + sign * Z95 * float(se)
                assert math.isclose(float(got[side]), bound, rel_tol=1e-12, abs_tol=1e-12), where
    if "n" in want and "low_confidence" in got:
        assert bool(got["low_confidence"]) == (int(got["n"]) < 1000), where


def summary(db: Path, flt: Filter = Filter(), **kwargs: object) -> dict[str, object]:
    with read_connection(db) as con:
        return asdict(loss.overall(con, flt, **kwargs))


def frame(db: Path, fn: Callable[..., pd.DataFrame], *args: object, flt: Filter = Filter(),
          **kwargs: object) -> pd.DataFrame:
    with read_connection(db) as con:
        return fn(con, flt, *args, **kwargs)


# ---------------------------------------------------------------------------- building DBs
def binary_db(make_db: Callable[..., Path], rows: list[tuple],
              weighted: bool) -> tuple[Path, pd.DataFrame]:
    """rows: (p, y, w, minute, version, region, labelled). Returns the db and the frame."""
    df = pd.DataFrame(rows, columns=["p", "y", "w", "minute", "version", "region", "labelled"])
    df["ts"] = BASE + pd.to_timedelta(df["minute"], unit="min")
    df["request_id"] = [f"r{i}" for i in range(len(df))]
    if not weighted:
        df["w"] = 1.0
    preds = pd.DataFrame({"request_id": df["request_id"], "ts": df["ts"], "model": "m",
                          "model_version": df["version"], "p": df["p"].astype(float),
                          "region": df["region"]})
    if weighted:
        preds["weight"] = df["w"].astype(float)
    lab = df[df["labelled"]]
    labels = pd.DataFrame({"request_id": lab["request_id"], "label": lab["y"],
                           "label_ts": lab["ts"] + pd.Timedelta(hours=1)})
    return make_db(preds, labels, segments=("region",)), df


def multiclass_db(make_db: Callable[..., Path], probs: np.ndarray, labels: list[str],
                  w: np.ndarray | None = None, minutes: np.ndarray | None = None,
                  classes: tuple[str, ...] = CLASSES, versions: list[str] | None = None) -> Path:
    n = len(labels)
    ts = BASE + pd.to_timedelta(np.arange(n) if minutes is None else minutes, unit="min")
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "ts": ts, "model": "m",
                          "model_version": versions or ["v1"] * n})
    for j, c in enumerate(classes):
        preds[f"p_{c}"] = np.asarray(probs, float).reshape(n, len(classes))[:, j]
    if w is not None:
        preds["weight"] = np.asarray(w, float)
    lab = pd.DataFrame({"request_id": preds["request_id"], "label": labels})
    return make_db(preds, lab, class_probs=tuple((c, f"p_{c}") for c in classes))


def ref_of(df: pd.DataFrame) -> dict:
    lab = df[df["labelled"]]
    return ref_binary(lab["p"].to_numpy(), lab["y"].to_numpy(), lab["w"].to_numpy()) | {
        "n_predictions": len(df)}


# ---------------------------------------------------------------------------- hypothesis
SCORE = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1.0, 0.5, 0.25, 1e-16, 1 - 1e-16, math.nan, math.inf, -math.inf]))
BINARY_ROW = st.tuples(SCORE, st.integers(0, 1), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7]),
                       st.integers(0, 3 * 24 * 60 - 1), st.sampled_from(["v1", "v2"]),
                       st.sampled_from(["eu", "us"]), st.sampled_from([True, True, True, False]))


def check_rolling(got: pd.DataFrame, df: pd.DataFrame, window: str, step: str) -> None:
    """``got`` = rolling(window, step) equals a brute-force loop over the window ends."""
    width = pd.Timedelta(hours=loss.window_hours(window))
    unit = "h" if step == "hour" else "D"
    ends = pd.date_range(df["ts"].min().floor(unit) + pd.Timedelta(1, unit),
                         df["ts"].max().floor(unit) + pd.Timedelta(1, unit), freq=unit)
    assert list(got["window_end"]) == list(ends)
    assert (got["window_end"] - got["window_start"] == width).all()
    for _, row in got.iterrows():
        inside = df[(df["ts"] >= row["window_end"] - width) & (df["ts"] < row["window_end"])]
        want = {k: v for k, v in ref_of(inside).items() if "auc" not in k}
        assert_figures(row, want, f"{window} window ending {row['window_end']}")


@PROPERTY
@given(rows=st.lists(BINARY_ROW, min_size=1, max_size=40), weighted=st.booleans(),
       window=st.sampled_from(["1h", "6h", "24h", "2d"]), step=st.sampled_from(["hour", "day"]))
def test_binary_figures_match_sklearn(make_db, rows, weighted, window, step) -> None:
    db, df = binary_db(make_db, rows, weighted)
    with read_connection(db) as con:
        got = asdict(loss.overall(con, Filter()))
        by_version = loss.by_version(con, Filter())
        by_region = loss.by_segment(con, Filter(), "region")
        hourly = loss.by_bucket(con, Filter(), bucket="hour")
        rolled = loss.rolling(con, Filter(), window=window, step=step)
    assert_figures(got, ref_of(df), "overall")

    assert list(by_version["model_version"]) == sorted(
        df["version"].unique(), key=lambda v: (df.loc[df["version"] == v, "ts"].min(), v))
    for _, row in by_version.iterrows():
        assert_figures(row, ref_of(df[df["version"] == row["model_version"]]), row["model_version"])

    assert list(by_region["value"]) == sorted(df["region"].unique())
    for _, row in by_region.iterrows():
        assert_figures(row, ref_of(df[df["region"] == row["value"]]), row["value"])

    hours = df["ts"].dt.floor("h")
    assert list(hourly["bucket_start"]) == list(pd.date_range(hours.min(), hours.max(), freq="h"))
    for _, row in hourly.iterrows():
        assert row["bucket_end"] - row["bucket_start"] == pd.Timedelta(hours=1)
        assert_figures(row, ref_of(df[hours == row["bucket_start"]]), str(row["bucket_start"]))

    check_rolling(rolled, df, window, step)


PROB = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.0, 1.0, 0.5, math.nan, math.inf]))


@settings(PROPERTY, max_examples=20)  # two queries per example: enough for the shared paths
@given(rows=st.lists(st.tuples(PROB, PROB, PROB, st.sampled_from(CLASSES),
                               st.sampled_from([0.0, 1.0, 2.5]), st.integers(0, 2 * 24 * 60)),
                     min_size=1, max_size=30),
       weighted=st.booleans())
def test_multiclass_figures_match_sklearn(make_db, rows, weighted) -> None:
    probs = np.array([r[:3] for r in rows])
    labels = [r[3] for r in rows]
    w = np.array([r[4] for r in rows]) if weighted else np.ones(len(rows))
    minutes = np.array([r[5] for r in rows])
    db = multiclass_db(make_db, probs, labels, w if weighted else None, minutes)
    with read_connection(db) as con:
        got = asdict(loss.overall(con, Filter()))
        daily = loss.by_bucket(con, Filter(), bucket="day")
    assert_figures(got, ref_multiclass(probs, labels, w) | {"n_predictions": len(rows)})
    days = (BASE + pd.to_timedelta(minutes, unit="min")).floor("D")
    assert list(daily["bucket_start"]) == list(pd.date_range(days.min(), days.max(), freq="D"))
    for _, row in daily.iterrows():
        sel = np.asarray(days == row["bucket_start"])
        assert_figures(row, ref_multiclass(probs[sel], [lab for lab, s in zip(labels, sel) if s],
                                           w[sel]), str(row["bucket_start"]))


# ---------------------------------------------------------------------------- exact fractions
def rows_of(*spec: tuple[float, int, float], minute_step: int = 1) -> list[tuple]:
    return [(p, y, w, i * minute_step, "v1", "eu", True) for i, (p, y, w) in enumerate(spec)]


LN2, LN3 = math.log(2), math.log(3)


@pytest.mark.parametrize("weights, want", [
    # p = 1/2 y=1, 1/4 y=0, 3/4 y=0, 1/4 y=1 (a tie across the classes at 1/4). Worked by hand:
    # losses ln2, 2ln2 - ln3, 2ln2, 2ln2; Brier terms 1/4, 1/16, 9/16, 9/16; predictions at
    # 0.5: TP, TN, FP, FN; ROC pairs (1/2 > 1/4) = 1, tie = 1/2, two losses -> 3/8; AP: recall
    # steps of 1/2 at precisions 1/2 and 2/4.
    ((1, 1, 1, 1), {"log_loss": (7 * LN2 - LN3) / 4, "brier": Fraction(23, 64),
                    "accuracy": Fraction(1, 2), "fpr": Fraction(1, 2), "fnr": Fraction(1, 2),
                    "mean_p": Fraction(7, 16), "mean_y": Fraction(1, 2),
                    "calibration_in_the_large": Fraction(-1, 16), "roc_auc": Fraction(3, 8),
                    "pr_auc": Fraction(1, 2), "n_eff": 4, "weight_sum": 4,
                    "entropy": (7 * LN2 - Fraction(9, 4) * LN3) / 4,
                    "perplexity": (128 / 3) ** 0.25}),
    # Same rows weighted 1, 2, 1, 0: the zero-weight row drops out of every mean and of AUC.
    ((1, 2, 1, 0), {"log_loss": (7 * LN2 - 2 * LN3) / 4, "brier": Fraction(15, 64),
                    "accuracy": Fraction(3, 4), "fpr": Fraction(1, 3), "fnr": 0,
                    "mean_p": Fraction(7, 16), "mean_y": Fraction(1, 4),
                    "calibration_in_the_large": Fraction(3, 16), "roc_auc": Fraction(2, 3),
                    "pr_auc": Fraction(1, 2), "n_eff": Fraction(8, 3), "weight_sum": 4}),
])
def test_binary_exact_fractions(make_db, weights, want) -> None:
    spec = [(0.5, 1), (0.25, 0), (0.75, 0), (0.25, 1)]
    db, _ = binary_db(make_db, rows_of(*[(p, y, w) for (p, y), w in zip(spec, weights)]), True)
    got = summary(db)
    assert got["n"] == 4 and got["n_clipped"] == 0
    assert_figures(got, {k: float(v) for k, v in want.items()}, tol=1e-12)


def test_multiclass_exact_fractions(make_db) -> None:
    # Rows (classes low, medium, high): (1/2, 1/4, 1/4) true low; (1/4, 1/2, 1/4) true high;
    # (1/2, 1/2, 0) true medium (a tie for the top class: the first, low, is predicted);
    # (0.2, 0.2, 0.4) true high (sums to 0.8: renormalised to 1/4, 1/4, 1/2). Losses ln2, 2ln2,
    # ln2, ln2; Brier terms 3/8, 7/8, 1/2, 3/8; correct: rows 1 and 4; entropies 3/2 ln2,
    # 3/2 ln2, ln2 (+ the clipped zero's 1e-15 x 34.5), 3/2 ln2.
    probs = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.5, 0.5, 0.0], [0.2, 0.2, 0.4]])
    db = multiclass_db(make_db, probs, ["low", "high", "medium", "high"])
    got = summary(db)
    assert got["task"] == "multiclass" and got["n"] == 4 and got["n_clipped"] == 0
    assert_figures(got, {"log_loss": 5 * LN2 / 4, "brier": 17 / 32, "accuracy": 0.5,
                         "entropy": 11 * LN2 / 8, "roc_auc": None, "fpr": None,
                         "calibration_in_the_large": None, "roc_auc_reason": "multiclass"},
                   tol=1e-12)


# ---------------------------------------------------------------------------- named edge cases
def test_p_exactly_zero_and_one_cost_what_sklearn_charges_after_pre_clipping(make_db) -> None:
    spec = [(0.0, 0, 1), (0.0, 1, 1), (1.0, 0, 1), (1.0, 1, 1)]
    db, df = binary_db(make_db, rows_of(*spec), False)
    got = summary(db)
    assert got["n_clipped"] == 4 and got["n_nonfinite"] == 0
    assert_figures(got, ref_of(df))
    p, y = np.array([p for p, _, _ in spec]), np.array([y for _, y, _ in spec])
    assert got["log_loss"] == pytest.approx(log_loss(y, _clip(p), labels=[0, 1]), abs=1e-12)
    # Each confidently wrong row costs -ln(1 - (1 - 1e-15)) = 34.539 here ...
    assert CONFIDENTLY_WRONG == pytest.approx(34.5396, abs=1e-4)
    # (p = 0, y = 1 costs -ln(1e-15) = 34.5388: the clip is not symmetric in floating point.)
    assert got["log_loss"] == pytest.approx((-math.log(1e-15) + CONFIDENTLY_WRONG) / 4, abs=1e-12)
    # ... and 36.04 in scikit-learn's own default (clip at machine epsilon): docs/metrics/loss.md.
    assert log_loss([0], [1.0], labels=[0, 1]) == pytest.approx(36.04, abs=0.01)


def test_one_confidently_wrong_row(make_db) -> None:
    db, _ = binary_db(make_db, rows_of((1.0, 0, 1)), False)
    got = summary(db)
    assert got["log_loss"] == pytest.approx(CONFIDENTLY_WRONG, abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss([0], _clip(np.array([1.0])), labels=[0, 1]),
                                            abs=1e-12)


def test_nan_and_inf_scores_are_excluded_and_counted(make_db) -> None:
    spec = [(math.nan, 1, 1), (math.inf, 0, 1), (-math.inf, 1, 1), (0.3, 0, 1), (0.7, 1, 1)]
    rows = rows_of(*spec) + [(math.nan, 0, 1, 9, "v1", "eu", False)]  # an unlabelled NaN
    db, df = binary_db(make_db, rows, False)
    got = summary(db)
    assert (got["n_predictions"], got["n_labelled"], got["n"], got["n_nonfinite"]) == (6, 5, 2, 3)
    assert got["log_loss"] == pytest.approx(-math.log(0.7), abs=1e-12)
    assert_figures(got, ref_of(df))


@pytest.mark.parametrize("label, roc_reason, pr_auc", [
    (0, "no_positive_labels", None), (1, "no_negative_labels", 1.0)])
def test_one_class_only_gives_no_auc_with_a_reason(make_db, label, roc_reason, pr_auc) -> None:
    db, df = binary_db(make_db, rows_of((0.2, label, 1), (0.6, label, 1), (0.9, label, 1)), False)
    got = summary(db)
    assert got["roc_auc"] is None and got["roc_auc_reason"] == roc_reason
    assert got["pr_auc"] == pr_auc  # sklearn: AP with only positives is 1
    assert (got["fpr"] is None) == (label == 1) and (got["fnr"] is None) == (label == 0)
    assert_figures(got, ref_of(df))
    day = frame(db, loss.by_bucket)
    assert day["roc_auc"].isna().all() and list(day["roc_auc_reason"]) == [roc_reason]


def test_empty_window_is_explicit_no_data(make_db) -> None:
    db, _ = binary_db(make_db, rows_of((0.2, 0, 1), (0.6, 1, 1)), False)
    empty = Filter(start="2030-01-01")
    got = summary(db, empty)
    assert got["n"] == got["n_predictions"] == 0 and got["weight_sum"] == 0
    assert all(got[k] is None for k in MEANS + ("roc_auc", "pr_auc", "log_loss_ci_low", "n_eff"))
    assert got["roc_auc_reason"] == got["pr_auc_reason"] == "no_data"
    assert got["low_confidence"]
    with read_connection(db) as con:
        assert not math.isnan(loss.overall(con, empty).weight_sum)
        assert loss.overall(con, empty).no_data
        for fn, args in ((loss.by_bucket, {}), (loss.by_version, {}), (loss.rolling, {}),
                         (lambda c, f: loss.by_segment(c, f, "region"), {})):
            out = fn(con, empty, **args)
            assert out.empty and set(loss.METRIC_COLUMNS) <= set(out.columns)


def test_predictions_without_labels_are_zero_count_rows(make_db) -> None:
    rows = rows_of((0.2, 0, 1), (0.6, 1, 1), minute_step=180)
    rows.append((0.5, 0, 1, 600, "v2", "us", False))  # 10:00, never labelled
    db, _ = binary_db(make_db, rows, False)
    hourly = frame(db, loss.by_bucket, bucket="hour")
    assert len(hourly) == 11  # 00:00 .. 10:00, every hour present
    empty = hourly[hourly["n"] == 0]
    assert len(empty) == 9 and empty["log_loss"].isna().all() and empty["low_confidence"].all()
    assert (empty["roc_auc_reason"] == "no_data").all()
    assert hourly["n_predictions"].tolist()[-1] == 1
    v2 = frame(db, loss.by_version).set_index("model_version").loc["v2"]
    assert v2["n_predictions"] == 1 and v2["n"] == 0 and v2["log_loss"] is pd.NA


def test_single_row_has_no_interval(make_db) -> None:
    db, df = binary_db(make_db, rows_of((0.8, 1, 2.0)), True)
    got = summary(db)
    assert got["log_loss"] == pytest.approx(-math.log(0.8), abs=1e-12)
    assert got["n_eff"] == 1 and got["log_loss_se"] is None and got["log_loss_ci_high"] is None
    assert got["roc_auc"] is None
    assert_figures(got, ref_of(df))


def test_all_weights_zero_is_no_data_for_weighted_figures(make_db) -> None:
    db, df = binary_db(make_db, rows_of((0.2, 0, 0.0), (0.6, 1, 0.0), (0.9, 1, 0.0)), True)
    got = summary(db)
    assert got["n"] == 3 and got["weight_sum"] == 0 and got["n_eff"] is None
    assert all(got[k] is None for k in MEANS + ("roc_auc", "pr_auc", "log_loss_se"))
    assert got["roc_auc_reason"] == "no_data"
    assert_figures(got, ref_of(df))
    unweighted = summary(db, weighted=False)
    assert unweighted["log_loss"] == pytest.approx(
        log_loss([0, 1, 1], [0.2, 0.6, 0.9], labels=[0, 1]), abs=1e-12)


def test_ties_in_scores_match_sklearn_auc(make_db) -> None:
    rng = np.random.default_rng(20261001)
    n = 200
    p = rng.choice([0.1, 0.5, 0.5, 0.9, 1.0, 0.0], n)
    y = (rng.uniform(size=n) < p).astype(int)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    db, df = binary_db(make_db, rows_of(*zip(p, y, w)), True)
    got = summary(db)
    keep = w > 0
    assert got["roc_auc"] == pytest.approx(
        roc_auc_score(y[keep], p[keep], sample_weight=w[keep]), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(
        average_precision_score(y[keep], p[keep], sample_weight=w[keep]), abs=1e-12)
    unweighted = summary(db, weighted=False)
    assert unweighted["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert unweighted["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_threshold_and_min_samples(make_db) -> None:
    spec = [(0.2, 0, 1), (0.35, 1, 1), (0.4, 0, 1), (0.8, 1, 1), (0.3, 0, 1)]
    db, df = binary_db(make_db, rows_of(*spec), False)
    lab = df[df["labelled"]]
    for threshold in (0.0, 0.3, 0.5, 1.0):
        got = summary(db, threshold=threshold, min_samples=5)
        assert_figures(got, {"accuracy": accuracy_score(lab["y"], lab["p"] >= threshold)})
        assert not got["low_confidence"]
    assert summary(db, min_samples=6)["low_confidence"]
    skipped = summary(db, auc=False)
    assert skipped["roc_auc"] is None and skipped["roc_auc_reason"] == "not_computed"
    assert frame(db, loss.by_bucket, min_samples=0)["low_confidence"].tolist() == [False]


def test_two_class_list_brier_is_halved_like_sklearn(make_db) -> None:
    # Class names that are not yes/no/true/false: those canonicalise to 1/0 (log-contract.md).
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = ["dog", "dog", "cat"]
    db = multiclass_db(make_db, probs, labels, classes=("dog", "cat"))
    got = summary(db)
    assert got["n"] == 3
    assert got["brier"] == pytest.approx(
        brier_score_loss(labels, probs[:, [1, 0]], labels=["cat", "dog"]), abs=1e-12)
    assert_figures(got, ref_multiclass(probs, labels, np.ones(3), classes=("dog", "cat")))


def test_rolling_hand_example_and_day_step(make_db) -> None:
    # The docstring's example: 10:15 (0.8, y=1) and 12:40 (0.4, y=0), 2-hour windows.
    rows = [(0.8, 1, 1, 10 * 60 + 15, "v1", "eu", True),
            (0.4, 0, 1, 12 * 60 + 40, "v1", "eu", True)]
    db, _ = binary_db(make_db, rows, False)
    got = frame(db, loss.rolling, window="2h")
    assert [t.hour for t in got["window_end"]] == [11, 12, 13]
    assert got["n"].tolist() == [1, 1, 1]
    assert got["log_loss"].tolist() == pytest.approx([-math.log(0.8)] * 2 + [-math.log(0.6)])
    daily = frame(db, loss.rolling, window="7d", step="day")
    assert daily["window_end"].tolist() == [BASE + pd.Timedelta(days=1)]
    assert daily["log_loss"].tolist() == pytest.approx([(-math.log(0.8) - math.log(0.6)) / 2])


@pytest.fixture(scope="module")
def one_row_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One labelled binary row with a segment, shared read-only by the validation tests."""
    db = tmp_path_factory.mktemp("one_row") / "lossboard.duckdb"
    preds = pd.DataFrame({"request_id": ["r0"], "ts": [BASE], "model": "m", "model_version": "v1",
                          "p": [0.2], "region": ["eu"], "amount": [3.5]})
    ingest_frames(db, preds, pd.DataFrame({"request_id": ["r0"], "label": [0]}),
                  segments=("region",), features=("amount",))
    return db


@pytest.mark.parametrize("call, message", [
    (lambda c: loss.overall(c, Filter(), min_samples=-1), "min_samples"),
    (lambda c: loss.overall(c, Filter(), min_samples=True), "min_samples"),
    (lambda c: loss.overall(c, Filter(), threshold=1.5), "threshold"),
    (lambda c: loss.overall(c, Filter(), threshold=math.nan), "threshold"),
    (lambda c: loss.overall(c, Filter(), weighted="yes"), "weighted"),
    (lambda c: loss.overall(c, "model=m"), "flt"),
    (lambda c: loss.by_bucket(c, Filter(), bucket="week"), "bucket"),
    (lambda c: loss.by_bucket(c, Filter(), auc=1), "auc"),
    (lambda c: loss.overall(c, Filter(), auc=None), "auc"),
    (lambda c: loss.rolling(c, Filter(), window="0h"), "window"),
    (lambda c: loss.rolling(c, Filter(), window="15m"), "window"),
    (lambda c: loss.rolling(c, Filter(), window=24), "window"),
    (lambda c: loss.rolling(c, Filter(), step="minute"), "step"),
    (lambda c: loss.by_segment(c, Filter(), "amount"), "column"),
    (lambda c: loss.overall(c, Filter(model="nope")), "nope"),
])
def test_bad_parameters_are_refused_naming_the_argument(one_row_db, call, message) -> None:
    with read_connection(one_row_db) as con, pytest.raises(QueryError) as err:
        call(con)
    assert message in str(err.value)


def test_segment_named_like_a_computed_column_is_stored_renamed(make_db) -> None:
    # base.labelled_rows computes a column y; the ingest stores a user column y as src_y, so a
    # breakdown by it groups by the user's values, never silently by the label.
    preds = pd.DataFrame({"request_id": ["r0", "r1"], "ts": [BASE, BASE], "model": "m",
                          "model_version": "v1", "p": [0.2, 0.9], "y": ["a", "b"]})
    db = make_db(preds, pd.DataFrame({"request_id": ["r0", "r1"], "label": [0, 1]}),
                 segments=("y",))
    with read_connection(db) as con:
        frame = loss.by_segment(con, Filter(), "src_y")
        with pytest.raises(QueryError):
            loss.by_segment(con, Filter(), "y")
    assert list(frame["value"]) == ["a", "b"]


# ---------------------------------------------------------------------------- common properties
def _random_db(make_db, kind: str, order: np.ndarray | None = None, copies: int = 1) -> Path:
    """300 random rows (fixed seed), optionally reordered and/or duplicated as new request ids."""
    rng = np.random.default_rng(7)
    if kind == "binary":
        preds, labels = binary_frames(rng, 300, hours=48, versions=("v1", "v2"), label_fraction=0.9)
        preds["weight"] = rng.choice([0.0, 0.5, 1.0, 2.0], len(preds))
        preds.loc[preds.index[:5], "p"] = [np.nan, np.inf, 0.0, 1.0, 1.0]
        flags: dict[str, object] = {"segments": ("region",)}
    else:
        n = 300
        raw = rng.dirichlet([1.0, 2.0, 0.5], n) * rng.choice([1.0, 0.7], (n, 1))
        preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)],
                              "ts": BASE + pd.to_timedelta(rng.uniform(0, 48 * 3600, n), unit="s"),
                              "model": "m", "model_version": rng.choice(["v1", "v2"], n),
                              "region": rng.choice(["eu", "us"], n),
                              "weight": rng.choice([0.0, 1.0, 3.0], n)})
        for j, c in enumerate(CLASSES):
            preds[f"p_{c}"] = raw[:, j]
        labels = pd.DataFrame({"request_id": preds["request_id"],
                               "label": rng.choice(CLASSES, n)})
        flags = {"segments": ("region",), "class_probs": CLASS_PROBS}
    if order is not None:
        preds = preds.iloc[order].reset_index(drop=True)
        labels = labels.sample(frac=1, random_state=1)
    if copies > 1:
        preds = pd.concat([preds.assign(request_id=preds["request_id"] + f"-{i}")
                           for i in range(copies)], ignore_index=True)
        labels = pd.concat([labels.assign(request_id=labels["request_id"] + f"-{i}")
                            for i in range(copies)], ignore_index=True)
    return make_db(preds, labels, **flags)


def _all_figures(db: Path) -> dict[str, object]:
    with read_connection(db) as con:
        return {"overall": pd.DataFrame([asdict(loss.overall(con, Filter()))]),
                "day": loss.by_bucket(con, Filter(), bucket="day"),
                "hour": loss.by_bucket(con, Filter(), bucket="hour"),
                "version": loss.by_version(con, Filter()),
                "region": loss.by_segment(con, Filter(), "region"),
                "rolling": loss.rolling(con, Filter(), window="6h")}


def _assert_same(a: dict, b: dict, columns: tuple[str, ...], scale_counts: int = 1) -> None:
    for view in a:
        fa, fb = a[view], b[view]
        assert len(fa) == len(fb), view
        for col in columns + COUNTS:
            if col not in fa:
                continue
            for x, y in zip(fa[col], fb[col]):
                if col in COUNTS:
                    assert int(y) == scale_counts * int(x), (view, col)
                elif _missing(x):
                    assert _missing(y), (view, col)
                else:
                    assert math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12), (
                        view, col, x, y)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_row_order_and_duplication(make_db, kind) -> None:
    base = _all_figures(_random_db(make_db, kind))
    order = np.random.default_rng(3).permutation(300)
    shuffled = _all_figures(_random_db(make_db, kind, order=order))
    _assert_same(base, shuffled, tuple(loss.METRIC_COLUMNS) + ("roc_auc", "pr_auc"))
    doubled = _all_figures(_random_db(make_db, kind, copies=2))
    _assert_same(base, doubled, MEANS + ("roc_auc", "pr_auc"), scale_counts=2)


# ---------------------------------------------------------------------------- the sample
def test_sample_overconfident_canary_costs_more(sample_db) -> None:
    # sample_data/README.md, overconfident_canary: v2's logit is v1's x2.5 from 2026-10-21.
    with read_connection(sample_db) as con:
        versions = loss.by_version(con, Filter(model="fraud", start="2026-10-21")).set_index(
            "model_version")
    assert list(versions.index) == ["v1", "v2"]
    assert versions.loc["v2", "log_loss"] > versions.loc["v1", "log_loss"]
    # The gap is far outside both intervals, not noise.
    assert versions.loc["v2", "log_loss_ci_low"] > versions.loc["v1", "log_loss_ci_high"]
    # Overconfident: v2 expects less loss than v1 (lower entropy) and gets more: the increase
    # is all "the model got worse" (loss_minus_entropy), none of it "the data got harder".
    assert versions.loc["v2", "entropy"] < versions.loc["v1", "entropy"]
    gap = versions.loc["v2", "loss_minus_entropy"] - versions.loc["v1", "loss_minus_entropy"]
    assert gap > 0.2  # measured 0.38 (0.441 vs 0.060)


def test_sample_eu_drift_raises_loss(sample_db) -> None:
    # sample_data/README.md, segment_feature_drift: in region eu from 2026-10-19 (v1: 0.198 ->
    # 0.449).
    eu = (("region", "eu"),)
    with read_connection(sample_db) as con:
        before = loss.overall(con, Filter(model="fraud", segments=eu, end="2026-10-19"))
        after = loss.overall(con, Filter(model="fraud", segments=eu, start="2026-10-19"))
        regions = loss.by_segment(con, Filter(model="fraud", start="2026-10-19"), "region")
    assert after.log_loss > 1.5 * before.log_loss
    # The label relationship changed under the model: most of the rise is excess loss.
    assert after.loss_minus_entropy - before.loss_minus_entropy > after.entropy - before.entropy
    assert regions.set_index("value")["log_loss"].idxmax() == "eu"


def test_sample_incidents_show_in_the_counts(sample_db) -> None:
    # sample_data/README.md: hard_zero_one_scores, 263 rows of exact 0.0 / 1.0 on 2026-10-15
    # 13:00-16:00 (all labelled by the end of the logs); nan_scores on 2026-10-13 08:00-10:00.
    with read_connection(sample_db) as con:
        hard = loss.overall(con, Filter(model="fraud", start="2026-10-15T13:00Z",
                                        end="2026-10-15T16:00Z"))
        everything = loss.overall(con, Filter(model="fraud"))
        hourly = loss.by_bucket(con, Filter(model="fraud", start="2026-10-13", end="2026-10-14"),
                                bucket="hour")
    assert hard.n_clipped == everything.n_clipped == 263
    with_nan = hourly[hourly["n_nonfinite"] > 0]["bucket_start"].dt.hour.tolist()
    assert with_nan == [8, 9] and everything.n_nonfinite == hourly["n_nonfinite"].sum()


@PROPERTY
@given(scores=st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.3, 0.3, 0.5, 0.7, 0.9, 1.0, math.nan]),
                                 st.integers(0, 1)), min_size=1, max_size=60),
       scale=st.sampled_from([2.5, 0.25]))
def test_rank_auc_equals_weighted_auc_and_sklearn(make_db, scores, scale) -> None:
    """The overall AUC takes ranks when every weight is 1 and window sums otherwise (loss.py,
    _RANK_AUC): the same rows weighted 1 and weighted by a constant give the same AUCs, equal
    to scikit-learn's, with heavy ties, NaN, 0 and 1 scores and one-class inputs."""
    rows = [(p, y, 1.0, i, "v1", "eu", True) for i, (p, y) in enumerate(scores)]
    db_unit, _ = binary_db(make_db, rows, True)
    db_scaled, _ = binary_db(make_db, [(p, y, scale, *rest) for p, y, _, *rest in rows], True)
    unit, scaled = summary(db_unit), summary(db_scaled)
    p = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    keep = np.isfinite(p)
    p, y = p[keep], y[keep]
    both = 0 < y.sum() < len(y)
    for got in (unit, scaled):
        if both:
            assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        else:
            assert got["roc_auc"] is None
        if y.sum() > 0:
            assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        else:
            assert got["pr_auc"] is None
    assert (unit["roc_auc_reason"], unit["pr_auc_reason"]) == (
        scaled["roc_auc_reason"], scaled["pr_auc_reason"])
