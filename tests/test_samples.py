"""Tests for lossboard.ingest.samples: the files are what the README says, and every planted
incident is measurable with plain numpy / scikit-learn on the files themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import log_loss

import lossboard.ingest.samples as samples
from lossboard.ingest.samples import SampleManifest, generate, read_manifest

# Big enough that every incident shows with margin at seed 7 (checked at seeds 7-10 while
# tuning), small enough to generate in about a second.
ROWS = 40_000
START = datetime(2026, 10, 1, tzinfo=UTC)
END = START + timedelta(days=30)
TRIAGE_CLASSES = ["low", "medium", "high"]


def at(day: float) -> pd.Timestamp:
    return pd.Timestamp(START) + pd.Timedelta(days=day)


def clipped_log_loss(y: pd.Series, p: pd.Series) -> float:
    # lossboard clips at 1e-15; sklearn >= 1.5 clips at machine epsilon, so pre-clip (STYLE.md).
    return log_loss(y.astype(int), np.clip(p.to_numpy(), 1e-15, 1 - 1e-15), labels=[0, 1])


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    return generate(tmp_path_factory.mktemp("sample"), rows=ROWS, seed=7)


@pytest.fixture(scope="module")
def fraud(sample: SampleManifest) -> pd.DataFrame:
    return pq.read_table(sample.files["fraud_predictions"]).to_pandas()


@pytest.fixture(scope="module")
def triage(sample: SampleManifest) -> pd.DataFrame:
    return pd.read_csv(sample.files["triage_predictions"],
                       dtype={"request_id": str, "timestamp": str})


@pytest.fixture(scope="module")
def labels(sample: SampleManifest) -> pd.DataFrame:
    return pd.read_json(sample.files["labels"], lines=True, dtype=False)


@pytest.fixture(scope="module")
def scored(fraud: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Clean fraud predictions with their first valid label (NaN where none arrived)."""
    clean = fraud[fraud["fraud_score"].between(0, 1) | fraud["fraud_score"].isna()]
    clean = clean.drop_duplicates("event_id")
    valid = labels[(labels["model"] == "fraud") & labels["event_id"].notna()
                   & labels["outcome"].isin([0, 1])].drop_duplicates("event_id")
    out = clean.merge(valid[["event_id", "outcome", "labelled_at"]], on="event_id", how="left")
    out["day"] = (out["scored_at"] - pd.Timestamp(START)) / pd.Timedelta(days=1)
    return out


def labelled_loss(frame: pd.DataFrame) -> float:
    rows = frame[frame["outcome"].notna() & frame["fraud_score"].notna()]
    return clipped_log_loss(rows["outcome"], rows["fraud_score"])


# --------------------------------------------------------------------------- determinism


def test_same_seed_writes_the_same_bytes(sample: SampleManifest, tmp_path: Path) -> None:
    again = generate(tmp_path, rows=ROWS, seed=7)
    for key, path in sample.files.items():
        assert again.files[key].read_bytes() == path.read_bytes(), key
    assert (tmp_path / "_manifest.json").read_bytes() == (sample.out_dir / "_manifest.json"
                                                         ).read_bytes()


def test_another_seed_writes_other_data(sample: SampleManifest, fraud: pd.DataFrame,
                                        tmp_path: Path) -> None:
    other = generate(tmp_path, rows=ROWS, seed=8)
    other_fraud = pq.read_table(other.files["fraud_predictions"]).to_pandas()
    assert len(other_fraud) == len(fraud)
    assert not np.allclose(other_fraud["amount"], fraud["amount"])
    assert [i.start for i in other.incidents] == [i.start for i in sample.incidents]


# --------------------------------------------------------------------------- manifest


def test_manifest_json_round_trips(sample: SampleManifest) -> None:
    assert read_manifest(sample.out_dir) == sample
    doc = json.loads((sample.out_dir / "_manifest.json").read_text())
    assert doc["files"]["labels"] == "labels.jsonl.gz"  # relative: the sample can move
    assert doc["incidents"][0]["start"] == "2026-10-13T08:00:00Z"
    assert "+00:00" not in json.dumps(doc)


