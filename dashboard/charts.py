"""Plotly figure builders: a small frame in, a figure out. No SQL, no Streamlit.

Conventions every builder follows (so pages look alike and tests can rely on them):

* axis titles carry units ("log loss (nats)", "time (UTC)", "fraction of scores");
* hover shows the value *and* its ``n``;
* low-confidence points (``low_confidence`` column True, n below the minimum) are drawn as
  hollow markers in a separate trace named ``LOW_CONFIDENCE_NAME``, so they are visibly
  different and a test can find them;
* a marked moment (incident start, "since when") is a vertical line with an annotation;
* the figure is self-contained: no external fonts, images or map tiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LOW_CONFIDENCE_NAME = "low confidence (n below minimum)"
TEMPLATE = "plotly_white"


def base_layout(fig: go.Figure, *, x_title: str, y_title: str, height: int = 360) -> go.Figure:
    """Common layout: white template, titled axes, legend on top, compact margins."""
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      hovermode="x unified")
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


# --------------------------------------------------------------------------- On-call and Debug
#: Colours shared by the On-call and Debug figures (Plotly's default qualitative palette).
_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")
_MARK_COLOUR = "#d62728"
#: Names of traces that tests and the docs refer to.
CI_BAND_NAME = "95% interval"
NOT_MATURE_NAME = "labels still arriving (bucket younger than lag p90)"
STALLED_NAME = "labels stalled (bucket younger than lag p90, during the stall)"
PERFECT_NAME = "perfectly calibrated"


def _values(series: pd.Series) -> list[Any]:
    """Plain Python values with <NA> / NaN as None (Plotly draws None as a gap)."""
    return [None if pd.isna(v) else v for v in series.tolist()]


def _masked(frame: pd.DataFrame, column: str, keep: pd.Series) -> list[Any]:
    return [v if k else None for v, k in zip(_values(frame[column]), keep.tolist())]


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and not pd.isna(v) and abs(float(v)) != float("inf")]


def loss_axis_range(confident: Sequence[Any], *, fallback: Sequence[Any] = (),
                    pad: float = 0.08, from_zero: bool = False) -> list[float] | None:
    """The y range of a log loss chart: the confident values (lines and their bands) with a
    margin of ``pad`` of their span, never below 0 (log loss is >= 0), from 0 with
    ``from_zero``. Low-confidence points do not stretch it (a window of 3 labelled rows can
    sit at 4 nats): they are drawn at the edge instead (:func:`_split_off_scale`). Without a
    confident value, ``fallback``'s; None when there is nothing to draw.

    Example: confident values 0.2 and 0.45, a low-confidence 4.1: [0.18, 0.47]."""
    values = _finite(confident) or _finite(fallback)
    if not values:
        return None
    lo, hi = min(values), max(values)
    margin = pad * (hi - lo) if hi > lo else max(0.05 * abs(hi), 0.01)
    return [0.0 if from_zero else max(0.0, lo - margin), hi + margin]


def _best_supported(values: Sequence[Any], ns: Sequence[Any], share: float = 0.25) -> list[Any]:
    """The values whose n is at least ``share`` of the largest n: what an axis should follow
    when every point is low-confidence (the hours of a label stall have n = 1-10 and log
    losses of several nats; the ordinary hours, n in the hundreds, do not)."""
    counts = [0 if n is None or pd.isna(n) else int(n) for n in ns]
    floor = share * max(counts, default=0)
    return [v for v, n in zip(values, counts) if n > 0 and n >= floor]


def _band_xy(x: list[Any], low: list[Any], high: list[Any], keep: list[bool]
             ) -> tuple[list[Any], list[Any]]:
    """A 95% band as one ``fill="toself"`` trace: a closed shape per run of kept points
    (runs separated by None, which Plotly draws as separate shapes), the lower edge clipped
    at 0 (log loss is >= 0; a normal interval around a mean of few rows can reach below)."""
    xs: list[Any] = []
    ys: list[Any] = []
    run: list[int] = []
    for i in range(len(x) + 1):
        ok = (i < len(x) and keep[i] and low[i] is not None and high[i] is not None
              and not pd.isna(low[i]) and not pd.isna(high[i]))
        if ok:
            run.append(i)
            continue
        if run:
            if xs:
                xs.append(None)
                ys.append(None)
            xs += [x[j] for j in run] + [x[j] for j in reversed(run)]
            ys += [float(high[j]) for j in run] + [max(0.0, float(low[j])) for j in reversed(run)]
            run = []
    return xs, ys


#: The trace of low-confidence points beyond the axis range, drawn at its edge.
OFF_SCALE_NAME = "low confidence, off the axis (value in hover)"


def _split_off_scale(xs: list[Any], ys: list[Any], ns: list[Any], rng: list[float] | None
                     ) -> tuple[tuple[list[Any], list[Any], list[Any]], go.Scatter | None]:
    """Low-confidence points inside ``rng`` (returned as (x, y, n)) and a trace of the
    others, drawn at the axis edge as triangles pointing where they are, with their value in
    the hover."""
    if rng is None:
        return (xs, ys, ns), None
    inside = ([], [], [])
    out_x: list[Any] = []
    out_y: list[Any] = []
    out_symbol: list[str] = []
    out_custom: list[Any] = []
    for x, y, n in zip(xs, ys, ns):
        if y is None or pd.isna(y) or rng[0] <= y <= rng[1]:
            for part, v in zip(inside, (x, y, n)):
                part.append(v)
            continue
        above = y > rng[1]
        out_x.append(x)
        out_y.append(rng[1] if above else rng[0])
        out_symbol.append("triangle-up-open" if above else "triangle-down-open")
        out_custom.append((n, float(y)))
    if not out_x:
        return inside, None
    return inside, go.Scatter(
        x=out_x, y=out_y, customdata=out_custom, mode="markers", name=OFF_SCALE_NAME,
        cliponaxis=False, marker=dict(symbol=out_symbol, size=8, color="#9e9e9e"),
        hovertemplate="%{customdata[1]:.4f} nats, off the axis<br>n = %{customdata[0]:,} "
                      "(low confidence)<extra></extra>")


def _low_mask(frame: pd.DataFrame) -> pd.Series:
    if "low_confidence" not in frame.columns:
        return pd.Series([False] * len(frame), index=frame.index)
    return frame["low_confidence"].fillna(False).astype(bool)


def add_marks(fig: go.Figure, marks: Sequence[tuple[Any, str]], *, row: int | None = None
              ) -> go.Figure:
    """Vertical dashed lines with a label at each ``(time, label)``: "since when"."""
    for i, (when, label) in enumerate(marks):
        x = pd.Timestamp(when)
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", xref="x",
                      line=dict(color=_MARK_COLOUR, width=1.5, dash="dash"))
        fig.add_annotation(x=x, y=1 - 0.09 * (i % 4), yref="paper", xref="x", text=label,
                           showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=10, color=_MARK_COLOUR),
                           bgcolor="rgba(255,255,255,0.8)")
    return fig


def _low_confidence_trace(xs: list[Any], ys: list[Any], ns: list[Any], *, unit: str,
                          fmt: str = ".4f", yaxis: str | None = None) -> go.Scatter:
    trace = go.Scatter(x=xs, y=ys, customdata=ns, name=LOW_CONFIDENCE_NAME, mode="markers",
                       marker=dict(symbol="circle-open", size=7, color="#7f7f7f"),
                       hovertemplate=f"%{{y:{fmt}}} {unit}<br>n = %{{customdata:,}} (low confidence)"
                                     "<extra></extra>")
    if yaxis:
        trace.update(yaxis=yaxis)
    return trace


def rolling_loss_figure(windows: Mapping[str, pd.DataFrame], *,
                        marks: Sequence[tuple[Any, str]] = (), height: int = 460) -> go.Figure:
    """Rolling log loss per window length (``{"1h": frame, "6h": frame}``, frames of
    ``loss.rolling``) with its 95% interval for the longest window, and the rows per hour
    (predictions and labelled) below.

    Low-confidence windows (n below the minimum) are faint hollow markers, left out of the
    lines and of the band; the y axis spans the confident windows (:func:`loss_axis_range`),
    so a window of 3 labelled rows at 4 nats after a label stall cannot flatten the rest:
    such points are drawn at the axis edge (``OFF_SCALE_NAME``, value in the hover). The band
    is clipped at 0."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.06)
    low_x: list[Any] = []
    low_y: list[Any] = []
    low_n: list[Any] = []
    confident: list[Any] = []
    names = list(windows)
    for i, (label, frame) in enumerate(windows.items()):
        if frame.empty:
            continue
        low = _low_mask(frame)
        keep = (~low).tolist()
        x = frame["window_end"].tolist()
        if label == names[-1]:
            ci_low, ci_high = _values(frame["log_loss_ci_low"]), _values(frame["log_loss_ci_high"])
            band_x, band_y = _band_xy(x, ci_low, ci_high, keep)
            confident += [v for v, k in zip(ci_high, keep) if k]
            confident += [max(0.0, v) for v, k in zip(ci_low, keep) if k and v is not None]
            if band_x:
                fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself",
                                         fillcolor="rgba(99,110,250,0.15)",
                                         line=dict(width=0), hoverinfo="skip",
                                         name=f"{CI_BAND_NAME} ({label})"), row=1, col=1)
        line = _masked(frame, "log_loss", ~low)
        confident += line
        fig.add_trace(go.Scatter(x=x, y=line,
                                 customdata=frame["n"].tolist(), mode="lines",
                                 name=f"log loss, {label} window",
                                 line=dict(color=_COLOURS[i % len(_COLOURS)], width=1 + i),
                                 hovertemplate="%{y:.4f} nats<br>n = %{customdata:,}"
                                               f"<extra>{label}</extra>"), row=1, col=1)
        low_x += [v for v, k in zip(x, low.tolist()) if k]
        low_y += [v for v, k in zip(_values(frame["log_loss"]), low.tolist()) if k]
        low_n += [v for v, k in zip(frame["n"].tolist(), low.tolist()) if k]
    # From 0: most hourly windows of a quiet model are low-confidence and spread both ways;
    # none can fall below 0, so only the top edge clips.
    rng = loss_axis_range(confident, fallback=_best_supported(low_y, low_n), from_zero=True)
    if low_x:
        (in_x, in_y, in_n), off = _split_off_scale(low_x, low_y, low_n, rng)
        under = []
        if in_x:
            trace = _low_confidence_trace(in_x, in_y, in_n, unit="nats")
            trace.marker.update(size=4, color="#b0b0b0")
            trace.update(opacity=0.7)
            under.append(trace)
        if off is not None:
            under.append(off)
        for trace in under:
            fig.add_trace(trace, row=1, col=1)
        # Hollow points under the lines: the confident windows stay readable on top.
        k = len(under)
        fig.data = fig.data[-k:] + fig.data[:-k] if k else fig.data
    hourly = windows.get(names[0]) if names else None
    if hourly is not None and not hourly.empty:
        x = hourly["window_end"].tolist()
        fig.add_trace(go.Bar(x=x, y=hourly["n_predictions"].tolist(), name=f"predictions per {names[0]}",
                             marker_color="#c7c7c7",
                             hovertemplate="%{y:,} predictions<extra></extra>"), row=2, col=1)
        fig.add_trace(go.Bar(x=x, y=hourly["n"].tolist(), name=f"labelled per {names[0]}",
                             marker_color="#636efa",
                             hovertemplate="%{y:,} labelled<extra></extra>"), row=2, col=1)
    base_layout(fig, x_title="", y_title="log loss (nats)", height=height)
    fig.update_layout(barmode="overlay", bargap=0)
    if rng is not None:
        fig.update_yaxes(range=rng, row=1, col=1)
    fig.update_xaxes(title_text="window end (UTC)", row=2, col=1)
    fig.update_yaxes(title_text="rows per window", row=2, col=1)
    return add_marks(fig, marks)


