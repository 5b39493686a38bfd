"""Debug page (postmortem): which inputs moved, where the loss is, which predictions hurt.

Layout only: numbers come from analysis functions through ``state.query``, charts from
``charts.py``. Four tabs: Drift (ranked PSI / KS table, one feature's reference vs current
distribution, PSI per day heatmap), Errors (error heatmap over two columns' buckets, the
top-loss samples with CSV download), Calibration (reliability diagram, equal width or equal
mass, with its Wilson band and ECE), Scores (score histogram over time, NaN / inf counts,
activation tail fraction over time).

URL keys of this page (besides the sidebar's Filter keys), so a postmortem link reopens the
same drill-down:

``dbg_feature``
    the feature whose distribution is shown (a drift-table name; ``score`` is the score);
``dbg_x``, ``dbg_y``
    the error heatmap's two columns;
``dbg_cal``
    the reliability bins: ``uniform`` (equal width) or ``quantile`` (equal mass);
``dbg_focus``
    the open tab: ``drift`` (default), ``errors``, ``calibration`` or ``scores``; only the open
    tab's queries run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from lossboard.dashboard import charts
from lossboard.dashboard.analysis import (
    calibration, loss, samples, saturation, segments, views,
)
from lossboard.dashboard.sidebar import page_param, set_page_param
from lossboard.dashboard.pages import _tables
from lossboard.dashboard.pages._common import fmt_time, header, no_labels_text, section
from lossboard.dashboard.state import query

TABS = {"drift": "Drift", "errors": "Errors and top-loss samples", "calibration": "Calibration",
        "scores": "Scores and activations"}
STRATEGIES = {"uniform": "equal width", "quantile": "equal mass"}
TOP_K = 100
#: The PSI the drift heatmap's colour scale tops out at (twice the 0.25 "act" threshold).
HEATMAP_PSI_MAX = 0.5



def _choice(options: list[str]):
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"not one of {', '.join(options)}")
        return raw
    return parse


def _url_select(label: str, name: str, options: list[str], default: str, **kwargs: Any) -> str:
    """A selectbox whose value lives in the URL key ``name`` too."""
    key = f"w_{name}"
    page_param(name, key, _choice(options), default)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    value = st.selectbox(label, options, key=key, **kwargs)
    set_page_param(name, None if value == default else value)
    return value



# --------------------------------------------------------------------------- tabs
def _drift_tab(view: Any) -> None:
    current = views.drift_window(view)
    st.caption(f"Current window {fmt_time(current.start)} – {fmt_time(current.end)} against the "
               f"reference {fmt_time(view.reference_start)} – {fmt_time(view.reference_end)}"
               + (f" (version {view.reference_version})" if view.reference_version else "") + ".")
    # The table, the heatmap and every feature's drill-down from one pass over the window.
    tab = query(views.drift_tab, flt=current)
    table = tab.table
    if table.empty:
        st.info("No feature is logged for this model, so there is no drift to show.")
        return
    shown, config = _tables.drift_table(table)
    st.dataframe(shown, hide_index=True, key="dbg_drift_table", **config)
    st.caption("Features ranked by PSI (reference-quantile bins; 0.1 watch, 0.25 act) with the "
               "exact two-sample KS statistic and p-value for numeric features (— for "
               f"categorical ones, where KS is not defined; {_tables.P_FLOOR_TEXT}: a p-value "
               "too small for a double).")
    features = table["feature"].tolist()
    feature = _url_select("Drill down to feature", "dbg_feature", features, features[0])
    dist = tab.distributions[feature]
    if dist.empty:
        st.info(f"No distribution for {feature}: {dist.attrs.get('reason', 'no data').replace('_', ' ')} "
                "(check the reference window in the sidebar).")
    else:
        st.plotly_chart(charts.drift_distribution_figure(dist, feature), key="dbg_distribution")
        row = table[table["feature"] == feature].iloc[0]
        st.caption(f"Share of {feature} per PSI bin in the reference and current windows; "
                   f"PSI {row['psi']:.4f} is the sum of the per-bin terms in the hover.")
    daily = tab.daily
    if not daily.empty:
        st.plotly_chart(charts.drift_heatmap_figure(daily, zmax=HEATMAP_PSI_MAX),
                        key="dbg_drift_heatmap")
        psi = pd.to_numeric(daily["psi"], errors="coerce")
        capped = ""
        if psi.notna().any() and float(psi.max()) > HEATMAP_PSI_MAX:
            top = daily.loc[psi.idxmax()]
            capped = (f" Colours are capped at PSI {HEATMAP_PSI_MAX:g} (act is 0.25): the largest "
                      f"here, {top['feature']} at {float(top['psi']):.3g} on "
                      f"{pd.Timestamp(top['day']):%Y-%m-%d}, has the top colour; the hover gives "
                      "each cell's value.")
        st.caption("PSI of each UTC day against the whole reference window; a band that turns "
                   "red from one day on dates the drift. Ringed cells have fewer than 1,000 rows."
                   + capped)


def _no_labels(view: Any) -> None:
    # The model's lag over its whole history is one quantile over every label (0.5 s at 10M
    # rows): asked for only when a window has no label, the one time it is shown.
    st.info(no_labels_text(query(views.label_lag_anywhere, flt=view)))


def _errors_tab(view: Any, n_labelled: int) -> None:
    if n_labelled == 0:
        _no_labels(view)
        return
    table = query(views.drift_tab, flt=views.drift_window(view)).table
    seg = query(segments.excess_loss_all, flt=view)
    seg_cols = list(dict.fromkeys(seg["column"].tolist()))
    features = [f for f in table["feature"].tolist() if f != views.SCORE_NAME]
    options = list(dict.fromkeys(features + seg_cols))
    if len(options) < 2:
        st.info("The error heatmap needs two feature or segment columns; this model logs "
                f"{len(options)}.")
    else:
        left, right = st.columns(2)
        with left:
            x = _url_select("Heatmap x", "dbg_x", options, options[0])
        y_default = seg_cols[0] if seg_cols and seg_cols[0] != x else next(o for o in options if o != x)
        with right:
            y = _url_select("Heatmap y", "dbg_y", options, y_default)
        if x == y:
            st.info("Choose two different columns for the heatmap.")
        else:
            heat = query(samples.error_heatmap, flt=view, x=x, y=y)
            st.plotly_chart(charts.error_heatmap_figure(heat), key="dbg_error_heatmap")
            st.caption(f"Mean log loss per cell of {x} × {y} buckets (numeric: quantile bins); "
                       f"{heat.n:,} labelled rows, overall {heat.mean_loss or 0:.4f} nats. "
                       f"Ringed cells have fewer than {heat.min_samples} rows.")
    top = query(samples.top_loss_samples, flt=view, k=TOP_K)
    st.subheader(f"Top {min(TOP_K, len(top.rows))} highest-loss predictions")
    if top.rows.empty:
        st.info("No labelled prediction with a finite score in this window"
                + (f" ({top.n_nonfinite:,} have a NaN / inf score)." if top.n_nonfinite else "."))
        return
    st.dataframe(top.rows, hide_index=True, key="dbg_top_loss")
    pii = f" PII columns ({', '.join(top.pii_columns)}) are salted hashes." if top.pii_columns else ""
    st.caption(f"Ranked by per-row log loss (nats, clipped at 1e-15) among {top.n_scored:,} "
               f"labelled rows with a finite score.{pii}")
    st.download_button("Download as CSV", top.rows.to_csv(index=False).encode(),
                       file_name=f"top_loss_{view.model}.csv", mime="text/csv",
                       key="dbg_download", on_click="ignore")


def _calibration_tab(view: Any, summary: Any) -> None:
    if summary.n == 0:
        _no_labels(view)
        return
    key = "w_dbg_cal"
    page_param("dbg_cal", key, _choice(list(STRATEGIES)), "uniform")
    strategy = st.segmented_control("Bins", list(STRATEGIES), format_func=STRATEGIES.get,
                                    key=key, required=True)
    set_page_param("dbg_cal", None if strategy == "uniform" else strategy)
    curve = query(calibration.reliability, flt=view, strategy=strategy)
    errors = query(calibration.calibration_errors, flt=view, strategy=strategy)
    cols = st.columns(3)
    cols[0].metric("ECE", "—" if errors.ece is None else f"{errors.ece:.4f}",
                   help=f"{STRATEGIES[strategy]} bins, n = {errors.n:,}")
    cols[1].metric("MCE", "—" if errors.mce is None else f"{errors.mce:.4f}")
    cols[2].metric("labelled rows", f"{errors.n:,}")
    if summary.mean_y is not None and summary.mean_y in (0.0, 1.0):
        st.warning(f"Every label in this window is {int(summary.mean_y)}: one class only, so "
                   "the curve shows only how far the scores are from that class.")
    st.plotly_chart(charts.reliability_figure(curve), key="dbg_reliability")
    st.caption(f"Mean predicted probability against the observed rate per {STRATEGIES[strategy]} "
               "bin, with its 95% Wilson band; points on the diagonal are calibrated. Hollow "
               "points have fewer than 100 rows.")


def _scores_tab(view: Any) -> None:
    bucket = "hour" if (view.end - view.start).total_seconds() <= 3 * 86400 else "day"
    sat = query(saturation.score_saturation, flt=view, bucket="hour")
    o = sat.overall
    cols = st.columns(3)
    cols[0].metric("NaN / inf scores", f"{o.n_nan + o.n_posinf + o.n_neginf:,}",
                   help=f"of n = {o.n:,} predictions; excluded from every loss")
    cols[1].metric("scores of exactly 0 or 1", f"{o.n_exact_0 + o.n_exact_1:,}",
                   help="a pipeline logging decisions instead of probabilities")
    cols[2].metric("scores < 0.01 or > 0.99", "—" if o.frac_saturated is None
                   else f"{o.frac_saturated:.1%}", help=f"of {o.n_finite:,} finite scores")
    st.plotly_chart(charts.score_counters_figure(sat.by_bucket), key="dbg_counters")
    st.caption("Per hour: NaN / inf scores (red crosses), scores of exactly 0 or 1 (orange "
               "diamonds) and the other extreme scores (shaded).")
    hist = query(saturation.score_histogram, flt=view, bucket=bucket)
    st.plotly_chart(charts.histogram_heatmap_figure(hist, value_title="score bin (probability)"),
                    key="dbg_score_hist")
    nonfinite = int(hist.outside["n_nonfinite"].sum()) if not hist.outside.empty else 0
    st.caption(f"Share of each {bucket}'s scores per bin: mass piling into the outer bins is "
               f"saturation. {nonfinite:,} NaN / inf scores in this window are not binned.")
    acts = query(saturation.activation_saturation, flt=view, bucket=bucket)
    if not acts.columns:
        st.info("This model logs no activation column.")
        return
    ref = query(saturation.activation_saturation, flt=view.reference(), bucket="day").overall
    levels = {r["column"]: float(r["frac_tail"]) for _, r in ref.iterrows() if not pd.isna(r["frac_tail"])}
    st.plotly_chart(charts.activation_tail_figure(acts.by_bucket, threshold=acts.threshold,
                                                  reference=levels), key="dbg_activations")
    st.caption(f"Share of each activation's values with |a| > {acts.threshold:g} per {bucket}, "
               "dotted: the same share in the reference window. A saturated tanh unit passes "
               "almost no gradient and flags inputs out of the range it was trained on.")


def main() -> None:
    view = header("Debug")
    if view is None:
        return
    summary = None
    with section("The window's log loss"):
        summary = query(loss.overall, flt=view, auc=False)
    if summary is None:
        return
    if summary.n_predictions == 0:
        st.info(f"No predictions in {fmt_time(view.start)} – {fmt_time(view.end)} for this "
                "filter: widen the time range or remove a segment.")
        return
    # The open tab is tracked (a tab switch reruns the page) so that only its queries run and
    # the URL says which one a postmortem link opens.
    key = "w_dbg_focus"
    page_param("dbg_focus", key, lambda raw: TABS[_choice(list(TABS))(raw)], TABS["drift"])
    tabs = st.tabs(list(TABS.values()), key=key, on_change="rerun")
    focus = next((k for k, label in TABS.items() if label == st.session_state.get(key)), "drift")
    set_page_param("dbg_focus", None if focus == "drift" else focus)
    sections = (("Drift", lambda: _drift_tab(view)),
                ("The error heatmap and top-loss samples", lambda: _errors_tab(view, summary.n)),
                ("Calibration", lambda: _calibration_tab(view, summary)),
                ("Score and activation saturation", lambda: _scores_tab(view)))
    for tab, (what, draw) in zip(tabs, sections):
        if tab.open is not False:
            with tab, section(what):
                draw()


main()
