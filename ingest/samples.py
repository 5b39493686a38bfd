"""Seeded sample logs of two production classifiers, with incidents planted at known times.

Why: a monitoring dashboard is only trustworthy if it reveals problems we know are there. This
module writes realistic prediction logs, delayed labels and a business KPI, plants six incidents
in the binary model (drift in one segment, an overconfident canary, a label stall, NaN scores,
hard 0/1 scores, a saturated activation) and returns a manifest saying exactly where they are,
so tests and demos can check that every view finds them.

Column names are deliberately *not* lossboard's own (``scored_at``, ``fraud_score``,
``labelled_at`` in epoch milliseconds, ...): users keep their names and map them.

Everything is a pure function of ``(rows, seed, days, start)``: randomness comes from
``numpy.random.default_rng([seed, stream, chunk])``, files carry no "now" (gzip ``mtime=0``, no
pandas metadata in Parquet), so the same call writes the same bytes with the same library
versions. The binary model's rows are made in chunks of ``_CHUNK_ROWS`` with one generator per
chunk, so the benchmark formats stream 10M rows without holding them, and the sample and
benchmark formats contain the same predictions for the same seed.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

_CHUNK_ROWS = 1_000_000
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_TS_TYPE = pa.timestamp("us", tz="UTC")
_MS_UTC = pa.timestamp("ms", tz="UTC")
_FORMATS = ("sample", "parquet", "csv")
# Score at or above which a transaction goes to manual review; the hard 0/1 incident
# thresholds at it too, as a buggy "decision instead of probability" path would.
_REVIEW_THRESHOLD = 0.2


@dataclass(frozen=True)
class Incident:
    """One planted problem: ``[start, end)`` in UTC; ``end=None`` means still on when logs end."""

    name: str
    model: str
    start: datetime
    end: datetime | None
    description: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleManifest:
    """What :func:`generate` wrote; ``bad_rows`` maps file key -> reason code -> row count.

    ``n_predictions[model]`` and ``n_labels`` count the clean rows (first occurrences, valid
    values), so each file holds exactly those plus the rows counted in ``bad_rows``.
    """

    out_dir: Path
    files: dict[str, Path]
    n_predictions: dict[str, int]
    n_labels: int
    incidents: tuple[Incident, ...]
    bad_rows: dict[str, dict[str, int]]
    seed: int
    period_start: datetime
    period_end: datetime  # exclusive: the logs cover [period_start, period_end)

    def to_json(self) -> str:
        """The manifest as JSON; paths relative to ``out_dir`` so a committed sample can move."""
        doc = {
            "files": {key: path.name for key, path in self.files.items()},
            "n_predictions": self.n_predictions,
            "n_labels": self.n_labels,
            "incidents": [_incident_to_dict(i) for i in self.incidents],
            "bad_rows": self.bad_rows,
            "seed": self.seed,
            "period_start": _iso_z(self.period_start),
            "period_end": _iso_z(self.period_end),
        }
        return json.dumps(doc, indent=2) + "\n"


def read_manifest(out_dir: Path | str) -> SampleManifest:
    """Load ``out_dir/_manifest.json`` written by :func:`generate`."""
    out = Path(out_dir)
    doc = json.loads((out / "_manifest.json").read_text())
    return SampleManifest(
        out_dir=out,
        files={key: out / name for key, name in doc["files"].items()},
        n_predictions=doc["n_predictions"],
        n_labels=doc["n_labels"],
        incidents=tuple(
            Incident(i["name"], i["model"], _parse_iso(i["start"]),
                     None if i["end"] is None else _parse_iso(i["end"]),
                     i["description"], i["details"])
            for i in doc["incidents"]
        ),
        bad_rows=doc["bad_rows"],
        seed=doc["seed"],
        period_start=_parse_iso(doc["period_start"]),
        period_end=_parse_iso(doc["period_end"]),
    )


def _iso_z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _incident_to_dict(incident: Incident) -> dict[str, Any]:
    return {
        "name": incident.name,
        "model": incident.model,
        "start": _iso_z(incident.start),
        "end": None if incident.end is None else _iso_z(incident.end),
        "description": incident.description,
        "details": incident.details,
    }


# --------------------------------------------------------- fraud: the true model and the served one


@dataclass(frozen=True)
class _Categorical:
    names: tuple[str, ...]
    shares: tuple[float, ...]
    logit: tuple[float, ...]  # effect on the true fraud logit

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(len(self.names), size=n, p=self.shares)


_REGION = _Categorical(("eu", "us", "apac", "latam"), (0.35, 0.40, 0.15, 0.10),
                       (-0.1, 0.0, 0.2, 0.4))
_CHANNEL = _Categorical(("web", "app", "pos"), (0.45, 0.40, 0.15), (0.3, -0.2, -0.5))
_MERCHANT = _Categorical(
    ("grocery", "restaurants", "fashion", "electronics", "travel", "gaming", "gift_cards",
     "crypto"),
    (0.25, 0.18, 0.15, 0.12, 0.10, 0.08, 0.07, 0.05),
    (-0.7, -0.5, 0.0, 0.5, 0.3, 0.4, 1.2, 1.0),
)
_DEVICE_OS = ("ios", "android", "web", "other")
_DEVICE_OS_LOGIT = np.array([-0.2, 0.0, 0.2, 0.8])
_DEVICE_SHARES_WEB = (0.05, 0.05, 0.85, 0.05)  # web checkouts mostly come from a browser
_DEVICE_SHARES_OTHER = (0.47, 0.45, 0.02, 0.06)

_INTERCEPT = -3.1  # tuned so that the base fraud rate is ~7%
_AMOUNT_COEF = 0.7  # per unit of log(amount) around its median e^3.5 ~ 33 USD
_AGE_COEF = -0.6
_LOGIT_NOISE = 0.15  # v1's error in logit space: well calibrated, not perfect
_DRIFT_FACTOR = 3.0
_DRIFT_AMOUNT_COEF = -0.8  # card testing: in drifted eu, small amounts become the risky ones
_DRIFT_INTERCEPT_SHIFT = 1.0  # and a fraud ring there: eu fraud rate ~6% -> ~13%
_CANARY_SHARE = 0.25
_CANARY_LOGIT_SCALE = 2.5
_NAN_FRACTION = 0.30
_HARD_FRACTION = 0.20
_STALL_KEEP = 0.02
# Scale of h1's pre-activation: |tanh| > 0.9 iff |z| > 1.472, 2% of N(0, 0.633) before the
# saturation and 40% of N(0, 1.75) after it.
_TANH_SCALE_NORMAL = 0.633
_TANH_SCALE_SATURATED = 1.75


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class _Schedule:
    """Incident boundaries in epoch microseconds; the one source for effects and manifest."""

    start_us: int
    end_us: int
    drift_us: int
    canary_us: int
    tanh_us: int
    stall_us: int
    nan_us: tuple[int, int]
    hard_us: tuple[int, int]
    quiet_us: tuple[int, int]  # where bad rows are planted: no incident there


def _schedule(start: datetime, days: int) -> _Schedule:
    """Incident days are fixed for a 30-day period and scale with ``days`` (hours stay put)."""

    def at(day: int, hour: int = 0) -> int:
        return start_us + (day * days // 30) * _US_PER_DAY + hour * _US_PER_HOUR

    start_us = _epoch_us(start)
    return _Schedule(
        start_us=start_us,
        end_us=start_us + days * _US_PER_DAY,
        drift_us=at(18),
        canary_us=at(20),
        tanh_us=at(22),
        stall_us=at(27, 12),
        nan_us=(at(12, 8), at(12, 10)),
        hard_us=(at(14, 13), at(14, 16)),
        quiet_us=(at(1), at(10)),
    )


def _epoch_us(when: datetime) -> int:
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(epoch_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_us)


def _incidents(s: _Schedule) -> tuple[Incident, ...]:
    t = _from_us
    return (
        Incident("nan_scores", "fraud", t(s.nan_us[0]), t(s.nan_us[1]),
                 "A feature-service timeout made ~30% of fraud_score values NaN.",
                 {"column": "fraud_score", "fraction": _NAN_FRACTION}),
        Incident("hard_zero_one_scores", "fraud", t(s.hard_us[0]), t(s.hard_us[1]),
                 "A fallback path logged decisions instead of probabilities: ~20% of scores "
                 "are exactly 0.0 or 1.0 (score >= 0.2 -> 1.0), some contradicted by the "
                 "label, so unclipped log loss is infinite.",
                 {"column": "fraud_score", "fraction": _HARD_FRACTION,
                  "threshold": _REVIEW_THRESHOLD}),
        Incident("segment_feature_drift", "fraud", t(s.drift_us), None,
                 "In region eu, amount grew x3 and small-amount fraud appeared: the model's "
                 "log loss rises there while the other regions stay flat.",
                 {"segment": {"region": "eu"}, "feature": "amount", "factor": _DRIFT_FACTOR}),
        Incident("overconfident_canary", "fraud", t(s.canary_us), None,
                 "Canary v2 takes ~25% of traffic; its logit is v1's x2.5 (overconfident), so "
                 "its log loss is clearly worse than v1's over the same time range.",
                 {"version": "v2", "baseline_version": "v1", "traffic_share": _CANARY_SHARE,
                  "logit_scale": _CANARY_LOGIT_SCALE}),
        Incident("tanh_saturation", "fraud", t(s.tanh_us), None,
                 "Hidden unit h1 saturates: the share of |h1_tanh| > 0.9 goes from ~2% to ~40%.",
                 {"activation": "h1_tanh", "threshold": 0.9, "fraction_before": 0.02,
                  "fraction_after": 0.40}),
        Incident("label_stall", "fraud", t(s.stall_us), None,
                 "Label delivery for fraud stalls: only ~2% of labels due after this time "
                 "arrive, so recent predictions stay mostly unlabelled.",
                 {"kept_fraction": _STALL_KEEP}),
    )


# --------------------------------------------------------------------------- shared draws


def _timestamps_us(rng: np.random.Generator, n: int, s: _Schedule) -> np.ndarray:
    """Sorted epoch-µs instants with a daily cycle (peak ~15:00 UTC, 4:1) and quieter weekends.

    Counts per minute come from one multinomial draw, so the shape holds at any ``n``.
    """
    minutes = (s.end_us - s.start_us) // 60_000_000
    minute_us = s.start_us + np.arange(minutes, dtype=np.int64) * 60_000_000
    hour = (minute_us % _US_PER_DAY) / _US_PER_HOUR
    weekday = (minute_us // _US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (3, Monday = 0)
    weight = (1 + 0.6 * np.cos(2 * np.pi * (hour - 15) / 24)) * np.where(weekday >= 5, 0.85, 1)
    counts = rng.multinomial(n, weight / weight.sum())
    ts = np.repeat(minute_us, counts) + rng.integers(0, 60_000_000, n)
    ts.sort()
    return ts


def _label_lag_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Lognormal lag, median 8 h, p90 ~1.75 d; the tail past 5 d is folded into [2 d, 5 d]."""
    hours = np.exp(rng.normal(math.log(8.0), 1.3, n))
    folded = rng.uniform(48.0, 120.0, n)
    hours = np.where(hours > 120.0, folded, hours)
    return (hours * _US_PER_HOUR).astype(np.int64)