def test_incident_times_for_the_default_start(sample: SampleManifest) -> None:
    # The times sample_data/README.md documents (day d = 2026-10-01 + d days).
    expected = {
        "nan_scores": ("2026-10-13T08:00:00Z", "2026-10-13T10:00:00Z"),
        "hard_zero_one_scores": ("2026-10-15T13:00:00Z", "2026-10-15T16:00:00Z"),
        "segment_feature_drift": ("2026-10-19T00:00:00Z", None),
        "overconfident_canary": ("2026-10-21T00:00:00Z", None),
        "tanh_saturation": ("2026-10-23T00:00:00Z", None),
        "label_stall": ("2026-10-28T12:00:00Z", None),
    }
    got = {i.name: (samples._iso_z(i.start), i.end and samples._iso_z(i.end))
           for i in sample.incidents}
    assert got == expected
    assert {i.model for i in sample.incidents} == {"fraud"}
    drift = next(i for i in sample.incidents if i.name == "segment_feature_drift")
    assert drift.details["segment"] == {"region": "eu"} and drift.details["feature"] == "amount"
    assert (sample.period_start, sample.period_end) == (START, END)


# --------------------------------------------------------------------------- fraud file


def test_fraud_file_schema(sample: SampleManifest) -> None:
    schema = pq.read_schema(sample.files["fraud_predictions"])
    assert dict(zip(schema.names, schema.types, strict=True)) == {
        "event_id": pa.string(), "scored_at": pa.timestamp("us", tz="UTC"),
        "model": pa.string(), "model_version": pa.string(), "fraud_score": pa.float64(),
        "region": pa.string(), "channel": pa.string(), "amount": pa.float64(),
        "account_age_days": pa.int64(), "merchant_category": pa.string(),
        "device_os": pa.string(), "h1_tanh": pa.float64(), "email": pa.string(),
    }
    assert schema.metadata is None or b"pandas" not in schema.metadata