#: The note a score-counter chart carries when every counter is zero.
NO_EXTREME_SCORES = "no NaN / inf, exact 0 / 1 or other extreme score in this range"


def score_counters_figure(by_hour: pd.DataFrame, *, marks: Sequence[tuple[Any, str]] = (),
                          height: int = 300) -> go.Figure:
    """NaN/inf scores and scores of exactly 0 or 1 per bucket (markers at the buckets that
    have any, so a two-hour incident in a month stays visible), over the other extreme scores
    (``< 0.01`` or ``> 0.99``, a shaded line), from ``saturation.score_saturation(...).by_bucket``;
    hover shows the bucket's n. Counts are events, not estimates: no bucket is low-confidence.

    The legend is always shown (a figure of one trace would otherwise hide it), the y axis
    starts at 0, a single bucket is a marker (a line needs two points), and a figure whose
    counters are all zero says so (``NO_EXTREME_SCORES``) on a 0-1 axis."""
    fig = go.Figure()
    all_zero = False
    if not by_hour.empty:
        x = by_hour["bucket_start"]
        n = by_hour["n"]
        exact = by_hour["n_exact_0"] + by_hour["n_exact_1"]
        extreme = by_hour["n_low"] + by_hour["n_high"] - exact
        nonfinite = by_hour["n_nan"] + by_hour["n_posinf"] + by_hour["n_neginf"]
        all_zero = int(extreme.fillna(0).sum() + exact.fillna(0).sum()
                       + nonfinite.fillna(0).sum()) == 0
        fig.add_trace(go.Scatter(x=x.tolist(), y=extreme.tolist(), customdata=n.tolist(),
                                 name="other extreme scores (< 0.01 or > 0.99)",
                                 mode="lines+markers" if len(by_hour) == 1 else "lines",
                                 fill="tozeroy", line=dict(color="#bcbd22", width=1),
                                 hovertemplate="%{y:,} of n = %{customdata:,}<extra>extreme</extra>"))
        for name, values, colour, symbol in (
                ("NaN / inf scores", nonfinite, "#d62728", "x"),
                ("scores of exactly 0 or 1", exact, "#ff7f0e", "diamond")):
            hit = values.fillna(0) > 0
            fig.add_trace(go.Scatter(x=x[hit].tolist(), y=values[hit].tolist(),
                                     customdata=n[hit].tolist(), name=name, mode="markers",
                                     marker=dict(color=colour, size=10, symbol=symbol),
                                     hovertemplate="%{y:,} of n = %{customdata:,}<extra>" + name
                                                   + "</extra>"))
    base_layout(fig, x_title="hour (UTC)", y_title="scores per hour", height=height)
    fig.update_layout(hovermode="closest", showlegend=True)
    fig.update_yaxes(rangemode="tozero")
    if all_zero:
        fig.update_yaxes(range=[0, 1], dtick=1)
        fig.add_annotation(x=0.5, y=0.6, xref="paper", yref="paper", showarrow=False,
                           text=NO_EXTREME_SCORES, font=dict(size=13, color="#555555"))
    return add_marks(fig, marks)