def _ceil_ms(epoch_us: np.ndarray) -> np.ndarray:
    """Epoch ms rounded up, so a label is never stamped before its prediction."""
    return -((-epoch_us) // 1000)


def _pick(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(codes))


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), 9, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _emails(prefix: str, numbers: np.ndarray) -> pa.Array:
    text = pc.cast(pa.array(numbers, pa.int64()), pa.string())
    return pc.binary_join_element_wise(prefix, text, "@example.com", "")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- fraud (binary)


@dataclass(frozen=True)
class _FraudChunk:
    table: pa.Table
    outcome: np.ndarray  # true label of every row, 0/1
    label_rows: np.ndarray  # global row numbers whose label arrives inside the period
    label_outcome: np.ndarray  # their labels
    labelled_ms: np.ndarray  # and arrival times, epoch ms


def _fraud_chunk(rng: np.random.Generator, ts: np.ndarray, first_row: int,
                 s: _Schedule) -> _FraudChunk:
    """One chunk of the binary model's traffic, its true labels and their arrival times."""
    n = len(ts)
    region = _REGION.draw(rng, n)
    channel = _CHANNEL.draw(rng, n)
    device = np.where(channel == 0, rng.choice(4, n, p=_DEVICE_SHARES_WEB),
                      rng.choice(4, n, p=_DEVICE_SHARES_OTHER))
    merchant = _MERCHANT.draw(rng, n)
    log_amount = rng.normal(3.5, 1.0, n)
    age_days = np.floor(rng.gamma(1.3, 350.0, n)).astype(np.int64)

    drifted = (region == 0) & (ts >= s.drift_us)
    seen_log_amount = log_amount + np.where(drifted, math.log(_DRIFT_FACTOR), 0.0)
    base = (_INTERCEPT + np.take(_REGION.logit, region) + np.take(_CHANNEL.logit, channel)
            + _DEVICE_OS_LOGIT[device] + np.take(_MERCHANT.logit, merchant)
            + _AGE_COEF * (np.log1p(age_days) - 5.4) / 1.1)
    true_logit = base + np.where(drifted,
                                 _DRIFT_INTERCEPT_SHIFT + _DRIFT_AMOUNT_COEF * (log_amount - 3.5),
                                 _AMOUNT_COEF * (log_amount - 3.5))
    outcome = (rng.random(n) < _sigmoid(true_logit)).astype(np.int8)

    model_logit = base + _AMOUNT_COEF * (seen_log_amount - 3.5) + rng.normal(0, _LOGIT_NOISE, n)
    canary = (ts >= s.canary_us) & (rng.random(n) < _CANARY_SHARE)
    score = _sigmoid(np.where(canary, _CANARY_LOGIT_SCALE * model_logit, model_logit))
    in_nan = (ts >= s.nan_us[0]) & (ts < s.nan_us[1]) & (rng.random(n) < _NAN_FRACTION)
    score = np.where(in_nan, np.nan, score)
    in_hard = (ts >= s.hard_us[0]) & (ts < s.hard_us[1]) & (rng.random(n) < _HARD_FRACTION)
    score = np.where(in_hard, (score >= _REVIEW_THRESHOLD).astype(np.float64), score)

    tanh_scale = np.where(ts >= s.tanh_us, _TANH_SCALE_SATURATED, _TANH_SCALE_NORMAL)
    h1 = np.tanh(tanh_scale * (0.6 * (seen_log_amount - 3.5) + 0.8 * rng.standard_normal(n)))

    labelled_us = ts + _label_lag_us(rng, n)
    stalled = (labelled_us >= s.stall_us) & (rng.random(n) >= _STALL_KEEP)
    labelled_ms = _ceil_ms(labelled_us)
    arrived = np.flatnonzero((labelled_ms * 1000 < s.end_us) & ~stalled)

    table = pa.table({
        "event_id": _ids("fr-", first_row + np.arange(n)),
        "scored_at": pa.array(ts, _TS_TYPE),
        "model": _pick(("fraud",), np.zeros(n, np.int8)),
        "model_version": _pick(("v1", "v2"), canary.astype(np.int8)),
        "fraud_score": pa.array(score, pa.float64()),
        "region": _pick(_REGION.names, region),
        "channel": _pick(_CHANNEL.names, channel),
        "amount": pa.array(np.round(np.exp(seen_log_amount), 2)),
        "account_age_days": pa.array(age_days),
        "merchant_category": _pick(_MERCHANT.names, merchant),
        "device_os": _pick(_DEVICE_OS, device),
        "h1_tanh": pa.array(h1),
        "email": _emails("user", rng.integers(0, 250_000, n)),
    })
    return _FraudChunk(table, outcome, first_row + arrived, outcome[arrived],
                       labelled_ms[arrived])


