"""dashboard/analysis/views.py: the windows the On-call and Debug pages look at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lossboard.dashboard.analysis import drift, views
from lossboard.dashboard.analysis.filters import Filter
from lossboard.db import read_connection
from lossboard.errors import QueryError

T = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
VIEW = Filter(model="fraud", start=T("2026-10-01T00:00"), end=T("2026-10-31T00:00"),
              reference_start=T("2026-10-01T00:00"), reference_end=T("2026-10-08T00:00"))


@pytest.mark.parametrize("finding, start, end", [
    # a 2-hour incident opens 6 hours from its start
    ({"since": "2026-10-13T08:00:00Z", "until": "2026-10-13T10:00:00Z"}, "2026-10-13T08:00", "2026-10-13T14:00"),
    # an ongoing one runs to the end of the view
    ({"since": "2026-10-19T00:00:00Z", "until": None}, "2026-10-19T00:00", "2026-10-31T00:00"),
    # a start before the view is clamped to it; no start keeps the view's range
    ({"since": "2026-09-20T00:00:00Z"}, "2026-10-01T00:00", "2026-10-31T00:00"),
    ({}, "2026-10-01T00:00", "2026-10-31T00:00"),
    # 6 hours past the end of the view are cut at its end
    ({"since": "2026-10-30T22:00:00Z", "until": "2026-10-30T23:00:00Z"}, "2026-10-30T22:00", "2026-10-31T00:00"),
])
def test_finding_filter_time_range(finding: dict, start: str, end: str) -> None:
    flt = views.finding_filter(VIEW, finding)
    assert (flt.start, flt.end) == (T(start), T(end))
    assert (flt.reference_start, flt.reference_end) == (VIEW.reference_start, VIEW.reference_end)


def test_finding_filter_where_and_reference_version() -> None:
    flt = views.finding_filter(VIEW, {"where": {"segment": {"region": "eu"}, "model_version": "v2"}},
                               reference_version="v1")
    assert flt.segments == (("region", "eu"),) and flt.versions == ("v2",)
    assert flt.reference().versions == ("v1",)


def test_drift_window_starts_after_the_reference() -> None:
    assert views.drift_window(VIEW).start == VIEW.reference_end
    later = Filter(model="fraud", start=T("2026-10-19T00:00"), end=T("2026-10-31T00:00"),
                   reference_start=VIEW.reference_start, reference_end=VIEW.reference_end)
    assert views.drift_window(later) == later


def test_drift_feature_names() -> None:
    assert views.drift_feature("score") == drift.SCORE
    assert views.drift_feature("amount") == "amount"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lossboard.dashboard.cli import ensure_sample_database

    db = tmp_path_factory.mktemp("views") / "sample.duckdb"
    ensure_sample_database(db)
    return db


def test_resolve_view_defaults_and_empty_reference(sample_db: Path) -> None:
    with read_connection(str(sample_db)) as con:
        view = views.resolve_view(con, Filter())
        assert view.model == "fraud"  # two models, none chosen: the first by name
        assert view.reference_end - view.reference_start == timedelta(days=7)
        # The previous 30 days before the data hold nothing: the default reference is used.
        empty_ref = Filter(model="fraud", start=VIEW.start, end=VIEW.end,
                           reference_start=T("2026-09-01T00:00"), reference_end=T("2026-10-01T00:00"))
        assert views.reference_rows(con, empty_ref) == 0
        fixed = views.resolve_view(con, empty_ref)
        assert views.reference_rows(con, fixed) > 0
        assert (fixed.start, fixed.end) == (VIEW.start, VIEW.end)
        table = views.drift_table(con, views.drift_window(fixed))
        assert "score" in set(table["feature"]) and "text_length" not in set(table["feature"])
        with pytest.raises(QueryError):
            views.resolve_view(con, Filter(model="no_such_model"))


@pytest.mark.parametrize("days", [5, None])
def test_drift_tab_equals_the_three_calls(sample_db: Path, days: int | None) -> None:
    # The Debug drift tab's one pass gives what drift_table, daily_drift_table and
    # distribution give one by one: the same rows, the KS included, to the last digit.
    import pandas as pd

    with read_connection(sample_db) as con:
        view = views.resolve_view(con, Filter(model="fraud"))
        if days is not None:
            view = views.resolve_view(con, Filter(model="fraud", start=view.end - timedelta(days=days),
                                                  end=view.end))
        current = views.drift_window(view)
        tab = views.drift_tab(con, current)
        pd.testing.assert_frame_equal(tab.table, views.drift_table(con, current))
        pd.testing.assert_frame_equal(tab.daily, views.daily_drift_table(con, current))
        assert list(tab.distributions) == tab.table["feature"].tolist()
        assert "score" in tab.distributions and tab.table["ks_statistic"].notna().any()
        for name, frame in tab.distributions.items():
            expected = drift.distribution(con, current, views.drift_feature(name))
            pd.testing.assert_frame_equal(frame, expected)
            assert frame.attrs == expected.attrs


def test_drift_overview_with_categories_and_missing_values() -> None:
    import pandas as pd

    from .test_drift_by_day import FEATURES, FLT, spread_db

    con = spread_db(8, 1500, 2500, shift=0.6, fine_nan=0.1)
    seen = drift.drift_overview(con, FLT, features=FEATURES)
    pd.testing.assert_frame_equal(seen.table, drift.feature_drift(con, FLT, features=FEATURES))
    pd.testing.assert_frame_equal(seen.daily, drift.daily_drift(con, FLT, feature=FEATURES, ks=False))
    for feature in FEATURES:
        pd.testing.assert_frame_equal(seen.distributions[feature],
                                      drift.distribution(con, FLT, feature))
