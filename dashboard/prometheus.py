"""``lossboard metrics``: the current figures in the Prometheus exposition format.

A custom collector (:class:`LossboardCollector`) on a fresh ``CollectorRegistry`` computes
every figure when scraped: it opens the database read-only for the moment of the scrape
(lossboard.db.read_connection, so an ingest is never blocked for long) and calls the analysis
functions. Nothing is kept between scrapes. docs/slo-alerts.md, "Prometheus", lists the
metrics; in short, over the window ``[as_of - window, as_of)`` with as-of the 5-minute grid
point after the newest prediction:

* ``lossboard_log_loss``, ``lossboard_labelled_samples``, ``lossboard_predictions``
  {model, version, segment}: overall (``version="all", segment="all"``), per version, per
  segment value (``segment="region=eu"``);
* ``lossboard_nonfinite_score_rate``, ``lossboard_extreme_score_fraction`` {model, version};
* ``lossboard_psi`` {model, feature, segment}: each feature and the score (``__score__``)
  against the drift rule's reference window (default: the 7 days before the window);
* ``lossboard_label_coverage`` {model}: labelled share of the window's predictions (recent
  predictions may not have their labels yet);
* ``lossboard_slo_burn_rate`` {slo, model, window}, ``lossboard_slo_budget_remaining``,
  ``lossboard_slo_sli`` {slo, model}; ``lossboard_as_of_timestamp_seconds``.

Bounded cardinality: at most ``max_versions`` versions per model (the most recent), and per
segment column the ``max_segment_values`` busiest values; the rest are summed into one
``segment="<column>=__other__"`` series. So a model has at most ``1 + max_versions +
columns · (max_segment_values + 1)`` loss series, whatever the data holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lossboard.dashboard.analysis import alerts, base, canary, drift, labels, loss, saturation, slo
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.monitoring_config import MonitoringConfig, format_minutes
from lossboard.db import read_connection

OTHER = "__other__"
ALL = "all"


@dataclass(frozen=True)
class MetricsOptions:
    """What the collector computes: ``window_minutes`` (default 24 h), ``max_versions``,
    ``max_segment_values`` (per segment column), ``drift`` (PSI is the slowest part)."""

    window_minutes: int = 24 * 60
    max_versions: int = 10
    max_segment_values: int = 10
    drift: bool = True


def _num(value: object) -> float:
    """A figure for a gauge: None / NA become NaN (Prometheus' "no value")."""
    if value is None or value is pd.NA:
        return math.nan
    value = float(value)
    return value


class LossboardCollector(Collector):
    """Computes lossboard's gauges from ``db_path`` on every scrape."""

    def __init__(self, db_path: str | Path, config: MonitoringConfig,
                 options: MetricsOptions = MetricsOptions()) -> None:
        self.db_path = Path(db_path)
        self.config = config
        self.options = options

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with read_connection(self.db_path) as con:
            yield from self._collect(con)

    # ------------------------------------------------------------------ families
    def _collect(self, con: duckdb.DuckDBPyConnection) -> Iterator[GaugeMetricFamily]:
        window = format_minutes(self.options.window_minutes)
        ml = ["model", "version", "segment"]
        fam = {
            "loss": GaugeMetricFamily("lossboard_log_loss", f"Mean clipped log loss (natural "
                                      f"log, weighted) of labelled predictions over the last "
                                      f"{window}", labels=ml),
            "n": GaugeMetricFamily("lossboard_labelled_samples", "Labelled predictions with a "
                                   f"finite score over the last {window}", labels=ml),
            "preds": GaugeMetricFamily("lossboard_predictions", f"Predictions over the last "
                                       f"{window}", labels=ml),
            "nan": GaugeMetricFamily("lossboard_nonfinite_score_rate", "Share of NaN / inf "
                                     f"scores over the last {window}", labels=["model", "version"]),
            "extreme": GaugeMetricFamily("lossboard_extreme_score_fraction", "Share of finite "
                                         f"scores < 0.01 or > 0.99 over the last {window}",
                                         labels=["model", "version"]),
            "psi": GaugeMetricFamily("lossboard_psi", f"PSI over the last {window} vs the "
                                     "reference window", labels=["model", "feature", "segment"]),
            "coverage": GaugeMetricFamily("lossboard_label_coverage", "Labelled share of the "
                                          f"predictions of the last {window}", labels=["model"]),
            "burn": GaugeMetricFamily("lossboard_slo_burn_rate", "Error-budget burn rate "
                                      "(1 = the budget lasts exactly the SLO period)",
                                      labels=["slo", "model", "window"]),
            "remaining": GaugeMetricFamily("lossboard_slo_budget_remaining", "Share of the "
                                           "error budget left over the SLO period",
                                           labels=["slo", "model"]),
            "sli": GaugeMetricFamily("lossboard_slo_sli", "Share of good events over the SLO "
                                     "period", labels=["slo", "model"]),
            "as_of": GaugeMetricFamily("lossboard_as_of_timestamp_seconds", "The time the "
                                       "figures are computed at (after the newest prediction)",
                                       labels=["model"]),
        }
        models = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
        for model in models:
            if con.execute("SELECT count(*) FROM predictions WHERE model = ?",
                           [model]).fetchone()[0] == 0:
                continue
            at = slo.resolve_as_of(con, model, None)
            fam["as_of"].add_metric([model], at.timestamp())
            flt = Filter(model=model, start=at - timedelta(minutes=self.options.window_minutes),
                         end=at)
            self._loss(con, flt, fam)
            self._scores(con, flt, fam)
            if self.options.drift:
                self._drift(con, flt, fam)
            cov = labels.coverage(con, flt, bucket="day", min_samples=0)
            total = int(cov["n_predictions"].sum())
            fam["coverage"].add_metric([model], cov["n_labelled"].sum() / total if total
                                       else math.nan)
            for objective in self.config.slos:
                if objective.model == model:
                    status = slo.status(con, objective, as_of=at)
                    fam["remaining"].add_metric([objective.name, model],
                                                _num(status.budget_remaining))
                    fam["sli"].add_metric([objective.name, model], _num(status.sli))
                    for rate in status.burn_rates:
                        fam["burn"].add_metric([objective.name, model,
                                                format_minutes(rate.window_minutes)],
                                               _num(rate.burn_rate))
        yield from fam.values()

    def _loss(self, con: duckdb.DuckDBPyConnection, flt: Filter,
              fam: dict[str, GaugeMetricFamily]) -> None:
        model = flt.model
        total = loss.overall(con, flt, auc=False, min_samples=0)
        self._add_loss(fam, [model, ALL, ALL], total.log_loss, total.n, total.n_predictions)
        versions = loss.by_version(con, flt, auc=False, min_samples=0)
        for row in versions.tail(self.options.max_versions).itertuples():
            self._add_loss(fam, [model, str(row.model_version), ALL], row.log_loss, row.n,
                           row.n_predictions)
        for column, _ in base.columns_with_role(con, "segment"):
            frame = loss.by_segment(con, flt, column, auc=False, min_samples=0)
            # Predictions without a value (a model that does not log the column) are left out.
            frame = frame[(frame["n_predictions"] > 0) & frame["value"].notna()]
            if frame.empty:
                continue
            frame = frame.sort_values(["n_predictions", "value"], ascending=[False, True])
            keep = frame.head(self.options.max_segment_values)
            for row in keep.itertuples():
                self._add_loss(fam, [model, ALL, f"{column}={row.value}"], row.log_loss, row.n,
                               row.n_predictions)
            rest = frame.iloc[self.options.max_segment_values:]
            if not rest.empty:
                sw = rest["weight_sum"].astype(float)
                mean = ((rest["log_loss"].astype(float).fillna(0) * sw).sum() / sw.sum()
                        if sw.sum() > 0 else None)
                self._add_loss(fam, [model, ALL, f"{column}={OTHER}"], mean,
                               int(rest["n"].sum()), int(rest["n_predictions"].sum()))

    @staticmethod
    def _add_loss(fam: dict[str, GaugeMetricFamily], labels_: list[str], log_loss: object,
                  n: object, n_predictions: object) -> None:
        fam["loss"].add_metric(labels_, _num(log_loss))
        fam["n"].add_metric(labels_, _num(n))
        fam["preds"].add_metric(labels_, _num(n_predictions))

    def _scores(self, con: duckdb.DuckDBPyConnection, flt: Filter,
                fam: dict[str, GaugeMetricFamily]) -> None:
        model = flt.model
        spans = [s[0] for s in canary.version_spans(con, flt)][-self.options.max_versions:]
        for version, sub in [(ALL, flt)] + [(v, Filter(model=model, start=flt.start, end=flt.end,
                                                       versions=(v,))) for v in spans]:
            sat = saturation.score_saturation(con, sub, bucket="day", min_samples=0).overall
            fam["nan"].add_metric([model, version], _num(sat.nonfinite_rate))
            fam["extreme"].add_metric([model, version], _num(sat.frac_saturated))

    def _drift(self, con: duckdb.DuckDBPyConnection, flt: Filter,
               fam: dict[str, GaugeMetricFamily]) -> None:
        rule = self.config.rule("drift")
        if rule.reference_start is not None:
            ref = (rule.reference_start, min(rule.reference_end, flt.end))
        else:
            ref = (flt.start - timedelta(days=7), flt.start)
        if ref[0] >= ref[1]:
            return
        pairs = alerts.top_segment_values(con, flt, self.config.segment_columns,
                                          self.options.max_segment_values)
        segments: list[tuple[tuple[str, str], ...]] = [()] + [(pair,) for pair in pairs]
        for segment in segments:
            sub = Filter(model=flt.model, start=flt.start, end=flt.end, segments=segment,
                         reference_start=ref[0], reference_end=ref[1])
            frame = drift.feature_drift(con, sub, features=rule.features or None)
            seg = ",".join(f"{c}={v}" for c, v in segment) or ALL
            for row in frame.itertuples():
                fam["psi"].add_metric([flt.model, str(row.feature), seg], _num(row.psi))
            score = drift.score_drift(con, sub)
            fam["psi"].add_metric([flt.model, score.feature, seg], _num(score.psi))


def registry_for(db_path: str | Path, config: MonitoringConfig,
                 options: MetricsOptions = MetricsOptions()) -> CollectorRegistry:
    """A fresh registry holding only lossboard's collector (no process / platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LossboardCollector(db_path, config, options))
    return registry


def exposition(db_path: str | Path, config: MonitoringConfig,
               options: MetricsOptions = MetricsOptions()) -> str:
    """One scrape's worth of text (``lossboard metrics --once``)."""
    return generate_latest(registry_for(db_path, config, options)).decode()


def serve(db_path: str | Path, config: MonitoringConfig, port: int, addr: str = "0.0.0.0",
          options: MetricsOptions = MetricsOptions()) -> None:
    """Serve ``/metrics`` on ``addr:port`` until interrupted; figures computed per scrape."""
    start_http_server(port, addr=addr, registry=registry_for(db_path, config, options))
    while True:
        time.sleep(3600)