def excess_loss_figure(excess: pd.DataFrame, *, top: int = 12, height: int | None = None) -> go.Figure:
    """Segment values ranked by excess log loss over the rest (``segments.excess_loss_all``),
    worst on top; significant (Welch p < alpha) excess in red, others grey, low-confidence
    values hollow."""
    frame = excess.head(top).iloc[::-1]
    fig = go.Figure()
    if not frame.empty:
        labels = [f"{c}={v}" for c, v in zip(frame["column"], frame["value"])]
        low = _low_mask(frame)
        sig = frame["significant"].fillna(False).astype(bool) & (frame["excess_loss"].astype(float) > 0)
        custom = list(zip(frame["n_labelled"].tolist(), _values(frame["log_loss"]),
                          _values(frame["log_loss_rest"]), _values(frame["p_value"])))
        hover = ("%{x:+.4f} nats vs the rest<br>log loss %{customdata[1]:.4f} vs %{customdata[2]:.4f}"
                 "<br>n = %{customdata[0]:,}, p = %{customdata[3]:.2g}<extra></extra>")
        for name, keep, style in (
                ("significant excess loss", ~low & sig, dict(color="#d62728")),
                ("not significant", ~low & ~sig, dict(color="#9e9e9e")),
                (LOW_CONFIDENCE_NAME, low, dict(color="rgba(0,0,0,0)",
                                                line=dict(color="#7f7f7f", width=1.5)))):
            if not keep.any():
                continue
            fig.add_trace(go.Bar(orientation="h", name=name, marker=style,
                                 x=[v if k else None for v, k in zip(_values(frame["excess_loss"]), keep)],
                                 y=labels, customdata=custom, hovertemplate=hover))
    base_layout(fig, x_title="excess log loss vs the rest of the window (nats)",
                y_title="segment value", height=height or max(220, 28 * len(frame) + 90))
    fig.update_layout(barmode="overlay", hovermode="closest")
    return fig


