"""On-call page: is it broken now, where, and since when.

Layout only: every number comes from an analysis function through ``state.query`` and every
chart from ``charts.py``. Top to bottom: firing alerts / findings (each with a link to the Debug
page pre-filtered on its segment, version and time; the feature drift findings are filled
in last, once the rest has rendered), the newest rolling 1 h / 6 h log loss and
score counters, the rolling loss chart with the findings' start times marked, NaN / inf and
extreme-score counters, segments ranked by excess loss, canary vs baseline, and label coverage
and lag (so that a label stall is not read as a quality drop).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from lossboard.dashboard import charts, monitoring_config
from lossboard.dashboard.monitoring_config import format_minutes
from lossboard.dashboard.analysis import views
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.pages._common import (
    LABELS_ANCHOR, LABELS_LINK, fmt_time, header, no_labels_text, section,
)
from lossboard.dashboard.state import query
from lossboard.errors import LossboardError

DEBUG_PAGE = "pages/debug.py"
ONCALL_PAGE = "pages/oncall.py"
#: Findings, as ``report.findings`` codes, with the words the page shows for them.
TITLES = {
    "loss_regression": "Log loss regression",
    "canary_fail": "Canary worse than baseline",
    "feature_drift": "Feature drift",
    "nonfinite_scores": "NaN / inf scores",
    "exact_zero_one_scores": "Scores of exactly 0 or 1",
    "activation_saturation": "Activation saturation",
    "label_stall": "Label delivery stalled",
}
#: The Debug section a finding is best looked at in (Debug's ``dbg_focus`` parameter).
FOCUS = {"feature_drift": "drift", "canary_fail": "calibration", "nonfinite_scores": "scores",
         "exact_zero_one_scores": "scores", "activation_saturation": "scores",
         "loss_regression": "errors"}
#: Findings and alerts that Debug has nothing about: labels show on this page only (the Labels
#: section), so their link goes there instead of to Debug.
LABEL_FINDINGS = ("label_stall",)


def _fmt_loss(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.4f}"


def _where_text(where: dict[str, Any]) -> str:
    parts = [f"{c}={v}" for c, v in (where.get("segment") or {}).items()]
    parts += [f"{k} {v}" for k, v in where.items() if k in ("model_version", "feature", "activation")]
    return ", ".join(parts) or "whole model"


def _debug_params(view: Any, finding: dict[str, Any], baseline: str | None) -> dict[str, list[str]]:
    params = views.finding_filter(view, finding, reference_version=baseline).to_query()
    where = finding.get("where") or {}
    if where.get("feature"):
        params["dbg_feature"] = [str(where["feature"])]
    params["dbg_focus"] = [FOCUS.get(finding["what"], "errors")]
    return params


def _alerts_section(view: Any, canary_pair: tuple[str, str] | None,
                    firing: list[Any] | LossboardError) -> None:
    """The firing alerts of ``lossboard alerts`` at the end of the window (``firing``, from
    ``views.oncall_data``, or the error that stopped them), each with a link to Debug on the
    alert's view."""
    st.subheader("Firing alerts")
    if isinstance(firing, LossboardError):
        st.warning(f"Alerts could not be evaluated ({type(firing).__name__}: {firing}); the "
                   "findings below still say what broke.")
        return
    if not firing:
        st.success(f"No alert firing at {fmt_time(view.end)} (rules of lossboard.toml, or the "
                   "defaults).")
        return
    for alert in firing:
        with st.container(border=True):
            left, right = st.columns([4, 1])
            where = ", ".join(x for x in (alert.version and f"version {alert.version}",
                                          alert.segment) if x) or "whole model"
            badge = ":red-badge[page]" if alert.severity == "page" else ":orange-badge[ticket]"
            earlier = " or earlier" if "since_is_lookback_limit" in dict(alert.details) else ""
            left.markdown(f"{badge} **{alert.rule}** · {where} · since "
                          f"**{fmt_time(alert.since)}**{earlier}")
            left.caption(f"{alert.message} (n = {alert.n:,})")
            if alert.rule in LABEL_FINDINGS:
                right.markdown(LABELS_LINK, help="Debug has no label view: the Labels section "
                               "of this page shows coverage and lag per bucket.")
                continue
            link = views.finding_filter(view, {
                "since": pd.Timestamp(alert.since).isoformat(),
                "where": {"model_version": alert.version,
                          "segment": dict([alert.segment.split("=", 1)]) if alert.segment and
                          "," not in alert.segment else {}}},
                reference_version=canary_pair[0] if canary_pair and alert.version == canary_pair[1]
                else None)
            with right:
                st.page_link(DEBUG_PAGE, label="Open in Debug", icon=":material/troubleshoot:",
                             query_params=link.to_query())


