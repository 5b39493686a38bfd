"""Chart builders of the On-call and Debug pages (dashboard/charts.py): trace names, the
low-confidence trace when (and only when) a point is flagged, axis titles with units, hover
with n, and the "since when" marks. Frames are small hand-made ones shaped like the analysis
functions' results (their columns are documented there)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from lossboard.dashboard import charts
from lossboard.dashboard.charts import LOW_CONFIDENCE_NAME

T0 = pd.Timestamp("2026-10-01", tz="UTC")


def names(fig) -> list[str]:
    return [t.name for t in fig.data]


def rolling_frame(low: list[bool]) -> pd.DataFrame:
    k = len(low)
    return pd.DataFrame({"window_end": [T0 + pd.Timedelta(hours=h + 1) for h in range(k)],
                         "log_loss": [0.2 + 0.01 * h for h in range(k)],
                         "log_loss_ci_low": [0.15] * k, "log_loss_ci_high": [0.3] * k,
                         "n": [500 if lo else 1500 for lo in low], "n_predictions": [1600] * k,
                         "low_confidence": low})


@pytest.mark.parametrize("low", [[False, False, False], [False, True, False]])
def test_rolling_loss_low_confidence_trace_only_when_flagged(low: list[bool]) -> None:
    fig = charts.rolling_loss_figure({"1h": rolling_frame(low), "6h": rolling_frame([False] * 3)},
                                     marks=[(T0 + pd.Timedelta(hours=2), "NaN / inf scores")])
    assert ("log loss, 1h window" in names(fig)) and ("log loss, 6h window" in names(fig))
    assert (LOW_CONFIDENCE_NAME in names(fig)) == any(low)
    if any(low):
        trace = next(t for t in fig.data if t.name == LOW_CONFIDENCE_NAME)
        assert trace.marker.symbol == "circle-open" and list(trace.customdata) == [500]
        # The flagged point is left out of the line, so it is drawn only hollow.
        line = next(t for t in fig.data if t.name == "log loss, 1h window")
        assert line.y[1] is None
    assert fig.layout.yaxis.title.text == "log loss (nats)"
    assert fig.layout.xaxis2.title.text == "window end (UTC)"
    assert "n = %{customdata:,}" in next(t for t in fig.data if t.name == "log loss, 6h window").hovertemplate
    assert [a.text for a in fig.layout.annotations] == ["NaN / inf scores"]
    assert len(fig.layout.shapes) == 1


def test_score_counters_markers_at_incident_hours() -> None:
    by_hour = pd.DataFrame({"bucket_start": [T0 + pd.Timedelta(hours=h) for h in range(3)],
                            "n": [100, 100, 100], "n_nan": [0, 30, 0], "n_posinf": [0, 1, 0],
                            "n_neginf": [0, 0, 0], "n_exact_0": [0, 0, 2], "n_exact_1": [0, 0, 3],
                            "n_low": [1, 1, 4], "n_high": [2, 2, 4]})
    fig = charts.score_counters_figure(by_hour)
    nonfinite = next(t for t in fig.data if t.name == "NaN / inf scores")
    assert list(nonfinite.y) == [31] and list(nonfinite.customdata) == [100]
    exact = next(t for t in fig.data if t.name == "scores of exactly 0 or 1")
    assert list(exact.y) == [5]
    extreme = next(t for t in fig.data if t.name.startswith("other extreme"))
    assert list(extreme.y) == [3, 3, 3]  # n_low + n_high minus the exact 0 / 1 among them
    assert fig.layout.yaxis.title.text == "scores per hour"


def test_excess_loss_colours_and_low_confidence() -> None:
    frame = pd.DataFrame({"column": ["region", "region", "channel"], "value": ["eu", "us", "web"],
                          "n_labelled": [5000, 5000, 40], "log_loss": [0.4, 0.2, 0.5],
                          "log_loss_rest": [0.2, 0.4, 0.3], "excess_loss": [0.2, -0.2, 0.2],
                          "p_value": [1e-9, 1e-9, 0.3], "significant": [True, True, False],
                          "low_confidence": [False, False, True]})
    fig = charts.excess_loss_figure(frame)
    assert names(fig) == ["significant excess loss", "not significant", LOW_CONFIDENCE_NAME]
    assert fig.layout.xaxis.title.text == "excess log loss vs the rest of the window (nats)"


def test_canary_low_side_is_hollow() -> None:
    result = SimpleNamespace(baseline="v1", candidate="v2", log_loss_baseline=0.3,
                             log_loss_candidate=0.5, n_baseline=30_000, n_candidate=200,
                             min_samples=1000)
    fig = charts.canary_figure(result)
    assert names(fig) == ["baseline v1", LOW_CONFIDENCE_NAME]
    assert "nats" in fig.layout.xaxis.title.text


def test_coverage_young_buckets_apart() -> None:
    cov = pd.DataFrame({"bucket_start": [T0 + pd.Timedelta(days=d) for d in range(3)],
                        "n_predictions": [2000, 2000, 50], "coverage": [0.95, 0.4, 0.1],
                        "n_lag": [1900, 800, 5], "lag_p90_hours": [30.0, 20.0, 5.0],
                        "mature": [True, False, True], "low_confidence": [False, False, True]})
    fig = charts.coverage_figure(cov)
    assert names(fig) == ["label coverage", charts.NOT_MATURE_NAME, LOW_CONFIDENCE_NAME,
                          "label lag p90"]
    assert fig.layout.yaxis2.title.text == "label lag p90 (hours)"
    assert "fraction" in fig.layout.yaxis.title.text


def test_debug_figures_axes_and_low_confidence() -> None:
    dist = pd.DataFrame({"label": ["(-inf, 1]", "(1, +inf)"], "n_reference": [50, 50],
                         "n_current": [25, 75], "reference_share": [0.5, 0.5],
                         "current_share": [0.25, 0.75], "psi_term": [0.17, 0.10]})
    fig = charts.drift_distribution_figure(dist, "amount")
    assert names(fig) == ["reference window", "current window"]
    assert fig.layout.yaxis.title.text == "share of rows (fraction)"

    daily = pd.DataFrame({"day": ["2026-10-01", "2026-10-02"] * 2,
                          "feature": ["amount", "amount", "score", "score"],
                          "psi": [0.01, 0.4, 0.02, 0.03], "n_current": [2000, 2000, 2000, 10]})
    fig = charts.drift_heatmap_figure(daily)
    assert names(fig) == ["PSI", LOW_CONFIDENCE_NAME]
    assert fig.layout.xaxis.title.text == "day (UTC)"

    curve = pd.DataFrame({"bin": [0, 1, 2], "bin_lo": [0.0, 0.33, 0.67], "bin_hi": [0.33, 0.67, 1.0],
                          "n": [500, 20, 0], "mean_p": [0.1, 0.5, None],
                          "frac_positive": [0.12, 0.6, None], "frac_positive_lo": [0.09, 0.4, None],
                          "frac_positive_hi": [0.15, 0.78, None]})
    fig = charts.reliability_figure(curve)
    assert names(fig) == [charts.PERFECT_NAME, "observed rate (95% band)", LOW_CONFIDENCE_NAME]
    assert fig.data[1].error_y.array is not None
    assert "(probability)" in fig.layout.xaxis.title.text

    heat = SimpleNamespace(
        x="amount", y="region",
        x_bins=pd.DataFrame({"label": ["[0, 10)", "[10, 99]"]}),
        y_bins=pd.DataFrame({"label": ["eu", "us"]}),
        cells=pd.DataFrame({"x_bin": [0, 0, 1, 1], "x_label": ["[0, 10)", "[0, 10)", "[10, 99]", "[10, 99]"],
                            "y_bin": [0, 1, 0, 1], "y_label": ["eu", "us", "eu", "us"],
                            "n": [100, 100, 100, 3], "mean_loss": [0.1, 0.2, 0.3, 0.9],
                            "low_confidence": [False, False, False, True]}))
    fig = charts.error_heatmap_figure(heat)
    assert names(fig) == ["mean log loss", LOW_CONFIDENCE_NAME]
    assert fig.layout.xaxis.title.text == "amount (bucket)"


def test_histogram_and_activation_figures() -> None:
    counts = pd.DataFrame({"bucket_start": [T0, T0, T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(days=1)],
                           "bin": [0, 1, 0, 1], "n": [3, 1, 0, 4]})
    hist = SimpleNamespace(counts=counts, edges=(0.0, 0.5, 1.0), bucket="day")
    fig = charts.histogram_heatmap_figure(hist, value_title="score bin (probability)")
    assert list(fig.data[0].z[:, 0]) == [0.75, 0.25]  # each bucket's fraction per bin
    assert fig.layout.xaxis.title.text == "day (UTC)"

    acts = pd.DataFrame({"column": ["h1_tanh"] * 2, "bucket_start": [T0, T0 + pd.Timedelta(days=1)],
                         "frac_tail": [0.02, 0.4], "n": [5000, 20], "low_confidence": [False, True]})
    fig = charts.activation_tail_figure(acts)
    assert names(fig) == ["h1_tanh: |a| > 0.9", LOW_CONFIDENCE_NAME]
    fig = charts.activation_tail_figure(acts, reference={"h1_tanh": 0.02})
    assert names(fig)[-1] == "h1_tanh in the reference window" and list(fig.data[-1].y) == [0.02, 0.02]
    assert fig.layout.yaxis.title.text == "saturated activations (fraction)"


def test_empty_frames_give_empty_figures_not_errors() -> None:
    empty = rolling_frame([]).iloc[0:0]
    assert charts.rolling_loss_figure({"1h": empty, "6h": empty}).data == ()
    assert charts.excess_loss_figure(pd.DataFrame(columns=["column", "value"])).data == ()


# --------------------------------------------------------------------------- audit: axes, bands
def test_rolling_loss_axis_follows_confident_windows_and_band_stays_above_zero() -> None:
    # After a label stall the newest windows hold 3 labelled rows at 4 nats, with a normal
    # interval reaching below 0: neither may set the axis, and no band goes below 0.
    frame = rolling_frame([False, False, False, True])
    frame.loc[3, ["log_loss", "log_loss_ci_low", "log_loss_ci_high", "n"]] = [4.0, -1.5, 9.5, 3]
    frame.loc[0, "log_loss_ci_low"] = -0.05
    fig = charts.rolling_loss_figure({"1h": frame, "6h": frame})
    low, high = fig.layout.yaxis.range
    assert low == 0 and 0.3 <= high < 0.5  # the confident windows and their band (0.15-0.3)
    band = next(t for t in fig.data if t.name.startswith(charts.CI_BAND_NAME))
    assert min(y for y in band.y if y is not None) == 0.0
    assert max(y for y in band.y if y is not None) == 0.3  # the stall window has no band
    off = next(t for t in fig.data if t.name == charts.OFF_SCALE_NAME)
    assert list(off.y) == [high, high] and [c[1] for c in off.customdata] == [4.0, 4.0]
    assert "%{customdata[1]:.4f} nats" in off.hovertemplate


def test_rolling_loss_axis_when_every_window_is_low_confidence() -> None:
    # A segment too small for any confident window: the axis follows the well-supported
    # windows (n of hundreds), not the stall's (n = 2 at 3 nats).
    frame = rolling_frame([True] * 4)
    frame["n"] = [400, 420, 380, 2]
    frame.loc[3, "log_loss"] = 3.0
    fig = charts.rolling_loss_figure({"1h": frame, "6h": frame})
    assert fig.layout.yaxis.range[1] < 1.0
    assert any(t.name == charts.OFF_SCALE_NAME for t in fig.data)


def trend_frame() -> pd.DataFrame:
    days = [T0 + pd.Timedelta(days=d) for d in range(4)]
    return pd.DataFrame({"bucket_start": days, "log_loss": [0.30, 0.32, 0.0003, 1.4],
                         "log_loss_ci_low": [0.28, 0.30, -0.9, -0.2],
                         "log_loss_ci_high": [0.32, 0.34, 0.9, 3.0], "n": [5000, 5000, 4, 9],
                         "low_confidence": [False, False, True, True]})


def test_loss_trend_band_and_axis_and_slo_targets() -> None:
    fig = charts.loss_trend_figure(trend_frame(), slo_targets=[("SLO eu: 0.32 nats (6h windows)", 0.32)])
    band = next(t for t in fig.data if t.name == charts.TREND_BAND_NAME)
    assert min(y for y in band.y if y is not None) >= 0
    assert max(y for y in band.y if y is not None) == 0.34  # no band over the 4-row days
    low, high = fig.layout.yaxis.range
    assert 0 < low < 0.28 and 0.34 < high < 0.5
    off = next(t for t in fig.data if t.name == charts.OFF_SCALE_NAME)
    assert sorted(c[1] for c in off.customdata) == [0.0003, 1.4]
    assert "SLO eu: 0.32 nats (6h windows)" in names(fig)
    assert [s.y0 for s in fig.layout.shapes] == [0.32]


def test_coverage_young_buckets_during_a_stall_are_not_expected() -> None:
    cov = pd.DataFrame({"bucket_start": [T0 + pd.Timedelta(days=d) for d in range(3)],
                        "n_predictions": [2000, 2000, 2000], "coverage": [0.95, 0.02, 0.01],
                        "n_lag": [1900, 40, 20], "lag_p90_hours": [30.0, 20.0, 5.0],
                        "mature": [True, True, False], "low_confidence": [False, False, False]})
    names_stalled = names(charts.coverage_figure(cov, stalled=True))
    assert charts.STALLED_NAME in names_stalled and charts.NOT_MATURE_NAME not in names_stalled
    assert charts.NOT_MATURE_NAME in names(charts.coverage_figure(cov))


def test_score_counters_legend_and_all_zero_note() -> None:
    quiet = pd.DataFrame({"bucket_start": [T0 + pd.Timedelta(hours=h) for h in range(3)],
                          "n": [100] * 3, "n_nan": [0] * 3, "n_posinf": [0] * 3,
                          "n_neginf": [0] * 3, "n_exact_0": [0] * 3, "n_exact_1": [0] * 3,
                          "n_low": [0] * 3, "n_high": [0] * 3})
    fig = charts.score_counters_figure(quiet)
    assert fig.layout.showlegend is True  # one trace would otherwise hide the legend
    assert list(fig.layout.yaxis.range) == [0, 1]
    assert [a.text for a in fig.layout.annotations] == [charts.NO_EXTREME_SCORES]
    one = charts.score_counters_figure(quiet.head(1).assign(n_low=5))
    assert one.data[0].mode == "lines+markers"  # a single hour is a point, not an empty line
    assert not one.layout.annotations


def test_second_axes_have_their_own_round_ticks_and_kpi_title() -> None:
    frame = pd.DataFrame({"day": [T0, T0 + pd.Timedelta(days=1)], "kpi": ["fraud_losses_usd"] * 2,
                          "value": [20_000.0, 30_000.0], "n_points": [1, 1],
                          "log_loss": [0.2, 0.3], "n": [5000, 5000], "low_confidence": [False, False]})
    fig = charts.kpi_loss_figure(frame, "fraud_losses_usd")
    assert fig.layout.yaxis.title.text == "fraud_losses_usd per day"
    assert fig.layout.yaxis2.tickmode == "auto"  # Plotly's default "sync" gave 0.104, 0.207
    cov = pd.DataFrame({"bucket_start": [T0], "n_predictions": [10], "coverage": [0.5],
                        "n_lag": [5], "lag_p90_hours": [3.0], "mature": [True],
                        "low_confidence": [False]})
    assert charts.coverage_figure(cov).layout.yaxis2.tickmode == "auto"


@pytest.mark.parametrize(("top", "capped"), [(0.3, False), (1.1, True)])
def test_drift_heatmap_says_when_its_colours_are_capped(top: float, capped: bool) -> None:
    daily = pd.DataFrame({"day": ["2026-10-01", "2026-10-02"], "feature": ["amount"] * 2,
                          "psi": [0.01, top], "n_current": [2000, 2000]})
    bar = charts.drift_heatmap_figure(daily).data[0].colorbar
    assert list(bar.tickvals) == [0, 0.1, 0.25, 0.5]
    assert bar.ticktext[-1] == ("≥ 0.5" if capped else "0.5")
    assert bar.title.text == ("PSI (capped)" if capped else "PSI")