def canary_figure(result: Any, *, height: int = 260) -> go.Figure:
    """Baseline vs candidate log loss over their common time range (a ``CanaryResult``), with
    n in the hover; a side below ``min_samples`` is hollow."""
    fig = go.Figure()
    for role, version, value, n in (("baseline", result.baseline, result.log_loss_baseline,
                                     result.n_baseline),
                                    ("candidate", result.candidate, result.log_loss_candidate,
                                     result.n_candidate)):
        low = n < result.min_samples
        fig.add_trace(go.Bar(
            x=[value], y=[f"{version} ({role})"], orientation="h", customdata=[n],
            name=LOW_CONFIDENCE_NAME if low else f"{role} {version}",
            marker=(dict(color="rgba(0,0,0,0)", line=dict(color="#7f7f7f", width=1.5)) if low
                    else dict(color="#636efa" if role == "baseline" else "#ef553b")),
            hovertemplate="%{x:.4f} nats<br>n = %{customdata:,}<extra></extra>"))
    base_layout(fig, x_title="log loss over the common time range (nats)", y_title="",
                height=height)
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def coverage_figure(coverage: pd.DataFrame, *, marks: Sequence[tuple[Any, str]] = (),
                    stalled: bool = False, height: int = 340) -> go.Figure:
    """Label coverage per bucket (``labels.coverage``) with the bucket's label lag p90 on a
    second axis. Buckets younger than the lag p90 are drawn apart (their labels are still
    arriving: low coverage there is not a stall); low-confidence buckets are hollow.

    ``stalled`` (``labels.label_stall`` found a stall): the young buckets are not "still
    arriving" as usual but inside the stall, and are drawn and named so (``STALLED_NAME``)."""
    fig = go.Figure()
    if not coverage.empty:
        mature = coverage["mature"].fillna(True).astype(bool)
        low = _low_mask(coverage)
        x = coverage["bucket_start"].tolist()
        n = coverage["n_predictions"].tolist()
        hover = "%{y:.1%} labelled<br>n = %{customdata:,} predictions<extra></extra>"
        fig.add_trace(go.Scatter(x=x, y=_masked(coverage, "coverage", mature & ~low),
                                 customdata=n, mode="lines+markers", name="label coverage",
                                 line=dict(color="#636efa"), marker=dict(size=4),
                                 hovertemplate=hover))
        young = ~mature
        if young.any():
            fig.add_trace(go.Scatter(x=x, y=_masked(coverage, "coverage", young), customdata=n,
                                     mode="markers", name=STALLED_NAME if stalled else NOT_MATURE_NAME,
                                     marker=dict(symbol="diamond-open", size=7,
                                                 color=_MARK_COLOUR if stalled else "#ff7f0e"),
                                     hovertemplate=hover))
        if (mature & low).any():
            keep = (mature & low).tolist()
            fig.add_trace(_low_confidence_trace([v for v, k in zip(x, keep) if k],
                                                [v for v, k in zip(_values(coverage["coverage"]), keep) if k],
                                                [v for v, k in zip(n, keep) if k],
                                                unit="labelled", fmt=".1%"))
        fig.add_trace(go.Scatter(x=x, y=_values(coverage["lag_p90_hours"]),
                                 customdata=coverage["n_lag"].tolist(), yaxis="y2",
                                 mode="lines", name="label lag p90", line=dict(color="#7f7f7f", dash="dot"),
                                 hovertemplate="lag p90 %{y:.1f} h<br>n = %{customdata:,} labels"
                                               "<extra></extra>"))
    base_layout(fig, x_title="prediction time (UTC)", y_title="label coverage (fraction of predictions)",
                height=height)
    fig.update_layout(yaxis=dict(tickformat=".0%", rangemode="tozero"),
                      # Plotly's default for an overlaying axis is "sync", the left axis'
                      # ticks carried over (8.1, 16.3, ... hours): its own round ticks instead.
                      yaxis2=dict(title="label lag p90 (hours)", overlaying="y", side="right",
                                  rangemode="tozero", showgrid=False, tickmode="auto"))
    return add_marks(fig, marks)