def _fraud_chunks(rows: int, seed: int, s: _Schedule) -> Iterator[_FraudChunk]:
    """The binary model's rows in time order, one generator per chunk (streams at any size)."""
    ts = _timestamps_us(np.random.default_rng([seed, 0]), rows, s)
    for k, lo in enumerate(range(0, rows, _CHUNK_ROWS)):
        chunk_ts = ts[lo:lo + _CHUNK_ROWS]
        yield _fraud_chunk(np.random.default_rng([seed, 1, k]), chunk_ts, lo, s)


# --------------------------------------------------------------------------- triage (3-class)

_TRIAGE_CLASSES = ("low", "medium", "high")
_QUEUES = ("billing", "tech", "sales")
_QUEUE_SHARES = (0.45, 0.40, 0.15)
_QUEUE_LOGIT = np.array([[0.0, 0.4, -0.2], [0.0, 0.1, 0.5], [0.0, -0.2, -0.6]])  # queue x class
_OFFSET_MINUTES = np.array([0, 60, 120, -300, 330, 540])  # UTC, CET, CEST, EST, IST, JST
_OFFSET_SHARES = (0.35, 0.2, 0.15, 0.15, 0.1, 0.05)


def _iso_with_offset(epoch_us: np.ndarray, offset_minutes: np.ndarray) -> pa.Array:
    """'2026-10-03T14:05:11+02:00': local wall time at whole seconds plus its UTC offset."""
    wall = _iso_text((epoch_us + offset_minutes.astype(np.int64) * 60_000_000) // 1_000_000, "s")
    size = np.abs(offset_minutes)
    suffix = np.char.add(np.char.add(np.where(offset_minutes < 0, "-", "+"),
                                     np.char.zfill((size // 60).astype(str), 2)),
                         np.char.add(":", np.char.zfill((size % 60).astype(str), 2)))
    return pc.binary_join_element_wise(wall, pa.array(suffix), "")


def _triage(rows: int, seed: int, s: _Schedule
            ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """The 3-class model's predictions, their epoch-µs times, and the labels that arrive."""
    ts = _timestamps_us(np.random.default_rng([seed, 2]), rows, s)
    ts -= ts % 1_000_000  # the source logs whole seconds
    rng = np.random.default_rng([seed, 3])
    queue = rng.choice(3, size=rows, p=_QUEUE_SHARES)
    log_length = rng.normal(5.5, 0.9, rows)
    x = (log_length - 5.5) / 0.9
    true_logit = np.column_stack([np.zeros(rows), 0.3 + 0.5 * x, -1.2 + 0.9 * x])
    true_logit += _QUEUE_LOGIT[queue]
    true_p = np.exp(true_logit) / np.exp(true_logit).sum(axis=1, keepdims=True)
    outcome = (rng.random(rows)[:, None] > np.cumsum(true_p, axis=1)).sum(axis=1)
    model_logit = true_logit + rng.normal(0, 0.25, (rows, 3))
    p = np.exp(model_logit) / np.exp(model_logit).sum(axis=1, keepdims=True)
    offsets = _OFFSET_MINUTES[rng.choice(len(_OFFSET_MINUTES), size=rows, p=_OFFSET_SHARES)]
    predictions = pd.DataFrame({
        "request_id": _ids("tr-", np.arange(rows)).to_pandas(),
        "timestamp": _iso_with_offset(ts, offsets).to_pandas(),
        "model": "triage",
        "model_version": "m1",
        "p_low": p[:, 0],
        "p_medium": p[:, 1],
        "p_high": 1.0 - p[:, 0] - p[:, 1],  # so each row sums to 1 up to float rounding
        "queue": np.take(_QUEUES, queue),
        "text_length": np.maximum(np.exp(log_length), 5).astype(np.int64),
        "customer_email": _emails("customer", rng.integers(0, 60_000, rows)).to_pandas(),
    })
    labelled_ms = _ceil_ms(ts + _label_lag_us(rng, rows))
    arrived = labelled_ms * 1000 < s.end_us
    labels = pd.DataFrame({
        "event_id": predictions["request_id"][arrived].to_numpy(object),
        "model": "triage",
        "outcome": np.take(_TRIAGE_CLASSES, outcome[arrived]).astype(object),
        "labelled_at": labelled_ms[arrived],
        "predicted_us": ts[arrived],
    })
    return predictions, ts, labels


# --------------------------------------------------------------------------- bad rows


def _bad_count(n: int) -> int:
    """A handful per reason: 5 at the sample's size, fewer for tiny samples."""
    return int(min(5, max(1, n // 8_000)))


def _quiet_rows(rng: np.random.Generator, ts_us: np.ndarray, s: _Schedule, k: int) -> np.ndarray:
    """``k`` distinct random rows from the quiet days (1-10 of 30), shuffled."""
    quiet = np.flatnonzero((ts_us >= s.quiet_us[0]) & (ts_us < s.quiet_us[1]))
    if len(quiet) < k:
        raise ValueError(f"too few rows to plant {k} bad rows on the quiet days; use more rows")
    return rng.choice(quiet, size=k, replace=False)


def _copy(frame: pd.DataFrame, rows: np.ndarray, **overrides: Any) -> pd.DataFrame:
    block = frame.iloc[rows].copy()
    for column, value in overrides.items():
        block[column] = value
    return block


def _with_extra_rows(frame: pd.DataFrame, blocks: list[tuple[pd.DataFrame, np.ndarray]]
                     ) -> pd.DataFrame:
    """Insert blocks of rows; a row with position key ``i + 0.5`` lands right after row ``i``."""
    position = np.concatenate([np.arange(len(frame), dtype=np.float64)]
                              + [pos for _, pos in blocks])
    merged = pd.concat([frame] + [block for block, _ in blocks], ignore_index=True)
    return merged.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)


def _bad_fraud_predictions(frame: pd.DataFrame, rng: np.random.Generator, ts_us: np.ndarray,
                           s: _Schedule) -> tuple[pd.DataFrame, dict[str, int]]:
    k = _bad_count(len(frame))
    src = _quiet_rows(rng, ts_us, s, 2 * k).reshape(2, k)
    fresh_ids = _ids("fr-", len(frame) + np.arange(k)).to_numpy(zero_copy_only=False)
    blocks = [
        (_copy(frame, src[0], event_id=fresh_ids, fraud_score=rng.choice([1.3, -0.2], size=k)),
         src[0] + 0.5),
        (_copy(frame, src[1]), src[1] + 0.5),
    ]
    return _with_extra_rows(frame, blocks), {"score_out_of_range": k, "duplicate": k}


def _bad_triage_predictions(frame: pd.DataFrame, rng: np.random.Generator, ts_us: np.ndarray,
                            s: _Schedule) -> tuple[pd.DataFrame, dict[str, int]]:
    k = _bad_count(len(frame))
    src = _quiet_rows(rng, ts_us, s, 6 * k).reshape(6, k)
    fresh = _ids("tr-", len(frame) + np.arange(3 * k)).to_numpy(zero_copy_only=False)
    fresh = fresh.reshape(3, k)
    swapped = {"p_low": frame["p_high"].to_numpy()[src[4]],
               "p_high": frame["p_low"].to_numpy()[src[4]]}
    blocks = [
        (_copy(frame, src[0], request_id=None), src[0] + 0.5),
        (_copy(frame, src[1], request_id=fresh[0], timestamp=None), src[1] + 0.5),
        (_copy(frame, src[2], request_id=fresh[1], timestamp="not-a-time"), src[2] + 0.5),
        (_copy(frame, src[3], request_id=fresh[2], p_low=1.7), src[3] + 0.5),
        # A re-scored request logged again later in the file, not next to the original.
        (_copy(frame, src[4], **swapped), np.minimum(src[4] + 97.5, len(frame) - 0.5)),
        (_copy(frame, src[5]), src[5] + 0.5),
    ]
    reasons = ("missing_request_id", "missing_ts", "bad_ts", "score_out_of_range",
               "conflicting_duplicate", "duplicate")
    return _with_extra_rows(frame, blocks), dict.fromkeys(reasons, k)


def _bad_labels(labels: pd.DataFrame, rng: np.random.Generator,
                s: _Schedule) -> tuple[pd.DataFrame, dict[str, int]]:
    """Garble, contradict, strip and repeat a few fraud labels of quiet days; sort by arrival.

    ``bad_label`` garbles a label in place (that event then has no valid label); the others
    are extra lines.
    """
    k = _bad_count(len(labels))
    fraud_us = np.where(labels["model"] == "fraud", labels["predicted_us"], s.end_us)
    src = _quiet_rows(rng, fraud_us, s, 4 * k).reshape(4, k)
    labels = labels.copy()
    labels.loc[src[0], "outcome"] = 7
    later = labels["labelled_at"].to_numpy()[src[1]] + rng.integers(3_600_000, 48 * 3_600_000, k)
    flipped = 1 - labels["outcome"].to_numpy()[src[1]].astype(np.int64)
    extra = [
        _copy(labels, src[1], outcome=flipped.astype(object), labelled_at=later),
        _copy(labels, src[2], event_id=None),
        _copy(labels, src[3]),
    ]
    merged = pd.concat([labels, *extra], ignore_index=True)
    merged = merged.iloc[np.argsort(merged["labelled_at"].to_numpy(), kind="stable")]
    reasons = ("bad_label", "conflicting_label", "missing_request_id", "duplicate")
    return merged.reset_index(drop=True), dict.fromkeys(reasons, k)


# --------------------------------------------------------------------------- writers


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Fixed options and no pandas metadata: the bytes depend only on the data and pyarrow.
    return pq.ParquetWriter(path, schema.remove_metadata(), compression="zstd",
                            compression_level=3, version="2.6", use_dictionary=True)


@contextmanager
def _gzip_file(path: Path) -> Iterator[gzip.GzipFile]:
    # mtime=0 and no file name in the header: the same bytes on every run.
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                               compresslevel=6) as handle:
        yield handle


def _arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    # Float columns go in with from_pandas=False: pandas' conversion would turn NaN into null,
    # and the NaN-score incident must reach the files as real NaN (a null score is a
    # different failure: a missing value, which the ingest quarantines).
    arrays = [pa.array(frame[c].to_numpy(), from_pandas=False) if frame[c].dtype.kind == "f"
              else pa.array(frame[c], from_pandas=True) for c in frame.columns]
    table = pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])
    return table.cast(schema) if schema is not None else table


def _iso_text(epoch: np.ndarray, unit: str) -> pa.Array:
    """'2026-10-01T00:00:09.050482' from epoch integers (arrow formats naive times fast)."""
    text = pc.cast(pa.array(epoch, pa.timestamp(unit)), pa.string())
    return pc.binary_replace_slice(text, 10, 11, "T")


def _for_csv(table: pa.Table) -> pa.Table:
    """Timestamp columns as ISO-8601 UTC strings ending in 'Z' (plain CSV has no types)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            epoch = pc.cast(table[f.name], pa.int64()).to_numpy()
            iso = pc.binary_join_element_wise(_iso_text(epoch, f.type.unit), "Z", "")
            table = table.set_column(i, f.name, iso)
    return table


class _TableSink:
    """Appends arrow tables to one Parquet or plain CSV file, so big outputs stream."""

    def __init__(self, path: Path, fmt: str) -> None:
        self._path, self._fmt = path, fmt
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None

    def __enter__(self) -> _TableSink:
        return self

    def write(self, table: pa.Table) -> None:
        if self._fmt == "csv":
            table = _for_csv(table)
        if self._writer is None:
            self._writer = (_parquet_writer(self._path, table.schema) if self._fmt == "parquet"
                            else pa_csv.CSVWriter(self._path, table.schema))
        self._writer.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()


# --------------------------------------------------------------------------- the KPI


def _business_kpi(fraud_us: np.ndarray, fraud: pd.DataFrame, outcome: np.ndarray,
                  s: _Schedule, rng: np.random.Generator) -> pd.DataFrame:
    """Daily fraud losses (amount of fraud the model let through) and manual reviews.

    Losses are what the model's mistakes cost, so they rise with its loss: missed fraud is
    fraud scored below the review threshold, a NaN score counts as missed (no review).
    """
    day = (fraud_us - s.start_us) // _US_PER_DAY
    n_days = (s.end_us - s.start_us) // _US_PER_DAY
    score = fraud["fraud_score"].to_numpy()
    reviewed = score >= _REVIEW_THRESHOLD
    missed = (outcome == 1) & ~reviewed
    losses = np.bincount(day, weights=fraud["amount"].to_numpy() * missed, minlength=n_days)
    reviews = np.bincount(day, weights=reviewed, minlength=n_days)
    noise = rng.lognormal(0.0, 0.05, (2, n_days))  # other business causes
    dates = np.datetime_as_string(np.datetime64(s.start_us, "us").astype("datetime64[D]")
                                  + np.arange(n_days), unit="D")
    return pd.DataFrame({
        "date": np.tile(dates, 2),
        "kpi": ["fraud_losses_usd"] * n_days + ["manual_reviews"] * n_days,
        "value": np.concatenate([np.round(losses * noise[0], 2), np.round(reviews * noise[1])]),
    })


# --------------------------------------------------------------------------- entry point


def generate(out_dir: Path | str, rows: int = 200_000, seed: int = 7, days: int = 30,
             start: datetime = datetime(2026, 10, 1, tzinfo=UTC), formats: str = "sample",
             bad_rows: bool = True) -> SampleManifest:
    """Write seeded sample logs with known incidents into ``out_dir`` and return the manifest.

    ``rows`` is the number of clean predictions of the binary model ``fraud``; the 3-class model
    ``triage`` gets ``rows // 5``. ``formats="sample"`` writes the four demo files (see
    sample_data/README.md) with a few planted bad rows; ``"parquet"`` / ``"csv"`` write only the
    binary model's ``predictions`` and ``labels`` for benchmarks, streamed in chunks of 1M rows
    so that memory stays flat. ``_manifest.json`` is written in every case.

    >>> m = generate(tmp, rows=20_000)                          # doctest: +SKIP
    >>> [i.name for i in m.incidents][:2]                        # doctest: +SKIP
    ['nan_scores', 'hard_zero_one_scores']
    """
    if formats not in _FORMATS:
        raise ValueError(f"formats must be one of {_FORMATS}, got {formats!r}")
    if not isinstance(rows, int | np.integer) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    if formats == "sample" and rows < 5_000:
        raise ValueError(f"rows must be at least 5000 for formats='sample', got {rows}")
    if days < 10:
        raise ValueError(f"days must be at least 10 so every incident fits, got {days}")
    if start.tzinfo is None:
        raise ValueError(f"start must be timezone-aware (e.g. tzinfo=UTC), got {start!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = _schedule(start, days)
    if formats == "sample":
        manifest = _generate_sample(out, rows, seed, s, bad_rows)
    else:
        manifest = _generate_benchmark(out, rows, seed, s, formats)
    (out / "_manifest.json").write_text(manifest.to_json())
    return manifest


def _generate_sample(out: Path, rows: int, seed: int, s: _Schedule,
                     bad_rows: bool) -> SampleManifest:
    chunks = list(_fraud_chunks(rows, seed, s))
    fraud_table = pa.concat_tables([c.table for c in chunks])
    fraud_us = pc.cast(fraud_table["scored_at"], pa.int64()).to_numpy()
    outcome = np.concatenate([c.outcome for c in chunks])
    label_rows = np.concatenate([c.label_rows for c in chunks])
    fraud = fraud_table.to_pandas()
    fraud_labels = pd.DataFrame({
        "event_id": fraud["event_id"].to_numpy(object)[label_rows],
        "model": "fraud",
        "outcome": np.concatenate([c.label_outcome for c in chunks]).astype(object),
        "labelled_at": np.concatenate([c.labelled_ms for c in chunks]),
        "predicted_us": fraud_us[label_rows],
    })
    triage, triage_us, triage_labels = _triage(rows // 5, seed, s)
    kpi = _business_kpi(fraud_us, fraud, outcome, s, np.random.default_rng([seed, 5]))

    labels = pd.concat([fraud_labels, triage_labels], ignore_index=True)
    labels = labels.iloc[np.lexsort((labels["event_id"], labels["labelled_at"]))]
    labels = labels.reset_index(drop=True)
    n_labels = len(labels)
    bad: dict[str, dict[str, int]] = {}
    if bad_rows:
        rng = np.random.default_rng([seed, 4])
        fraud, bad["fraud_predictions"] = _bad_fraud_predictions(fraud, rng, fraud_us, s)
        triage, bad["triage_predictions"] = _bad_triage_predictions(triage, rng, triage_us, s)
        labels, bad["labels"] = _bad_labels(labels, rng, s)
        n_labels -= bad["labels"]["bad_label"]

    files = {
        "fraud_predictions": out / "fraud_predictions.parquet",
        "triage_predictions": out / "triage_predictions.csv.gz",
        "labels": out / "labels.jsonl.gz",
        "business_kpi": out / "business_kpi.csv",
    }
    with _parquet_writer(files["fraud_predictions"], fraud_table.schema) as writer:
        writer.write_table(_arrow(fraud, fraud_table.schema), row_group_size=_CHUNK_ROWS)
    with _gzip_file(files["triage_predictions"]) as handle:
        pa_csv.write_csv(_arrow(triage), handle)  # strings quoted; nulls as empty, unquoted
    with _gzip_file(files["labels"]) as handle:
        labels = labels.drop(columns="predicted_us")
        handle.write(labels.to_json(orient="records", lines=True).encode())
    pa_csv.write_csv(_arrow(kpi), files["business_kpi"])
    return _manifest(out, files, {"fraud": rows, "triage": rows // 5}, n_labels, s, bad, seed)


def _generate_benchmark(out: Path, rows: int, seed: int, s: _Schedule,
                        fmt: str) -> SampleManifest:
    """Stream predictions chunk by chunk, then labels sorted by arrival from compact arrays."""
    files = {"predictions": out / f"predictions.{fmt}", "labels": out / f"labels.{fmt}"}
    label_row, label_ms, label_y = [], [], []
    with _TableSink(files["predictions"], fmt) as sink:
        for chunk in _fraud_chunks(rows, seed, s):
            sink.write(chunk.table)
            label_row.append(chunk.label_rows)
            label_ms.append(chunk.labelled_ms)
            label_y.append(chunk.label_outcome)
    row, ms, y = np.concatenate(label_row), np.concatenate(label_ms), np.concatenate(label_y)
    order = np.lexsort((row, ms))
    with _TableSink(files["labels"], fmt) as sink:
        for lo in range(0, len(order), _CHUNK_ROWS):
            part = order[lo:lo + _CHUNK_ROWS]
            sink.write(pa.table({
                "event_id": _ids("fr-", row[part]),
                "model": _pick(("fraud",), np.zeros(len(part), np.int8)),
                "outcome": pa.array(y[part].astype(np.int64)),
                # epoch ms as in the sample; CSV gets ISO strings through _for_csv
                "labelled_at": pa.array(ms[part], pa.int64() if fmt == "parquet" else _MS_UTC),
            }))
    return _manifest(out, files, {"fraud": rows}, len(order), s, {}, seed)


def _manifest(out: Path, files: dict[str, Path], n_predictions: dict[str, int], n_labels: int,
              s: _Schedule, bad: dict[str, dict[str, int]], seed: int) -> SampleManifest:
    return SampleManifest(out_dir=out, files=files, n_predictions=n_predictions,
                          n_labels=int(n_labels), incidents=_incidents(s), bad_rows=bad,
                          seed=seed, period_start=_from_us(s.start_us),
                          period_end=_from_us(s.end_us))