def _firing_text(firing: list[Any], lookback_minutes: int | None, end: Any) -> str:
    """"5 alerts fire (canary, drift, ...) over the alert lookback (7d up to ...)": what an
    empty findings section says instead of an all-clear while alerts fire."""
    rules = ", ".join(dict.fromkeys(a.rule for a in firing))
    lookback = ("" if lookback_minutes is None else
                f" over the alert lookback ({format_minutes(lookback_minutes)} up to {fmt_time(end)})")
    return (f"{len(firing)} alert{'s' if len(firing) != 1 else ''} fire{'s' if len(firing) == 1 else ''}"
            f"{lookback} ({rules}): see Firing alerts above. Alerts look back further than "
            "this window and compare with their own baselines.")


def _findings_section(view: Any, findings: list[dict[str, Any]],
                      baseline: str | None, firing: list[Any],
                      lookback_minutes: int | None) -> Any:
    """The findings but feature drift's; returns the container the drift findings go in
    (:func:`_drift_findings`, filled once the rest of the page has rendered). With no
    finding in the window while alerts fire, it says so rather than giving an all-clear."""
    st.subheader("Findings: what broke, where, since when")
    st.caption(f"From `lossboard report` over {fmt_time(view.start)} – {fmt_time(view.end)} "
               f"against the reference window {fmt_time(view.reference_start)} – "
               f"{fmt_time(view.reference_end)}. Each link opens Debug on that slice.")
    whole = query(views.resolve_view, flt=Filter(model=view.model))
    if whole.start is not None and view.start > whole.start:
        st.page_link(ONCALL_PAGE, icon=":material/history:", query_params={
            "model": view.model, "range": "all"},
            label=f"Older incidents are outside this window: look back to {fmt_time(whole.start)}")
    if not findings and firing:
        st.warning("No loss, canary, score, activation or label-delivery finding in this "
                   f"window; {_firing_text(firing, lookback_minutes, view.end)}")
    elif not findings:
        st.success("No loss, canary, score, activation or label-delivery finding in this "
                   "window: they all look like the reference window.")
    for f in sorted(findings, key=lambda f: f.get("since") or ""):
        _finding_card(view, f, baseline if f["what"] == "canary_fail" else None)
    return st.container()


def _finding_card(view: Any, f: dict[str, Any], baseline: str | None) -> None:
    with st.container(border=True):
        left, right = st.columns([4, 1])
        left.markdown(f"**{TITLES.get(f['what'], f['what'])}** · {_where_text(f['where'])} · "
                      f"since **{fmt_time(f['since'])}**"
                      + (" or earlier" if f.get("since_is_lookback_limit") else "")
                      + (", before this window" if f.get("since_before_window") else "")
                      + (f" until {fmt_time(f['until'])}" if f.get("until") else " (ongoing)"))
        left.caption(f["detail"])
        with right:
            if f["what"] in LABEL_FINDINGS:
                st.markdown(LABELS_LINK, help="Debug has no label view: the Labels section of "
                            "this page shows coverage and lag per bucket.")
            else:
                st.page_link(DEBUG_PAGE, label="Open in Debug", icon=":material/troubleshoot:",
                             query_params=_debug_params(view, f, baseline))