def drift_distribution_figure(dist: pd.DataFrame, feature: str, *, height: int = 340) -> go.Figure:
    """Reference vs current share per PSI bin of one feature (``drift.distribution``)."""
    fig = go.Figure()
    for name, share, count, colour in (("reference window", "reference_share", "n_reference", "#9e9e9e"),
                                       ("current window", "current_share", "n_current", "#636efa")):
        fig.add_trace(go.Bar(x=dist["label"].tolist(), y=_values(dist[share]), name=name,
                             marker_color=colour,
                             customdata=list(zip(dist[count].tolist(), _values(dist["psi_term"]))),
                             hovertemplate="%{y:.1%} of rows<br>n = %{customdata[0]:,}"
                                           "<br>PSI term %{customdata[1]:.4f}<extra>" + name + "</extra>"))
    base_layout(fig, x_title=f"{feature} bin (PSI bins from reference quantiles)",
                y_title="share of rows (fraction)", height=height)
    fig.update_layout(barmode="group", yaxis=dict(tickformat=".0%"))
    return fig


def _ring_trace(x: pd.Series, y: pd.Series, n: pd.Series) -> go.Scatter:
    """Hollow rings over the low-confidence cells of a heatmap."""
    return go.Scatter(x=x.tolist(), y=y.tolist(), customdata=n.tolist(), mode="markers",
                      name=LOW_CONFIDENCE_NAME,
                      marker=dict(symbol="circle-open", size=9, color="#333333"),
                      hovertemplate="n = %{customdata:,} (low confidence)<extra></extra>")


def drift_heatmap_figure(daily: pd.DataFrame, *, min_samples: int = 1000, zmax: float = 0.5,
                         height: int | None = None) -> go.Figure:
    """PSI per UTC day (x) and feature (y) from ``drift.daily_drift``; days with fewer than
    ``min_samples`` current rows are marked with hollow markers (PSI of a small sample is
    biased upwards).

    The colour scale runs from 0 to ``zmax`` with ticks at the 0.1 (watch) and 0.25 (act)
    thresholds; a larger PSI gets the top colour, and the colour bar then says so
    ("≥ 0.5", title "PSI (capped)"); the hover gives every cell's own value."""
    fig = go.Figure()
    frame = daily.copy()
    if not frame.empty:
        frame["day"] = pd.to_datetime(frame["day"])
        psi = frame.pivot(index="feature", columns="day", values="psi").astype("float64")
        n = frame.pivot(index="feature", columns="day", values="n_current")
        capped = bool((psi > zmax).any().any())
        ticks = [t for t in (0.0, 0.1, 0.25) if t < zmax] + [zmax]
        colorbar = dict(title="PSI (capped)" if capped else "PSI", tickvals=ticks,
                        ticktext=[f"{t:g}" for t in ticks[:-1]]
                        + [f"≥ {zmax:g}" if capped else f"{zmax:g}"])
        fig.add_trace(go.Heatmap(x=list(psi.columns), y=list(psi.index), z=psi.to_numpy(),
                                 customdata=n.to_numpy(), zmin=0, zmax=zmax, colorscale="YlOrRd",
                                 colorbar=colorbar, name="PSI",
                                 hovertemplate="%{y} on %{x|%Y-%m-%d}<br>PSI %{z:.3f}"
                                               "<br>n = %{customdata:,}<extra></extra>"))
        low = frame[frame["n_current"] < min_samples]
        if not low.empty:
            fig.add_trace(_ring_trace(low["day"], low["feature"], low["n_current"]))
    base_layout(fig, x_title="day (UTC)", y_title="feature",
                height=height or max(240, 40 * daily["feature"].nunique() + 120) if not daily.empty else 240)
    fig.update_layout(hovermode="closest")
    return fig


