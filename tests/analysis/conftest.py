"""Fixtures for analysis tests: small databases built through the real ingest."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` keeping NaN as NaN (pandas' own conversion would make them nulls)."""
    arrays = [pa.array(frame[c].to_numpy(), from_pandas=False) if frame[c].dtype.kind == "f"
              else pa.array(frame[c], from_pandas=True) for c in frame.columns]
    pq.write_table(pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns]), path)
    return path


_counter = itertools.count()


def ingest_frames(db: Path, predictions: pd.DataFrame | None = None,
                  labels: pd.DataFrame | None = None, **flags: object) -> None:
    """Ingest a predictions frame (columns: request_id, ts, model, model_version, p | logit |
    probs, optional weight, any user columns) and a labels frame (request_id, label, optional
    label_ts, model). ``flags`` go to MappingOptions for the predictions file (segments=...,
    features=..., activations=..., class_probs=..., classes=...). Asserts both files went in
    with nothing quarantined, so a test never measures a silently shrunken input."""
    folder = db.parent / f"in-{next(_counter)}"
    folder.mkdir()
    if predictions is not None:
        path = write_parquet(predictions, folder / "predictions.parquet")
        report = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="predictions", **flags)))
        f = report.files[0]
        assert f.status == "ok" and f.n_quarantined == 0, f
    if labels is not None:
        labels = labels.copy()
        labels["label"] = labels["label"].astype(str)
        path = write_parquet(labels, folder / "labels.parquet")
        report = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(kind="labels")))
        f = report.files[0]
        assert f.status == "ok" and f.n_quarantined == 0, f


@pytest.fixture
def make_db(tmp_path: Path) -> Callable[..., Path]:
    """``make_db(predictions_df, labels_df, **flags) -> db path`` in a fresh folder."""
    def _make(predictions: pd.DataFrame | None = None, labels: pd.DataFrame | None = None,
              **flags: object) -> Path:
        db = tmp_path / f"db-{next(_counter)}" / "lossboard.duckdb"
        db.parent.mkdir()
        ingest_frames(db, predictions, labels, **flags)
        return db
    return _make


def binary_frames(rng: np.random.Generator, n: int, start: str = "2026-10-01",
                  hours: float = 24 * 10, model: str = "m", versions: tuple[str, ...] = ("v1",),
                  label_fraction: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random binary predictions over ``hours`` from ``start`` with a segment, a numeric and a
    categorical feature and a tanh activation; labels drawn from the scores."""
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(rng.uniform(0, hours * 3600, n), unit="s")
    p = rng.beta(0.6, 4.0, n)
    y = (rng.uniform(size=n) < p).astype(int)
    preds = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "ts": ts, "model": model,
        "model_version": rng.choice(list(versions), n), "p": p,
        "region": rng.choice(["eu", "us", "apac"], n, p=[0.5, 0.3, 0.2]),
        "amount": rng.lognormal(3.0, 1.0, n), "device": rng.choice(["ios", "android", "web"], n),
        "h1_tanh": np.tanh(rng.normal(0, 1, n)),
    })
    keep = rng.uniform(size=n) < label_fraction
    labels = pd.DataFrame({"request_id": preds["request_id"][keep], "label": y[keep],
                           "label_ts": ts[keep] + pd.to_timedelta(rng.exponential(6, keep.sum()), unit="h")})
    return preds, labels


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample, ingested once per test session (read-only for tests)."""
    from lossboard.ingest.mapping import load_config

    db = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    report = ingest([SAMPLE_DIR], IngestOptions(db_path=db, config=load_config(SAMPLE_DIR / "lossboard.toml")))
    assert report.ok, report
    return db