def _drift_findings(view: Any, box: Any, firing: list[Any]) -> None:
    """The feature drift findings, into ``box`` (the end of the findings section): asked for
    last, so the figures of "is it broken now" do not wait for a drift search over every
    feature and day (views.oncall_drift_findings)."""
    with box:
        with section("The feature drift findings"):
            with st.spinner("Looking for feature drift (daily PSI of every feature)…"):
                drifted = query(views.oncall_drift_findings, flt=view)
            drift_alerts = [a for a in firing if a.rule == "drift"]
            if not drifted and drift_alerts:
                where = ", ".join(dict.fromkeys(a.segment or "whole model" for a in drift_alerts))
                st.warning("No feature drift finding in this window against its reference "
                           f"window {fmt_time(view.reference_start)} – "
                           f"{fmt_time(view.reference_end)}, but the drift alert fires ({where}): "
                           "it compares with its own reference window (lossboard.toml, "
                           "[alerts.drift]) over the alert lookback. See Firing alerts above.")
            elif not drifted and firing:
                st.info("No feature drift finding: no feature's daily PSI against the "
                        "reference window stayed at 0.1 or above (other alerts fire: see above).")
            elif not drifted:
                st.success("No feature drift finding: no feature's daily PSI against the "
                           "reference window stayed at 0.1 or above.")
            for f in drifted:
                _finding_card(view, f, None)


def _last(hours: float, span_hours: float) -> str:
    """"last 24 h", or what a shorter view really covers: "last 1 h"."""
    return f"last {min(hours, span_hours):g} h"


def _headline(roll_1h: pd.DataFrame, roll_6h: pd.DataFrame, sat: Any, lag: Any,
              view: Any) -> None:
    """The newest figures; each tile is labelled by the window it really covers (a 6 h
    window of a 1 h view holds 1 h)."""
    span_hours = (pd.Timestamp(view.end) - pd.Timestamp(view.start)).total_seconds() / 3600
    cols = st.columns(5)
    for col, label, frame in ((cols[0], f"log loss, {_last(1, span_hours)}", roll_1h),
                              (cols[1], f"log loss, {_last(6, span_hours)}", roll_6h)):
        if frame.empty:
            col.metric(label, "—")
            continue
        last = frame.iloc[-1]
        value = None if pd.isna(last["log_loss"]) else float(last["log_loss"])
        low = (": no labels yet" if int(last["n"]) == 0 else
               " (low confidence)" if bool(last["low_confidence"]) else "")
        col.metric(label, _fmt_loss(value), help=f"n = {int(last['n']):,} labelled rows{low}, "
                   f"window ending {fmt_time(last['window_end'])}")
        col.caption(f"n = {int(last['n']):,}{low}")
    day_hours = min(24.0, span_hours)
    by_hour = sat.by_bucket
    last_day = by_hour[pd.to_datetime(by_hour["bucket_start"], utc=True)
                       >= pd.Timestamp(view.end) - pd.Timedelta(hours=day_hours)]
    last = _last(24, span_hours)
    nonfinite = int((last_day["n_nan"] + last_day["n_posinf"] + last_day["n_neginf"]).sum())
    exact = int((last_day["n_exact_0"] + last_day["n_exact_1"]).sum())
    extreme = int((last_day["n_low"] + last_day["n_high"]).sum())
    n_day = int(last_day["n"].sum())
    cols[2].metric(f"NaN / inf scores, {last}", f"{nonfinite:,}", help=f"of n = {n_day:,} predictions")
    cols[2].caption(f"n = {n_day:,}; whole window: {sat.overall.n_nan + sat.overall.n_posinf + sat.overall.n_neginf:,}")
    cols[3].metric(f"extreme scores, {last}", f"{extreme:,}",
                   help=f"scores < 0.01 or > 0.99, of which exactly 0 or 1: {exact:,}")
    cols[3].caption(f"exactly 0 or 1: {exact:,}; whole window: "
                    f"{sat.overall.n_exact_0 + sat.overall.n_exact_1:,}")
    cols[4].metric("label lag p90", "—" if lag.p90_hours is None else f"{lag.p90_hours:.1f} h",
                   help="hours from prediction to label, 90th percentile, over this window's "
                        "labels (over all time when the window has none)")
    cols[4].caption(f"p50 {'—' if lag.p50_hours is None else f'{lag.p50_hours:.1f} h'}; n = {lag.n:,}")