def error_heatmap_figure(heatmap: Any, *, height: int = 380) -> go.Figure:
    """Mean log loss per cell of two columns' buckets (a ``samples.ErrorHeatmap``); cells
    with fewer than its ``min_samples`` rows carry a hollow marker."""
    cells = heatmap.cells
    fig = go.Figure()
    if not cells.empty:
        xs = heatmap.x_bins["label"].tolist()
        ys = heatmap.y_bins["label"].tolist()
        z = cells.pivot(index="y_bin", columns="x_bin", values="mean_loss").astype("float64")
        n = cells.pivot(index="y_bin", columns="x_bin", values="n")
        fig.add_trace(go.Heatmap(x=xs, y=ys, z=z.to_numpy(), customdata=n.to_numpy(),
                                 colorscale="Reds", colorbar=dict(title="nats"), name="mean log loss",
                                 hovertemplate=f"{heatmap.x} %{{x}}<br>{heatmap.y} %{{y}}"
                                               "<br>mean log loss %{z:.4f} nats<br>n = %{customdata:,}"
                                               "<extra></extra>"))
        low = cells[cells["low_confidence"].fillna(False).astype(bool)]
        if not low.empty:
            fig.add_trace(_ring_trace(low["x_label"], low["y_label"], low["n"]))
    base_layout(fig, x_title=f"{heatmap.x} (bucket)", y_title=f"{heatmap.y} (bucket)", height=height)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def reliability_figure(curve: pd.DataFrame, *, min_bin_samples: int = 100,
                       height: int = 400) -> go.Figure:
    """Reliability diagram (``calibration.reliability``): per bin the mean predicted
    probability against the observed rate with its 95% Wilson band, the diagonal, and bins
    with fewer than ``min_bin_samples`` rows hollow."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=PERFECT_NAME,
                             line=dict(color="#9e9e9e", dash="dash"), hoverinfo="skip"))
    frame = curve[curve["n"] > 0]
    if not frame.empty:
        low = frame["n"] < min_bin_samples
        for name, keep, marker in (("observed rate (95% band)", ~low, dict(size=8, color="#636efa")),
                                   (LOW_CONFIDENCE_NAME, low,
                                    dict(size=8, symbol="circle-open", color="#7f7f7f"))):
            part = frame[keep]
            if part.empty:
                continue
            y = part["frac_positive"].astype("float64")
            fig.add_trace(go.Scatter(
                x=_values(part["mean_p"]), y=y.tolist(), mode="lines+markers" if name != LOW_CONFIDENCE_NAME else "markers",
                name=name, marker=marker,
                error_y=dict(type="data", symmetric=False,
                             array=(part["frac_positive_hi"].astype("float64") - y).tolist(),
                             arrayminus=(y - part["frac_positive_lo"].astype("float64")).tolist()),
                customdata=list(zip(part["n"].tolist(), part["bin_lo"].tolist(), part["bin_hi"].tolist())),
                hovertemplate="bin [%{customdata[1]:.3f}, %{customdata[2]:.3f})<br>mean p %{x:.3f}"
                              "<br>observed %{y:.3f}<br>n = %{customdata[0]:,}<extra></extra>"))
    base_layout(fig, x_title="mean predicted probability in bin (probability)",
                y_title="observed rate of the positive class (fraction)", height=height)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


def histogram_heatmap_figure(hist: Any, *, value_title: str, height: int = 360) -> go.Figure:
    """A ``saturation.Histogram`` as a heatmap: time bucket (x) by value bin (y), colour = the
    bucket's fraction of binned rows in the bin; hover shows the count and the bucket's n."""
    counts = hist.counts
    fig = go.Figure()
    if not counts.empty:
        n = counts.pivot(index="bin", columns="bucket_start", values="n").astype("float64")
        total = n.sum(axis=0).replace(0, float("nan"))
        share = n / total
        mids = [f"[{lo:.2f}, {hi:.2f})" for lo, hi in zip(hist.edges[:-1], hist.edges[1:])]
        custom = [[(int(c), int(t) if t == t else 0) for c, t in zip(row, total)] for row in n.to_numpy()]
        # One bin usually holds most scores (a fraud model's [0, 0.05)); the colour scale tops
        # out at the largest share of the other bins, so their shifts stay visible.
        others = share.drop(index=share.mean(axis=1).idxmax()) if len(share) > 1 else share
        zmax = float(others.max().max()) if others.notna().any().any() else None
        fig.add_trace(go.Heatmap(x=list(n.columns), y=mids, z=share.to_numpy(), customdata=custom,
                                 zmin=0, zmax=zmax or None,
                                 colorscale="Viridis", colorbar=dict(title="fraction", tickformat=".0%"),
                                 name="share of rows",
                                 hovertemplate="%{x}<br>bin %{y}<br>%{z:.1%} of the bucket"
                                               "<br>%{customdata[0]:,} of n = %{customdata[1]:,}"
                                               "<extra></extra>"))
    base_layout(fig, x_title=f"{hist.bucket} (UTC)", y_title=value_title, height=height)
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(type="category")
    return fig


def activation_tail_figure(by_bucket: pd.DataFrame, *, threshold: float = 0.9,
                           reference: Mapping[str, float] | None = None,
                           marks: Sequence[tuple[Any, str]] = (), height: int = 320) -> go.Figure:
    """Fraction of each activation column's values with ``|a| > threshold`` per bucket
    (``saturation.activation_saturation(...).by_bucket``); low-confidence buckets hollow;
    ``reference`` (column -> fraction in the reference window) as dotted lines."""
    fig = go.Figure()
    low_x: list[Any] = []
    low_y: list[Any] = []
    low_n: list[Any] = []
    for i, (column, frame) in enumerate(by_bucket.groupby("column", sort=True)):
        low = _low_mask(frame)
        fig.add_trace(go.Scatter(x=frame["bucket_start"].tolist(), y=_masked(frame, "frac_tail", ~low),
                                 customdata=frame["n"].tolist(), mode="lines+markers",
                                 name=f"{column}: |a| > {threshold:g}",
                                 line=dict(color=_COLOURS[i % len(_COLOURS)]),
                                 hovertemplate="%{y:.1%} saturated<br>n = %{customdata:,}"
                                               "<extra></extra>"))
        keep = low.tolist()
        low_x += [v for v, k in zip(frame["bucket_start"].tolist(), keep) if k]
        low_y += [v for v, k in zip(_values(frame["frac_tail"]), keep) if k]
        low_n += [v for v, k in zip(frame["n"].tolist(), keep) if k]
    if low_x:
        fig.add_trace(_low_confidence_trace(low_x, low_y, low_n, unit="saturated", fmt=".1%"))
    if reference and not by_bucket.empty:
        x = [by_bucket["bucket_start"].min(), by_bucket["bucket_start"].max()]
        for i, (column, value) in enumerate(sorted(reference.items())):
            fig.add_trace(go.Scatter(x=x, y=[value, value], mode="lines",
                                     name=f"{column} in the reference window",
                                     line=dict(color=_COLOURS[i % len(_COLOURS)], dash="dot"),
                                     hovertemplate="%{y:.1%} in the reference window<extra></extra>"))
    base_layout(fig, x_title="time bucket (UTC)", y_title="saturated activations (fraction)",
                height=height)
    fig.update_layout(yaxis=dict(tickformat=".0%", rangemode="tozero"))
    return add_marks(fig, marks)


# --------------------------------------------------------------------------- Executive and report
SLO_TARGET_NAME = "SLO target"
TREND_BAND_NAME = "95% interval of the daily log loss"
_EXEC_BLUE = "#1f4e9c"


def loss_trend_figure(days: pd.DataFrame, *, slo_target: float | None = None,
                      selected: tuple[Any, Any] | None = None,
                      slo_targets: Sequence[tuple[str, float]] = (),
                      height: int = 420) -> go.Figure:
    """Daily log loss (frame of ``loss.by_bucket(bucket='day')``) with its 95% interval as a
    shaded band. Confident days are a line with filled markers; low-confidence days (n below the
    minimum) are hollow grey markers in the ``LOW_CONFIDENCE_NAME`` trace, off the line and
    without band. A dashed horizontal ``SLO_TARGET_NAME`` line when a target is given, and one
    per ``slo_targets`` (``(label, log loss)``: the targets of configured SLOs that cover the
    view); ``selected`` (start, end) shades the range the headline figures cover.

    The y axis spans the confident days, their band and the targets (:func:`loss_axis_range`);
    a low-confidence day beyond it is drawn at the edge (``OFF_SCALE_NAME``, value in the
    hover); the band is clipped at 0."""
    fig = go.Figure()
    if selected is not None and selected[0] is not None and selected[1] is not None:
        fig.add_vrect(x0=pd.Timestamp(selected[0]), x1=pd.Timestamp(selected[1]), layer="below",
                      fillcolor="rgba(255,193,7,0.07)", line=dict(color="rgba(200,150,0,0.5)", width=1, dash="dot"),
                      annotation_text="selected range", annotation_position="top left",
                      annotation_font=dict(size=12, color="#8a6d00"))
    targets = ([(f"{SLO_TARGET_NAME} {slo_target:g} nats", float(slo_target))]
               if slo_target is not None else []) + [(label, float(v)) for label, v in slo_targets]
    rng = None
    if not days.empty:
        x = list(days["bucket_start"])
        loss_values = _values(days["log_loss"])
        low = [bool(v) for v in days["low_confidence"].fillna(True)]
        keep = [not lo for lo in low]
        n = [int(v) for v in days["n"]]
        ci_low, ci_high = _values(days["log_loss_ci_low"]), _values(days["log_loss_ci_high"])
        confident = [v for v, k in zip(loss_values + ci_high, keep + keep) if k]
        confident += [max(0.0, v) for v, k in zip(ci_low, keep) if k and v is not None]
        rng = loss_axis_range(confident + [v for _, v in targets] if confident else [],
                              fallback=_best_supported(loss_values, n) + [v for _, v in targets])
        band_x, band_y = _band_xy(x, ci_low, ci_high, keep)
        if band_x:
            fig.add_trace(go.Scatter(
                x=band_x, y=band_y, fill="toself", fillcolor="rgba(31,78,156,0.15)",
                line=dict(width=0), mode="lines", hoverinfo="skip", name=TREND_BAND_NAME))
        hover = "%{x|%Y-%m-%d}: %{y:.4f} nats<br>n = %{customdata:,} labelled<extra></extra>"
        fig.add_trace(go.Scatter(
            x=x, y=[None if lo else v for v, lo in zip(loss_values, low)], customdata=n,
            mode="lines+markers", name="daily log loss", connectgaps=False,
            line=dict(color=_EXEC_BLUE, width=3), marker=dict(size=8), hovertemplate=hover))
        if any(low):
            (in_x, in_y, in_n), off = _split_off_scale(
                [v for v, lo in zip(x, low) if lo], [v for v, lo in zip(loss_values, low) if lo],
                [v for v, lo in zip(n, low) if lo], rng)
            if in_x:
                fig.add_trace(go.Scatter(
                    x=in_x, y=in_y, customdata=in_n, mode="markers", name=LOW_CONFIDENCE_NAME,
                    marker=dict(symbol="circle-open", size=11, color="#7f7f7f", line=dict(width=2)),
                    hovertemplate=hover.replace("labelled", "labelled (low confidence)")))
            if off is not None:
                off.marker.update(size=12)
                fig.add_trace(off)
    colours = ("#d62728", "#9c27b0", "#e65100", "#00796b")
    for i, (label, value) in enumerate(targets):
        colour = colours[i % len(colours)]
        fig.add_hline(y=value, line=dict(color=colour, width=2, dash="dash"),
                      annotation_text=label, annotation_position="top left",
                      annotation_font=dict(color=colour))
        # An invisible trace puts the target in the legend (and lets a test find it).
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines",
                                 name=SLO_TARGET_NAME if i == 0 and slo_target is not None else label,
                                 line=dict(color=colour, width=2, dash="dash")))
    base_layout(fig, x_title="day (UTC)", y_title="log loss (nats)", height=height)
    fig.update_layout(font=dict(size=15), hovermode="closest")
    if rng is not None:
        fig.update_yaxes(range=rng)
    return fig


def kpi_loss_figure(frame: pd.DataFrame, kpi: str, *, height: int = 340) -> go.Figure:
    """One business KPI per UTC day (bars, left axis) beside the daily log loss (line, right
    axis), from ``executive.kpi_vs_loss(...).frame``; low-confidence loss days hollow."""
    rows = frame[frame["kpi"] == kpi]
    fig = go.Figure()
    if not rows.empty:
        x = list(rows["day"])
        fig.add_trace(go.Bar(x=x, y=_values(rows["value"]), name=kpi, marker_color="#9ecae1",
                             customdata=[int(v) for v in rows["n_points"]],
                             hovertemplate="%{x|%Y-%m-%d}: %{y:,.2f}<br>n = %{customdata} KPI "
                                           "points<extra>" + kpi + "</extra>"))
        low = [bool(v) for v in rows["low_confidence"]]
        loss_values = _values(rows["log_loss"])
        n = [int(v) for v in rows["n"]]
        hover = "%{x|%Y-%m-%d}: %{y:.4f} nats<br>n = %{customdata:,} labelled<extra></extra>"
        fig.add_trace(go.Scatter(x=x, y=[None if lo else v for v, lo in zip(loss_values, low)],
                                 customdata=n, yaxis="y2", mode="lines+markers",
                                 name="daily log loss", line=dict(color=_EXEC_BLUE, width=2.5),
                                 hovertemplate=hover))
        if any(low):
            fig.add_trace(go.Scatter(x=[v for v, lo in zip(x, low) if lo],
                                     y=[v for v, lo in zip(loss_values, low) if lo],
                                     customdata=[v for v, lo in zip(n, low) if lo], yaxis="y2",
                                     mode="markers", name=LOW_CONFIDENCE_NAME,
                                     marker=dict(symbol="circle-open", size=10, color="#7f7f7f"),
                                     hovertemplate=hover))
    base_layout(fig, x_title="day (UTC)", y_title=f"{kpi} per day", height=height)
    # tickmode "auto": Plotly's default for an overlaying axis is "sync", which carries the
    # left axis' ticks over (0.104, 0.207, ...) instead of round ones.
    fig.update_layout(hovermode="closest",
                      yaxis2=dict(title="log loss (nats)", overlaying="y", side="right",
                                  showgrid=False, rangemode="tozero", tickmode="auto"))
    return fig


def version_loss_figure(versions: pd.DataFrame, *, height: int = 300) -> go.Figure:
    """Log loss per model version (frame of ``loss.by_version``) with 95% error bars, in
    order of first appearance; a version below the minimum n is a hollow bar."""
    fig = go.Figure()
    if not versions.empty:
        names = [str(v) for v in versions["model_version"]]
        values = _values(versions["log_loss"])
        err_hi = [None if v is None or h is None else h - v
                  for v, h in zip(values, _values(versions["log_loss_ci_high"]))]
        err_lo = [None if v is None or lo is None else v - lo
                  for v, lo in zip(values, _values(versions["log_loss_ci_low"]))]
        low = [bool(v) for v in versions["low_confidence"]]
        fig.add_trace(go.Bar(
            x=names, y=values, customdata=[int(v) for v in versions["n"]],
            error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
            marker=dict(color=["rgba(0,0,0,0)" if lo else _EXEC_BLUE for lo in low],
                        line=dict(color=["#7f7f7f" if lo else _EXEC_BLUE for lo in low], width=2)),
            name="log loss per version",
            hovertemplate="%{x}: %{y:.4f} nats<br>n = %{customdata:,} labelled<extra></extra>"))
    base_layout(fig, x_title="model version", y_title="log loss (nats)", height=height)
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig
