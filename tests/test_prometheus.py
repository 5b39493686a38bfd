"""`lossboard metrics`: the exposition parses with prometheus_client's parser, the figures
equal the analysis functions', and segment labels stay bounded."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from lossboard.dashboard import prometheus
from lossboard.dashboard.analysis import loss, slo
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.cli import app, ensure_sample_database
from lossboard.dashboard.monitoring_config import load

SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "sample_data" / "lossboard.toml"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sample") / "lossboard.duckdb"
    ensure_sample_database(db)
    return db


def samples(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_once_prints_a_parsable_exposition(sample_db: Path) -> None:
    result = CliRunner().invoke(app, ["metrics", "--db", str(sample_db), "--config",
                                      str(SAMPLE_CONFIG), "--once", "--window", "24h"])
    assert result.exit_code == 0, result.output
    families = samples(result.stdout)
    for name in ("lossboard_log_loss", "lossboard_labelled_samples", "lossboard_predictions",
                 "lossboard_nonfinite_score_rate", "lossboard_extreme_score_fraction",
                 "lossboard_psi", "lossboard_label_coverage", "lossboard_slo_burn_rate",
                 "lossboard_slo_budget_remaining", "lossboard_slo_sli",
                 "lossboard_as_of_timestamp_seconds"):
        assert families.get(name), name
    burn = {(s.labels["slo"], s.labels["window"]) for s in families["lossboard_slo_burn_rate"]}
    assert ("fraud-eu-log-loss", "1h") in burn and ("fraud-confident-mistakes", "3d") in burn
    features = {s.labels["feature"] for s in families["lossboard_psi"]
                if s.labels["model"] == "fraud" and s.labels["segment"] == "all"}
    assert {"amount", "merchant_category", "__score__"} <= features


def test_figures_equal_the_analysis_functions(sample_db: Path) -> None:
    config = load(SAMPLE_CONFIG)
    fam = samples(prometheus.exposition(sample_db, config, prometheus.MetricsOptions(drift=False)))
    with duckdb.connect(str(sample_db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        at = slo.resolve_as_of(con, "fraud", None)
        flt = Filter(model="fraud", start=at - timedelta(days=1), end=at)
        total = loss.overall(con, flt, auc=False, min_samples=0)
        eu = loss.overall(con, Filter(model="fraud", start=flt.start, end=at,
                                      segments=(("region", "eu"),)), auc=False, min_samples=0)
        status = slo.status(con, config.slos[0], as_of=at)

    def value(name: str, **labels: str) -> float:
        (match,) = [s.value for s in fam[name] if s.labels == labels]
        return match

    assert value("lossboard_log_loss", model="fraud", version="all", segment="all") == \
        pytest.approx(total.log_loss)
    assert value("lossboard_labelled_samples", model="fraud", version="all", segment="all") == total.n
    assert value("lossboard_log_loss", model="fraud", version="all", segment="region=eu") == \
        pytest.approx(eu.log_loss)
    assert value("lossboard_as_of_timestamp_seconds", model="fraud") == at.timestamp()
    remaining = value("lossboard_slo_budget_remaining", slo="fraud-eu-log-loss", model="fraud")
    assert remaining == pytest.approx(status.budget_remaining)


def test_segment_values_are_capped_with_an_other_series(sample_db: Path) -> None:
    config = load(SAMPLE_CONFIG)
    options = prometheus.MetricsOptions(max_segment_values=1, max_versions=1, drift=False)
    fam = samples(prometheus.exposition(sample_db, config, options))
    regions = [s for s in fam["lossboard_predictions"]
               if s.labels["model"] == "fraud" and s.labels["segment"].startswith("region=")]
    # The busiest region plus one __other__ series holding every other prediction.
    assert len(regions) == 2 and regions[1].labels["segment"] == "region=__other__"
    total = [s.value for s in fam["lossboard_predictions"]
             if s.labels == {"model": "fraud", "version": "all", "segment": "all"}][0]
    assert sum(s.value for s in regions) == total
    versions = {s.labels["version"] for s in fam["lossboard_log_loss"]
                if s.labels["model"] == "fraud"}
    assert versions == {"all", "v2"}  # the most recent version only
    loss_eu_other = [s.value for s in fam["lossboard_log_loss"]
                     if s.labels["segment"] == "region=__other__" and s.labels["model"] == "fraud"]
    assert len(loss_eu_other) == 1 and not math.isnan(loss_eu_other[0])


def test_unknown_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["metrics", "--db", str(tmp_path / "none.duckdb"), "--once"])
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.slow
def test_serves_metrics_over_http(sample_db: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossboard.dashboard.cli", "metrics", "--db", str(sample_db),
         "--config", str(SAMPLE_CONFIG), "--port", str(port), "--addr", "127.0.0.1",
         "--no-drift"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, text = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert text is not None, proc.stderr.read().decode() if proc.poll() is not None else ""
        fam = samples(text)
        assert fam["lossboard_log_loss"]
        assert not fam.get("lossboard_psi")  # --no-drift
    finally:
        proc.terminate()
        proc.wait(timeout=10)