def _marks(findings: list[dict[str, Any]], start: Any,
           whats: tuple[str, ...] | None = None) -> list[tuple[Any, str]]:
    """(since, title) of the findings that began inside the charts' span (from ``start``): a
    finding that began before the window (since_before_window) would stretch the time axis."""
    first = pd.Timestamp(start)
    return [(f["since"], TITLES.get(f["what"], f["what"])) for f in findings
            if f.get("since") and pd.Timestamp(f["since"]) >= first
            and (whats is None or f["what"] in whats)]


def _segments_section(view: Any, excess: pd.DataFrame) -> None:
    st.subheader("Where: segments ranked by excess log loss")
    if excess.empty:
        st.info("No segment column has labelled rows in this window; nothing to rank.")
        return
    # A column the filter fixes to one value has nothing to rank: its one value is the whole
    # window (its "rest" is empty).
    counts: dict[str, int] = {}
    for column, _ in view.segments:
        counts[column] = counts.get(column, 0) + 1
    fixed = sorted(c for c, k in counts.items() if k == 1)
    if fixed:
        excess = excess[~excess["column"].isin(fixed)]
        if excess.empty:
            st.info(f"The filter fixes {', '.join(f'{c}={v}' for c, v in view.segments if c in fixed)}"
                    ": no other segment column to rank within it.")
            return
        st.caption(f"{', '.join(fixed)}: fixed by the filter, left out of the ranking.")
    st.plotly_chart(charts.excess_loss_figure(excess), key="oc_segments")
    st.caption("Each bar is a segment value's log loss minus that of the rest of the window "
               "(Welch's test); red bars are significantly worse, hollow ones have too few rows.")
    worst = excess[excess["significant"] & (excess["excess_loss"].astype(float) > 0)].head(3)
    for _, row in worst.iterrows():
        st.page_link(DEBUG_PAGE, label=f"Debug {row['column']}={row['value']}",
                     icon=":material/troubleshoot:",
                     query_params=views.finding_filter(view, {"where": {"segment": {
                         row["column"]: row["value"]}}}).to_query())


def _canary_section(view: Any, result: Any) -> None:
    st.subheader("Canary vs baseline")
    if result is None:
        st.info("No canary: no two model versions served traffic at the same time in this window.")
        return
    verdict = {"fail": st.error, "pass": st.success}.get(result.verdict, st.warning)
    verdict(f"Verdict **{result.verdict}** for {result.candidate} vs {result.baseline}: {result.reason}")
    if result.n_baseline or result.n_candidate:
        st.plotly_chart(charts.canary_figure(result), key="oc_canary")
        st.caption(f"Log loss of both versions over their common time range "
                   f"{fmt_time(result.start)} – {fmt_time(result.end)}; the verdict is a "
                   f"one-sided Welch test against a {result.max_relative_increase:.0%} tolerance.")
    st.page_link(DEBUG_PAGE, label=f"Debug {result.candidate}", icon=":material/troubleshoot:",
                 query_params={**views.finding_filter(view, {
                     "since": None if result.start is None else pd.Timestamp(result.start).isoformat(),
                     "where": {"model_version": result.candidate}},
                     reference_version=result.baseline).to_query(),
                     "dbg_focus": ["calibration"]})


def _labels_section(view: Any, data: views.OnCallData, findings: list[dict[str, Any]]) -> None:
    st.subheader("Labels: coverage and lag", anchor=LABELS_ANCHOR)
    lag, bucket = data.lag, data.coverage_bucket
    cov, stall = views.figure(data.coverage), views.figure(data.stall)
    if stall.stalled:
        # onset: the hour arrivals dropped (labels.label_stall); recent_start, the first of
        # the mature hours judged, where it is not known.
        since = stall.onset or stall.recent_start
        st.warning(f"Label delivery stalled since {fmt_time(since)}: coverage "
                   f"{stall.recent_coverage:.1%} in the newest mature hours vs "
                   f"{stall.typical_coverage:.1%} before. A loss computed on the few labels that "
                   "arrived is not a quality signal.")
    elif stall.stalled is None:
        st.info(f"Label stall cannot be judged yet ({stall.reason.replace('_', ' ')}).")
    if cov.empty:
        st.info("No predictions in this window.")
        return
    if int(cov["n_labelled"].sum()) == 0:
        st.info(no_labels_text(lag))
    if len(cov) < 2:
        row = cov.iloc[0]
        st.caption(f"One {bucket} in this window ({fmt_time(row['bucket_start'])}): "
                   f"{int(row['n_labelled']):,} of {int(row['n_predictions']):,} predictions "
                   "labelled. A coverage chart needs two buckets or more: widen the time range.")
        return
    st.plotly_chart(charts.coverage_figure(cov, marks=_marks(findings, view.start, ("label_stall",)),
                                           stalled=bool(stall.stalled)),
                    key="oc_coverage")
    if stall.stalled:
        st.caption(f"Share of predictions per {bucket} with a label, and the label lag p90. Red "
                   "diamonds are buckets younger than the lag p90 during the label stall: their "
                   "low coverage is the stall as much as label lag, not to be read as expected.")
    else:
        st.caption(f"Share of predictions per {bucket} with a label, and the label lag p90. Orange "
                   "diamonds are buckets younger than the lag p90: their labels are still "
                   "arriving, so low coverage there is expected, not a stall.")


