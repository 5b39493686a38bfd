"""views.oncall_data gives, field by field, what the separate analysis calls give.

The On-call page reads every figure from this one call (one cube scan on one connection);
each field must equal the function it stands for, called on its own without a cube.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from lossboard.dashboard.analysis import canary, labels, loss, report, saturation, segments, views
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError


def _same(a: object, b: object) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)
    elif hasattr(a, "__dataclass_fields__"):
        _same(asdict(a), asdict(b))
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-12)
    else:
        assert a == b


@pytest.mark.parametrize("days", [2, 7, None])
def test_oncall_data_equals_the_separate_calls(sample_db: Path, days: int | None) -> None:
    with read_connection(sample_db) as con:
        last = con.execute("SELECT max(ts) FROM predictions WHERE model = 'fraud'").fetchone()[0]
        flt = Filter(model="fraud")
        if days is not None:
            flt = replace(flt, start=last - timedelta(days=days), end=last + timedelta(microseconds=1))
        view = views.resolve_view(con, flt)
        data = views.oncall_data(con, view)
        for w in ("1h", "6h"):
            _same(data.rolled[w], loss.rolling(con, view, window=w))
        _same(data.report, report.build_report(con, view, auc=False, include_drift=False,
                                               ece=False))
        # The full report's findings are the page's plus the drift findings it asks for last.
        full = report.build_report(con, view, auc=False)
        drifted = views.oncall_drift_findings(con, view)
        _same([f for f in full["findings"] if f["what"] != "feature_drift"], data.report["findings"])
        _same([f for f in full["findings"] if f["what"] == "feature_drift"], drifted)
        assert data.report["drift"] is None and full["drift"] is not None
        assert data.report["overall"]["ece"] is None and full["overall"]["ece"] is not None
        # ... and everything else in it is the full report's.
        for key in ("by_day", "by_segment", "by_version", "canary", "saturation", "labels"):
            _same(data.report[key], full[key])
        _same(data.excess, segments.excess_loss_all(con, view))
        pair = canary.detect_pair(con, view)
        assert data.canary_pair == pair
        if pair is not None:
            _same(data.canary, canary.compare_versions(con, view, baseline=pair[0], candidate=pair[1]))
        # The window's lag (the report's), all time only for a window without labels.
        window_lag = labels.label_lag(con, view)
        _same(data.lag, window_lag if window_lag.n else views.label_lag_anywhere(con, view))
        assert data.coverage_bucket == ("hour" if days == 2 else "day")
        _same(data.coverage, labels.coverage(con, view, bucket=data.coverage_bucket))
        _same(data.stall, labels.label_stall(con, view))
        _same(data.saturation, saturation.score_saturation(con, view, bucket="hour"))
        assert data.alerts is None  # no config, no alerts
        # The sample's incidents are found in the whole history.
        if days is None:
            whats = {f["what"] for f in data.report["findings"]}
            assert {"loss_regression", "canary_fail", "label_stall"} <= whats, whats
            assert drifted, "the sample's segment drift is found"


def test_a_failing_figure_is_held_not_raised(sample_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise QueryError("broken on purpose")

    from lossboard.dashboard import monitoring_config
    from lossboard.dashboard.analysis import alerts

    monkeypatch.setattr(segments, "excess_loss_all", broken)
    monkeypatch.setattr(alerts, "evaluate", broken)
    with read_connection(sample_db) as con:
        data = views.oncall_data(con, views.resolve_view(con, Filter(model="fraud")),
                                 config=monitoring_config.load())
    assert isinstance(data.excess, QueryError) and isinstance(data.alerts, QueryError)
    with pytest.raises(QueryError, match="broken on purpose"):
        views.figure(data.excess)
    assert views.figure(data.stall) is data.stall


def test_daily_drift_table_is_daily_drift_without_ks(sample_db: Path) -> None:
    """The Debug heatmap's table: daily PSI, status and counts as drift.daily_drift gives
    them, without the per-day KS it does not show."""
    from lossboard.dashboard.analysis import drift

    with read_connection(sample_db) as con:
        view = views.drift_window(views.resolve_view(con, Filter(model="fraud")))
        got = views.daily_drift_table(con, view)
        full = drift.daily_drift(con, view, feature=views._drift_features(con))
        full["feature"] = full["feature"].replace({drift.SCORE: views.SCORE_NAME})
        full = full[full["feature"].isin(set(got["feature"]))].reset_index(drop=True)
        cols = ["day", "feature", "psi", "status", "n_current", "n_reference"]
        pd.testing.assert_frame_equal(got[cols], full[cols])
        assert got["ks_statistic"].isna().all() and not full["ks_statistic"].isna().all()


def test_label_lag_is_the_windows_or_all_time_without_labels(tmp_path: Path) -> None:
    from tests.pages_support import ingest_frame, small_db

    db = small_db(tmp_path, labels="both")  # 2024-03-01 .. 03-02, every row labelled 2 h later
    later = pd.DataFrame({"request_id": [f"x{i}" for i in range(50)],
                          "ts": pd.date_range("2024-03-05", periods=50, freq="10min", tz="UTC")
                          .strftime("%Y-%m-%dT%H:%M:%SZ"), "score": 0.3, "region": "eu",
                          "amount": 10.0, "device": "ios"})
    ingest_frame(db, later, "later.csv", model="fraud", model_version="v1",
                 segments=("region",), features=("amount", "device"))
    with read_connection(str(db)) as con:
        labelled = views.resolve_view(con, Filter(model="fraud", start="2024-03-01", end="2024-03-03"))
        bare = views.resolve_view(con, Filter(model="fraud", start="2024-03-05", end="2024-03-06"))
        window = labels.label_lag(con, labelled)
        assert window.n > 0 and labels.label_lag(con, bare).n == 0
        _same(views.oncall_data(con, labelled).lag, window)
        _same(views.oncall_data(con, bare).lag, views.label_lag_anywhere(con, bare))


def test_oncall_data_alerts_equal_evaluate(sample_db: Path) -> None:
    from lossboard.dashboard import monitoring_config
    from lossboard.dashboard.analysis import alerts

    config = monitoring_config.load()
    with read_connection(sample_db) as con:
        view = views.resolve_view(con, Filter(model="fraud"))
        data = views.oncall_data(con, view, config=config)
        expected = alerts.evaluate(con, config, model="fraud", as_of=view.end)
    assert expected and data.alerts == expected