def test_fraud_rows_ids_and_bad_rows(sample: SampleManifest, fraud: pd.DataFrame) -> None:
    bad = sample.bad_rows["fraud_predictions"]
    assert sample.n_predictions == {"fraud": ROWS, "triage": ROWS // 5}
    assert len(fraud) == ROWS + sum(bad.values())
    assert sum(bad.values()) < 0.001 * ROWS
    out_of_range = fraud["fraud_score"].notna() & ~fraud["fraud_score"].between(0, 1)
    assert out_of_range.sum() == bad["score_out_of_range"] > 0
    assert set(fraud.loc[out_of_range, "fraud_score"]) <= {1.3, -0.2}
    assert fraud.duplicated().sum() == bad["duplicate"] > 0
    assert fraud["event_id"].nunique() == ROWS + bad["score_out_of_range"]
    assert fraud["event_id"].str.fullmatch(r"fr-\d{9}").all()
    assert fraud["scored_at"].is_monotonic_increasing
    assert fraud["scored_at"].min() >= pd.Timestamp(START)
    assert fraud["scored_at"].max() < pd.Timestamp(END)


def test_fraud_columns_hold_plausible_values(fraud: pd.DataFrame) -> None:
    shares = fraud["region"].value_counts(normalize=True)
    assert set(shares.index) == {"eu", "us", "apac", "latam"}
    assert shares.max() > 2 * shares.min()  # unequal segments
    assert set(fraud["channel"]) == {"web", "app", "pos"}
    assert set(fraud["device_os"]) == {"ios", "android", "web", "other"}
    assert fraud["merchant_category"].nunique() == 8
    assert (fraud["amount"] > 0).all() and (fraud["account_age_days"] >= 0).all()
    assert fraud["h1_tanh"].between(-1, 1).all()
    assert fraud["email"].str.fullmatch(r"user\d+@example\.com").all()
    assert set(fraud["model"]) == {"fraud"}


def test_traffic_has_a_daily_cycle(fraud: pd.DataFrame) -> None:
    per_hour = fraud.groupby(fraud["scored_at"].dt.hour).size()
    assert len(per_hour) == 24
    assert per_hour.max() > 2.5 * per_hour.min()


# --------------------------------------------------------------------------- triage file


def test_triage_rows_probabilities_and_bad_rows(sample: SampleManifest,
                                                triage: pd.DataFrame) -> None:
    bad = sample.bad_rows["triage_predictions"]
    assert len(triage) == ROWS // 5 + sum(bad.values())
    assert triage["request_id"].isna().sum() == bad["missing_request_id"] > 0
    assert triage["timestamp"].isna().sum() == bad["missing_ts"] > 0
    assert (triage["timestamp"] == "not-a-time").sum() == bad["bad_ts"] > 0
    assert (triage["p_low"] > 1).sum() == bad["score_out_of_range"] > 0
    assert triage.duplicated().sum() == bad["duplicate"] > 0
    distinct = triage[triage["request_id"].notna()].drop_duplicates()
    repeated = distinct[distinct["request_id"].duplicated(keep=False)]
    assert repeated["request_id"].nunique() == bad["conflicting_duplicate"] > 0
    assert (repeated.groupby("request_id")["p_low"].nunique() == 2).all()

    probs = triage.loc[triage["p_low"] <= 1, ["p_low", "p_medium", "p_high"]]
    assert np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert ((probs >= 0) & (probs <= 1)).all().all()
    assert set(triage["queue"]) == {"billing", "tech", "sales"}
    assert set(triage["model"]) == {"triage"} and set(triage["model_version"]) == {"m1"}


def test_iso_with_offset_writes_local_time_and_offset() -> None:
    instant = int(pd.Timestamp("2026-10-03T12:05:11Z").value // 1000)  # epoch µs
    text = samples._iso_with_offset(np.full(4, instant), np.array([120, -300, 330, 0]))
    assert text.to_pylist() == ["2026-10-03T14:05:11+02:00", "2026-10-03T07:05:11-05:00",
                                "2026-10-03T17:35:11+05:30", "2026-10-03T12:05:11+00:00"]


def test_triage_offsets_denote_the_intended_utc_instants(sample: SampleManifest,
                                                         triage: pd.DataFrame) -> None:
    # Rows are written in UTC order, so parsed instants must be sorted; ignoring the offsets
    # would not be.
    ok = triage[triage["timestamp"].str.match(r"\d{4}-", na=False)]
    ok = ok.drop_duplicates("request_id")  # the conflicting duplicate comes later
    assert ok["timestamp"].str[-6:].nunique() >= 5
    instants = pd.to_datetime(ok["timestamp"], format="ISO8601", utc=True)
    assert instants.is_monotonic_increasing
    assert not pd.to_datetime(ok["timestamp"].str[:19]).is_monotonic_increasing
    assert instants.min() >= pd.Timestamp(START) and instants.max() < pd.Timestamp(END)
    # DuckDB, which lossboard ingests with, reads the same instants.
    epoch_us = duckdb.connect().execute(
        "SELECT epoch_us(CAST(timestamp AS TIMESTAMPTZ)) FROM read_csv(?, all_varchar = true) "
        "WHERE regexp_matches(timestamp, '^\\d{4}-')", [str(sample.files["triage_predictions"])]
    ).fetchnumpy()
    parsed = pd.to_datetime(triage["timestamp"], format="ISO8601", utc=True, errors="coerce")
    expected = parsed.dropna().astype("datetime64[us, UTC]").astype("int64").to_numpy()
    assert np.array_equal(next(iter(epoch_us.values())), expected)


# --------------------------------------------------------------------------- labels file


def test_labels_lines_and_bad_rows(sample: SampleManifest, labels: pd.DataFrame) -> None:
    bad = sample.bad_rows["labels"]
    assert list(labels.columns) == ["event_id", "model", "outcome", "labelled_at"]
    assert len(labels) == sample.n_labels + sum(bad.values())
    assert labels["labelled_at"].dtype == np.int64
    assert labels["labelled_at"].is_monotonic_increasing
    assert labels["labelled_at"].max() < pd.Timestamp(END).value // 1_000_000
    is_fraud = labels["model"] == "fraud"
    assert set(labels.loc[is_fraud, "outcome"]) == {0, 1, 7}
    assert (labels.loc[is_fraud, "outcome"] == 7).sum() == bad["bad_label"] > 0
    assert set(labels.loc[~is_fraud, "outcome"]) == set(TRIAGE_CLASSES)
    assert labels["event_id"].isna().sum() == bad["missing_request_id"] > 0
    assert labels.astype(str).duplicated().sum() == bad["duplicate"] > 0
    with_id = labels[labels["event_id"].notna()].astype({"outcome": str}).drop_duplicates()
    conflicts = with_id[with_id["event_id"].duplicated(keep=False)]
    assert conflicts["event_id"].nunique() == bad["conflicting_label"] > 0
    first_and_second = conflicts.groupby("event_id")["labelled_at"].agg(["first", "last"])
    assert (first_and_second["last"] > first_and_second["first"]).all()


def test_labels_never_arrive_before_their_prediction(sample: SampleManifest) -> None:
    con = duckdb.connect()
    early = con.execute(
        """
        WITH predicted AS (
            SELECT event_id AS id, epoch_us(scored_at) AS us FROM read_parquet($fraud)
            UNION ALL
            SELECT request_id, epoch_us(TRY_CAST(timestamp AS TIMESTAMPTZ))
            FROM read_csv($triage, all_varchar = true)
        )
        SELECT count(*) FILTER (WHERE l.labelled_at * 1000 < p.us), count(*)
        FROM read_json($labels, columns = {event_id: 'VARCHAR', labelled_at: 'BIGINT'}) l
        JOIN predicted p ON p.id = l.event_id
        """,
        {"fraud": str(sample.files["fraud_predictions"]),
         "triage": str(sample.files["triage_predictions"]),
         "labels": str(sample.files["labels"])},
    ).fetchone()
    assert early[0] == 0 and early[1] > sample.n_labels


def test_label_lag_quantiles(scored: pd.DataFrame) -> None:
    # Predictions before day 20 have their whole 5-day lag window before the stall and the end.
    early = scored[(scored["day"] < 20) & scored["labelled_at"].notna()]
    assert len(early) > 0.99 * (scored["day"] < 20).sum()
    lag_hours = ((pd.to_datetime(early["labelled_at"].astype(np.int64), unit="ms", utc=True)
                  - early["scored_at"]) / pd.Timedelta(hours=1))
    assert 6 <= lag_hours.median() <= 12
    assert 36 <= lag_hours.quantile(0.9) <= 48
    assert 0 < lag_hours.min() and 96 < lag_hours.max() <= 120.01


# --------------------------------------------------------------------------- incidents


def test_segment_feature_drift_raises_eu_loss_only(scored: pd.DataFrame) -> None:
    v1 = scored[scored["model_version"] == "v1"]
    before, after = v1[v1["day"] < 18], v1[(v1["day"] >= 18) & (v1["day"] < 27)]
    for region in ["eu", "us", "apac", "latam"]:
        ratio = (labelled_loss(after[after["region"] == region])
                 / labelled_loss(before[before["region"] == region]))
        amount_ratio = (after.loc[after["region"] == region, "amount"].median()
                        / before.loc[before["region"] == region, "amount"].median())
        if region == "eu":
            assert ratio > 1.5 and 2.5 < amount_ratio < 3.5
        else:
            assert 0.7 < ratio < 1.3 and 0.85 < amount_ratio < 1.15


def test_overconfident_canary_is_worse_than_v1(scored: pd.DataFrame) -> None:
    assert (scored.loc[scored["day"] < 20, "model_version"] == "v1").all()
    window = scored[(scored["day"] >= 20) & (scored["day"] < 27)]
    v2 = window["model_version"] == "v2"
    assert 0.2 < v2.mean() < 0.3
    assert labelled_loss(window[v2]) > 1.25 * labelled_loss(window[~v2])
    logit = np.log(window["fraud_score"] / (1 - window["fraud_score"])).abs()
    assert logit[v2].median() > 2 * logit[~v2].median()


def test_nan_scores_only_in_their_window(scored: pd.DataFrame) -> None:
    inside = (scored["day"] >= 12 + 8 / 24) & (scored["day"] < 12 + 10 / 24)
    assert 0.2 < scored.loc[inside, "fraud_score"].isna().mean() < 0.4
    assert scored.loc[~inside, "fraud_score"].notna().all()


def test_hard_zero_one_scores_only_in_their_window(scored: pd.DataFrame) -> None:
    inside = (scored["day"] >= 14 + 13 / 24) & (scored["day"] < 14 + 16 / 24)
    hard = scored["fraud_score"].isin([0.0, 1.0])
    assert 0.12 < hard[inside].mean() < 0.28
    assert not hard[~inside].any()
    window = scored[inside & hard]
    assert set(window["fraud_score"]) == {0.0, 1.0}
    wrong = window["outcome"].notna() & (window["outcome"] != window["fraud_score"])
    assert wrong.sum() >= 1  # unclipped log loss would be infinite


def test_label_stall_leaves_recent_predictions_unlabelled(scored: pd.DataFrame,
                                                         labels: pd.DataFrame) -> None:
    coverage = scored.groupby(scored["day"] >= 27.5)["outcome"].apply(lambda s: s.notna().mean())
    assert coverage[True] < 0.1
    assert scored.loc[scored["day"] < 20, "outcome"].notna().mean() > 0.99
    arrived = pd.to_datetime(labels.loc[labels["model"] == "fraud", "labelled_at"], unit="ms",
                             utc=True)
    per_day_after = (arrived >= at(27.5)).sum() / 2.5
    per_day_before = ((arrived >= at(20)) & (arrived < at(27.5))).sum() / 7.5
    assert per_day_after < 0.1 * per_day_before


def test_tanh_saturation(scored: pd.DataFrame) -> None:
    saturated = scored["h1_tanh"].abs() > 0.9
    after = scored["day"] >= 22
    assert 0.01 < saturated[~after].mean() < 0.04
    assert 0.3 < saturated[after].mean() < 0.5


def test_business_kpi_rises_with_the_model_loss(sample: SampleManifest,
                                                scored: pd.DataFrame) -> None:
    kpi = pd.read_csv(sample.files["business_kpi"])
    assert list(kpi.columns) == ["date", "kpi", "value"]
    assert set(kpi["kpi"]) == {"fraud_losses_usd", "manual_reviews"}
    losses = kpi[kpi["kpi"] == "fraud_losses_usd"].set_index("date")["value"]
    assert list(losses.index) == [(START + timedelta(days=d)).date().isoformat()
                                  for d in range(30)]
    assert losses.iloc[18:].mean() > 1.25 * losses.iloc[:18].mean()
    daily_loss = scored.groupby(scored["day"].astype(int)).apply(labelled_loss)
    assert np.corrcoef(losses.iloc[:27], daily_loss.iloc[:27])[0, 1] > 0.4


# --------------------------------------------------------------------------- other formats


def test_benchmark_parquet_holds_the_sample_predictions(sample: SampleManifest,
                                                        fraud: pd.DataFrame,
                                                        tmp_path: Path) -> None:
    bench = generate(tmp_path, rows=ROWS, seed=7, formats="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_manifest.json", "labels.parquet",
                                                          "predictions.parquet"]
    assert bench.bad_rows == {} and bench.n_predictions == {"fraud": ROWS}
    predictions = pq.read_table(bench.files["predictions"]).to_pandas()
    clean = fraud[fraud["fraud_score"].between(0, 1) | fraud["fraud_score"].isna()]
    pd.testing.assert_frame_equal(predictions, clean.drop_duplicates().reset_index(drop=True))
    bench_labels = pq.read_table(bench.files["labels"]).to_pandas()
    assert len(bench_labels) == bench.n_labels
    assert bench_labels["labelled_at"].is_monotonic_increasing
    assert bench_labels["outcome"].dtype == np.int64


def test_benchmark_csv_streams_chunks_in_time_order(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setattr(samples, "_CHUNK_ROWS", 2_500)
    rows = 10_000
    as_csv = generate(tmp_path / "csv", rows=rows, seed=3, formats="csv")
    as_parquet = generate(tmp_path / "parquet", rows=rows, seed=3, formats="parquet")
    assert pq.ParquetFile(as_parquet.files["predictions"]).num_row_groups == 4
    predictions = pd.read_csv(as_csv.files["predictions"])
    assert len(predictions) == rows and predictions["event_id"].is_unique
    assert predictions["scored_at"].str.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").all()
    instants = pd.to_datetime(predictions["scored_at"], format="ISO8601", utc=True)
    assert instants.is_monotonic_increasing
    from_parquet = pq.read_table(as_parquet.files["predictions"]).to_pandas()
    assert (instants.to_numpy() == from_parquet["scored_at"].to_numpy()).all()
    labels = pd.read_csv(as_csv.files["labels"])
    assert len(labels) == as_csv.n_labels == as_parquet.n_labels
    arrived = pd.to_datetime(labels["labelled_at"], format="ISO8601", utc=True)
    assert arrived.is_monotonic_increasing
    parquet_ms = pq.read_table(as_parquet.files["labels"]).column("labelled_at").to_numpy()
    assert np.array_equal(arrived.astype("datetime64[ms, UTC]").astype("int64"), parquet_ms)


def test_without_bad_rows_every_id_is_clean(tmp_path: Path) -> None:
    manifest = generate(tmp_path, rows=10_000, seed=1, bad_rows=False)
    assert manifest.bad_rows == {}
    fraud = pq.read_table(manifest.files["fraud_predictions"]).to_pandas()
    assert len(fraud) == 10_000 and fraud["event_id"].is_unique
    assert fraud["fraud_score"].dropna().between(0, 1).all()
    triage = pd.read_csv(manifest.files["triage_predictions"])
    assert len(triage) == 2_000 and triage["request_id"].is_unique
    labels = pd.read_json(manifest.files["labels"], lines=True, dtype=False)
    assert len(labels) == manifest.n_labels and labels["event_id"].is_unique


def test_a_shorter_period_scales_the_incident_days(tmp_path: Path) -> None:
    manifest = generate(tmp_path, rows=10_000, days=10)
    assert manifest.period_end == START + timedelta(days=10)
    starts = {i.name: i.start for i in manifest.incidents}
    assert starts["segment_feature_drift"] == START + timedelta(days=6)  # day 18 of 30
    assert starts["label_stall"] == START + timedelta(days=9, hours=12)  # day 27 12:00 of 30
    fraud = pq.read_table(manifest.files["fraud_predictions"]).to_pandas()
    assert fraud["scored_at"].max() < pd.Timestamp(START + timedelta(days=10))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"formats": "xlsx"}, "formats must be one of"),
    ({"rows": 0}, "rows must be a positive integer"),
    ({"rows": 100}, "rows must be at least 5000"),
    ({"days": 5}, "days must be at least 10"),
    ({"start": datetime(2026, 10, 1)}, "start must be timezone-aware"),
])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **kwargs)
