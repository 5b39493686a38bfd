"""Executive: how good are the model's probabilities, and is it getting better or worse.

Readable across a room: four headline tiles (log loss, change vs the reference window, ECE,
label coverage), the daily log loss trend over the sidebar's range against the SLO target, one
row per model version, the business KPIs beside the loss, and a download of the whole view as
a self-contained HTML report (the file ``lossboard export-report`` writes).

Page query parameters (besides the sidebar's Filter, see ``sidebar.py``): ``slo_target`` (a
log loss target in nats drawn on the trend), ``trend_days`` (length of the trend chart, one of
TREND_DAYS, default 30; another value is reported and the default used). Configured SLOs
(``[[slo]]`` in lossboard.toml, read as ``lossboard alerts`` reads it) of the model are listed
with their error budget remaining, burn rates and current log loss with its n
(analysis/slo.py, worded by ``html_report.slo_status_row``); the target of each SLO that covers
exactly the filter is drawn on the trend.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lossboard.dashboard import charts, html_report, monitoring_config, sidebar
from lossboard.dashboard.analysis import calibration, executive, labels, loss, report, slo
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.pages import _tables
from lossboard.dashboard.state import query
from lossboard.errors import LossboardError

TREND_DAYS = (7, 14, 30, 60, 90)
DEFAULT_TREND_DAYS = 30

st.title("Executive")
flt = sidebar.current_filter()
if flt.model is None:
    st.info("No predictions in the database yet: the executive view needs a model's "
            "predictions (the Data health page shows what was ingested).")
    st.stop()

window = query(report.resolve_windows, flt=flt)
summary = query(loss.overall, flt=window, auc=False)
if summary.n_predictions == 0:
    opts = query(executive.filter_options, model=flt.model)
    st.info(f"No predictions of model `{flt.model}` in this window. Its predictions span "
            f"{opts.first_ts:%Y-%m-%d %H:%M} to {opts.last_ts:%Y-%m-%d %H:%M} UTC: choose "
            "another time range in the sidebar.")
    st.stop()

reference = query(loss.overall, flt=window.reference(), auc=False)
cal = query(calibration.calibration_errors, flt=window)
st.caption(f"Model `{flt.model}` · {window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} "
           f"UTC · {html_report.describe_reference(window)}")

# --------------------------------------------------------------------------- tiles
# Readable across a meeting room: larger tile values than Streamlit's default (this page only).
st.html("<style>[data-testid='stMetricValue']{font-size:3.4rem;font-weight:600}</style>")
tiles = st.columns(4)
if summary.log_loss is None:
    # The lag of the model's whole history: this window has no labels to measure it on.
    lag = query(labels.label_lag, flt=Filter(model=flt.model))
    p90 = f"{lag.p90_hours:.0f} h" if lag.p90_hours is not None else "unknown (no timed labels)"
    st.info(f"No labels yet for this window: label lag p90 is {p90}. "
            f"{summary.n_predictions:,} predictions are waiting for their labels.")
tiles[0].metric("Log loss", html_report.fmt(summary.log_loss, ".4f"), border=True,
                help=f"Mean log loss (nats) over n = {summary.n:,} labelled predictions; "
                     f"95% interval {html_report.fmt(summary.log_loss_ci_low, '.4f')} to "
                     f"{html_report.fmt(summary.log_loss_ci_high, '.4f')}.")
change = html_report.relative_change(summary.log_loss, reference.log_loss)
tiles[1].metric(f"Change vs {html_report.reference_name(window)}",
                html_report.fmt(change, "+.1%"), border=True,
                delta=(None if summary.log_loss is None or reference.log_loss is None
                       else f"{summary.log_loss - reference.log_loss:+.4f} nats"),
                delta_color="inverse",
                help=f"Reference log loss {html_report.fmt(reference.log_loss, '.4f')} over "
                     f"n = {reference.n:,}; higher is worse.")
tiles[2].metric("Calibration ECE", html_report.fmt(cal.ece, ".4f"), border=True,
                help=f"Expected calibration error, {cal.bins} equal-width bins, n = {cal.n:,}.")
coverage = summary.n_labelled / summary.n_predictions
tiles[3].metric("Label coverage", f"{coverage:.1%}", border=True,
                help=f"{summary.n_labelled:,} of {summary.n_predictions:,} predictions have a label.")
if reference.log_loss is None and summary.log_loss is not None:
    opts = query(executive.filter_options, model=flt.model)
    st.info(f"No labelled predictions in the reference window to compare with (the model's "
            f"predictions start {opts.first_ts:%Y-%m-%d %H:%M} UTC): choose another reference "
            "window or a shorter time range in the sidebar.")
if summary.low_confidence and summary.log_loss is not None:
    st.warning(f"Only {summary.n:,} labelled predictions (fewer than {summary.min_samples:,}): "
               "treat these figures as low confidence.")

# --------------------------------------------------------------------------- trend and SLO
def _trend_days(raw: str) -> int:
    days = int(raw)
    if days not in TREND_DAYS:
        raise ValueError(f"not one of {', '.join(map(str, TREND_DAYS))}")
    return days


st.subheader("Log loss trend")
sidebar.page_param("slo_target", "lb_slo_target", float, 0.0)
sidebar.page_param("trend_days", "lb_trend_days", _trend_days, DEFAULT_TREND_DAYS)
target_col, days_col, _ = st.columns([1, 1, 2])
target = target_col.number_input("Target to draw (nats)", min_value=0.0, step=0.01, format="%.3f",
                                 key="lb_slo_target",
                                 help="Draw a log loss target on the trend; 0 = none. Kept in "
                                      "the URL. Configured SLOs that cover this filter are "
                                      "drawn anyway.")
sidebar.set_page_param("slo_target", f"{target:g}" if target else None)
trend_days = days_col.selectbox("Trend length (days)", TREND_DAYS, key="lb_trend_days",
                                help="Days of daily log loss up to the end of the selected range.")
sidebar.set_page_param("trend_days", None if trend_days == DEFAULT_TREND_DAYS else str(trend_days))
try:
    slos = html_report.model_slos(monitoring_config.load(), flt.model)
except LossboardError as exc:
    st.warning(f"The SLO config could not be read: {exc}")
    slos = ()
statuses: list[slo.SloStatus | None] = []
problems: list[str | None] = []
for spec in slos:
    try:
        statuses.append(query(slo.status, slo=spec, flt=window))
        problems.append(None)
    except LossboardError as exc:
        statuses.append(None)
        problems.append(str(exc))
stalled_since = None
if html_report.burn_rate_missing(statuses):
    # A burn rate without events: say whether labels stopped arriving (the usual cause).
    try:
        stalled_since = html_report.stall_start(query(labels.label_stall, flt=window))
    except LossboardError:
        stalled_since = None
slo_lines = _tables.slo_target_lines(slos, statuses, flt.model, flt.versions, flt.segments)
days = query(loss.by_bucket, flt=html_report.trend_filter(window, trend_days), bucket="day",
             auc=False)
st.plotly_chart(charts.loss_trend_figure(days, slo_target=target or None, slo_targets=slo_lines,
                                         selected=(window.start, window.end)), key="trend")
st.caption(f"Daily log loss over the {trend_days} days up to the end of the range (lower is "
           "better) with its 95% interval (blue band); the yellow area is the range of the tiles; hollow "
           "grey markers are days with fewer than "
           f"{summary.min_samples:,} labelled predictions (low confidence), drawn without band "
           "and, when far off, as a triangle at the edge of the axis (value in the hover).")
if target:
    st.caption(html_report.target_sentence(flt.model, target, len(slos)))
if slo_lines:
    st.caption("Dashed: the target of each configured SLO that covers exactly this filter ("
               + "; ".join(label for label, _ in slo_lines) + "). The SLO judges windows of its "
               "own length, the trend shows days: a day above the line is a warning, the burn "
               "rates below are the verdict.")
elif slos and not target:
    st.caption("No target line drawn: no configured SLO with a log loss target covers exactly "
               "this filter (" + "; ".join(f"{s.name}: {html_report.slo_scope(s)}" for s in slos)
               + "). Choose its segment or version in the sidebar, or set a target to draw.")
elif not slos and not target:
    st.caption(html_report.target_sentence(flt.model, None, 0))
if slos:
    st.markdown("**Configured SLOs**")
    st.table(pd.DataFrame([html_report.slo_status_row(spec, status, problem,
                                                      stalled_since=stalled_since)
                           for spec, status, problem in zip(slos, statuses, problems)]),
             hide_index=True)
    st.caption(html_report.SLO_CAPTION + " Current log loss: over the SLO's own window ending "
               "at the end of the range, with its n; \"too few\" below the SLO's min_samples.")

# --------------------------------------------------------------------------- versions
st.subheader("Model versions")
versions = query(loss.by_version, flt=window, auc=False)
shown_versions, version_config = _tables.version_table(html_report.version_table(versions))
st.dataframe(shown_versions, hide_index=True, **version_config)
st.caption("One row per model version in the window, in order of first appearance; n is the "
           "labelled predictions behind the log loss (low: fewer than the minimum).")

# --------------------------------------------------------------------------- KPIs
st.subheader("Business KPIs and log loss")
# The trend's daily loss, joined here rather than recomputed by kpi_vs_loss (same figures).
kpis = executive.join_kpis(query(executive.kpi_daily, flt=html_report.trend_filter(window, trend_days)),
                           days)
if kpis.frame.empty:
    st.info("No business KPI points in this window. Ingest a KPI file (columns ts, kpi, value) "
            "with `lossboard ingest --kind kpi` to see it beside the loss.")
for corr in kpis.correlations:
    st.plotly_chart(charts.kpi_loss_figure(kpis.frame, corr.kpi), key=f"kpi-{corr.kpi}")
    st.caption(f"{corr.kpi} per day (bars) beside the daily log loss (line), over the trend's "
               f"{trend_days} days: "
               f"{html_report.correlation_sentence(corr)}")

# --------------------------------------------------------------------------- download
st.divider()
st.download_button(
    "Download this view as an HTML report", data=lambda: query(html_report.build_html, flt=window, trend_days=trend_days,
                       slo_target=target or None, slos=slos),
    file_name=html_report.file_name(window), mime="text/html", on_click="ignore",
    icon=":material/download:", key="download_report",
    help="One self-contained file (charts included, works offline), the same as "
         "`lossboard export-report` with this view's filter.")