def _now_section(view: Any, data: views.OnCallData, findings: list[dict[str, Any]]) -> None:
    rolled, lag, sat = data.rolled, data.lag, views.figure(data.saturation)
    st.subheader("Now")
    _headline(rolled["1h"], rolled["6h"], sat, lag, view)
    if int(rolled["1h"]["n"].sum()) == 0:
        st.info(no_labels_text(lag) + " Loss appears once labels arrive; the counters below "
                "need no labels.")
    else:
        st.plotly_chart(charts.rolling_loss_figure(rolled, marks=_marks(findings, view.start)), key="oc_rolling")
        st.caption("Rolling log loss over the last 1 h and 6 h at every hour (6 h with its 95% "
                   "interval), predictions and labelled rows per hour below; hollow markers have "
                   "fewer labelled rows than the minimum; dashed lines mark when each finding began.")
    if len(sat.by_bucket) < 2:
        st.caption("Score counters: one hour in this window, its counts are in the tiles above "
                   "(a chart needs two hours or more: widen the time range).")
        return
    st.plotly_chart(charts.score_counters_figure(
        sat.by_bucket, marks=_marks(findings, view.start, ("nonfinite_scores", "exact_zero_one_scores"))),
        key="oc_counters")
    st.caption("Scores per hour that are NaN / inf (excluded from loss), exactly 0 or 1 (a "
               "pipeline writing decisions, not probabilities), or otherwise beyond [0.01, 0.99].")


def main() -> None:
    view = header("On-call")
    if view is None:
        return
    data: views.OnCallData | None = None
    config, problem = None, None
    try:
        config = monitoring_config.load()  # lossboard.toml's rules, or the defaults
    except LossboardError as exc:
        problem = exc
    with section("The On-call figures"):
        # One cached call computes every figure of the page (views.oncall_data), the alerts
        # included: one scan of the window serves them all, where a call per chart read it a
        # dozen times. The drift findings alone come last (_drift_findings): at 10M rows they
        # cost as much as everything else, and "is it broken now" should not wait for them.
        data = query(views.oncall_data, flt=view, config=config)
    if data is None:
        return
    if data.rolled["1h"].empty:
        st.info(f"No predictions in {fmt_time(view.start)} – {fmt_time(view.end)} for this "
                "filter: widen the time range or remove a segment.")
        return
    rep: dict[str, Any] = {}
    with section("The findings"):
        rep = views.figure(data.report)
    findings = rep.get("findings", [])
    can = rep.get("canary") or {}
    with section("The alerts"):
        _alerts_section(view, (can["baseline"], can["candidate"]) if can else None,
                        problem or data.alerts)
    firing = data.alerts if isinstance(data.alerts, list) and problem is None else []
    lookback = None if config is None else config.lookback_minutes
    drift_box = (_findings_section(view, findings, can.get("baseline"), firing, lookback)
                 if rep else None)
    with section("The current figures"):
        _now_section(view, data, findings)
    with section("The segment ranking"):
        _segments_section(view, views.figure(data.excess))
    with section("The canary comparison"):
        _canary_section(view, views.figure(data.canary))
    with section("Label coverage"):
        _labels_section(view, data, findings)
    if drift_box is not None:
        _drift_findings(view, drift_box, firing)


main()
