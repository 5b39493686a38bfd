"""A self-contained HTML report of one Filter: what a stakeholder gets mailed after a review.

:func:`build_html` lays out the executive summary (the Executive page's tiles and trend), the
on-call state (the findings of :func:`analysis.report.build_report`: what broke, where, since
when; canary verdict; label stall), the top segment and drift findings, the model versions and
the business KPIs. Plotly figures are embedded with plotly.js inline (``include_plotlyjs=True``
once, then ``False``): the file opens offline and makes no network request. The output is a
function of the database and the Filter only (no wall-clock time, fixed figure ids), so the
dashboard's download button and ``lossboard export-report`` with the same filter write the
same bytes.

Also the small formatting helpers the Executive page shares with the report, so that both say
the same thing in the same words.
"""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import timedelta
from typing import Any

import duckdb
import pandas as pd
import plotly.graph_objects as go

from lossboard.dashboard import charts, monitoring_config
from lossboard.dashboard.analysis import (
    calibration, executive, labels, loss, report, segments, slo,
)
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.monitoring_config import Slo, format_minutes
from lossboard.errors import LossboardError

#: Segment values and drifted features listed in the report.
TOP_N = 10


# --------------------------------------------------------------------------- shared wording
def fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or an em dash for a figure that could not be computed."""
    return "—" if value is None or pd.isna(value) else format(value, spec)


def relative_change(current: float | None, reference: float | None) -> float | None:
    """(current − reference) / reference; None without both or with a zero reference."""
    if current is None or reference is None or reference == 0:
        return None
    return (current - reference) / reference


def _when(value: Any) -> str:
    return "—" if value is None else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def reference_name(flt: Filter) -> str:
    """Short name of the Filter's reference for a tile label."""
    if flt.reference_version is not None:
        return f"version {flt.reference_version}"
    if (flt.start is not None and flt.end is not None and flt.reference_end == flt.start
            and flt.reference_start is not None
            and flt.end - flt.start == flt.reference_end - flt.reference_start):
        return "previous period"
    return "reference window"


def describe_reference(flt: Filter) -> str:
    """One phrase: what the Filter compares with."""
    if not flt.has_reference:
        return "no reference window"
    what = reference_name(flt)
    if flt.reference_start is None and flt.reference_end is None:
        return f"compared with {what} (whole history)"
    return (f"compared with the {what} {_when(flt.reference_start)} to "
            f"{_when(flt.reference_end)} UTC")


def target_sentence(model: str | None, target: float | None, n_slos: int) -> str:
    """What the trend's SLO line means, or why there is none."""
    if target is not None:
        return (f"Drawn target: daily log loss at or below {target:g} nats (a line to read the "
                "trend against; error budget and burn rate come from configured SLOs).")
    if n_slos:
        return "No target line drawn: set one to read the trend against it."
    return (f"No SLO configured for model {model!r}: add an [[slo]] to lossboard.toml "
            "(docs/slo-alerts.md) for its error budget and burn rates, or set a target to draw "
            "it on the trend.")


def model_slos(config: monitoring_config.MonitoringConfig, model: str | None) -> tuple[Slo, ...]:
    """The configured SLOs of ``model``, in config order."""
    return tuple(s for s in config.slos if s.model == model)


#: The burn-rate windows of an SLO's status (slo.STATUS_WINDOWS) as the SLO table names them
#: (the page and the report show the same table: slo_status_row).
BURN_WINDOWS = {minutes: format_minutes(minutes).replace("h", " h").replace("d", " d")
                for minutes in slo.STATUS_WINDOWS}
BURN_COLUMN = "burn rate " + " · ".join(BURN_WINDOWS.values())
#: The column of the SLO table that says why a figure is "—" or not to be trusted.
NOTE_COLUMN = "note"


def slo_scope(spec: Slo) -> str:
    """What an SLO covers, in the sidebar's words: ``region=eu, version v2`` or ``whole model``."""
    parts = [f"{c}={v}" for c, v in spec.segments]
    parts += [f"version {', '.join(spec.versions)}"] if spec.versions else []
    return ", ".join(parts) or "whole model"


def current_loss_text(value: float | None, n: int, min_samples: int) -> str:
    """The SLO's current log loss with its n, marked when n is below the SLO's
    ``min_samples``: ``0.0003 (n = 4 < 100, too few)``."""
    if value is None or pd.isna(value):
        return f"— (n = {n:,})"
    if n < min_samples:
        return f"{value:.4f} (n = {n:,} < {min_samples:,}, too few)"
    return f"{value:.4f} (n = {n:,})"


def _events_word(spec: Slo) -> str:
    if spec.sli == "windows":
        return (f"no {format_minutes(spec.window_minutes)} window held "
                f"{spec.min_samples:,} labelled rows")
    return "no labelled prediction"


def burn_rate_missing(statuses: list[slo.SloStatus | None]) -> bool:
    """Whether an SLO has a burn rate without events, which a label stall usually explains."""
    return any(s is not None and any(b.burn_rate is None for b in s.burn_rates) for s in statuses)


def stall_start(stall: labels.LabelStall) -> Any | None:
    """When label delivery stalled (the onset, else the first mature hour judged); None when
    labels are not stalled."""
    return (stall.onset or stall.recent_start) if stall.stalled else None


def stalled_since(con: duckdb.DuckDBPyConnection, flt: Filter,
                  statuses: list[slo.SloStatus | None]) -> Any | None:
    """:func:`stall_start` for the SLO table's note, when a burn rate is missing; else None."""
    if not burn_rate_missing(statuses):
        return None
    try:
        return stall_start(labels.label_stall(con, flt))
    except LossboardError:
        return None


def slo_status_row(spec: Slo, status: Any | None, problem: str | None = None, *,
                   stalled_since: Any | None = None) -> dict[str, str]:
    """One SLO's status (``slo.status``) as a row of the Executive page's SLO table.

    Burn rates that cannot be computed (no event in their window) are "—" and the note says
    why; ``stalled_since``, when labels stopped arriving (``labels.label_stall``), is named as
    the likely cause. The current log loss carries its n and is marked "too few" below the
    SLO's ``min_samples``."""
    row = {"SLO": spec.name, "covers": slo_scope(spec),
           "objective": f"{spec.objective:.2%} of {spec.sli}, {spec.period_days:g} d"}
    if status is None:
        return {**row, "state": "not computed", "budget remaining": "—", BURN_COLUMN: "—",
                "target log loss": "—", "current log loss": "—", NOTE_COLUMN: problem or ""}
    rates = {b.window_minutes: b for b in status.burn_rates}
    shown = []
    missing = []
    for minutes, label in BURN_WINDOWS.items():
        rate = rates.get(minutes)
        if rate is None or rate.burn_rate is None:
            shown.append("—")
            missing.append(label)
        else:
            shown.append(f"{rate.burn_rate:.2f}")
    note = ""
    if missing:
        why = (f"labels stalled since {_when(stalled_since)} UTC (On-call, Labels)"
               if stalled_since is not None
               else "labels still to come (label lag) or too little traffic")
        note = (f"No burn rate over {', '.join(missing)}: {_events_word(spec)}, so no event "
                f"to count; {why}.")
    if status.target_log_loss is None and spec.sli == "predictions":
        target = f"per row ≤ {spec.max_row_loss:g}" if spec.max_row_loss is not None else "—"
    else:
        target = "—" if status.target_log_loss is None else f"{status.target_log_loss:.4f}"
    budget = status.budget_remaining
    return {**row, "state": status.state,
            "budget remaining": "—" if budget is None else f"{budget:.1%}",
            BURN_COLUMN: " · ".join(shown), "target log loss": target,
            "current log loss": current_loss_text(status.current_log_loss, status.current_n,
                                                  spec.min_samples),
            NOTE_COLUMN: note}


SLO_CAPTION = ("Budget remaining: the share of the SLO period's error budget left (negative once "
               "spent); burn rate: how fast it is spent (1 = exactly over the period, 14.4 = 2% "
               "of a 30-day budget in an hour). Definitions: docs/slo-alerts.md.")


def correlation_sentence(corr: executive.KpiCorrelation) -> str:
    if corr.r is None:
        return (f"too few days to correlate ({corr.n_days} with both a KPI value and a "
                "confident log loss; 3 needed), or one series is constant.")
    return (f"Pearson r = {corr.r:+.2f} over {corr.n_days} days (daily KPI vs daily log loss, "
            "confident days only). A correlation, not a cause.")


def version_table(versions: pd.DataFrame) -> pd.DataFrame:
    """The per-version summary columns shown on the page and in the report."""
    columns = ["model_version", "first_ts", "last_ts", "n_predictions", "n_labelled", "log_loss",
               "log_loss_ci_low", "log_loss_ci_high", "brier", "accuracy", "low_confidence"]
    return versions[[c for c in columns if c in versions.columns]]


def trend_filter(flt: Filter, days: int) -> Filter:
    """The ``days`` days up to the end of ``flt``'s range: the trend chart's window."""
    if flt.end is None:
        return flt
    return replace(flt, start=flt.end - timedelta(days=days))


def file_name(flt: Filter) -> str:
    start = "start" if flt.start is None else f"{flt.start:%Y%m%dT%H%M}"
    end = "end" if flt.end is None else f"{flt.end:%Y%m%dT%H%M}"
    model = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in (flt.model or "all"))
    return f"lossboard-{model}-{start}-{end}.html"


# --------------------------------------------------------------------------- HTML pieces
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1d1d1f;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.meta{color:#555}.tiles{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.tile{flex:1 1 200px;border:1px solid #ddd;border-radius:10px;padding:1rem 1.2rem}
.tile .label{color:#555;font-size:.95rem}.tile .value{font-size:2.4rem;font-weight:600}
.tile .note{color:#666;font-size:.85rem}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #eee;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}.caption{color:#555;font-size:.9rem;margin:.2rem 0 1rem}
.ok{color:#1a7f37}.bad{color:#b42318}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _tile(label: str, value: str, note: str) -> str:
    return (f'<div class="tile"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="note">{_e(note)}</div></div>')


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return '<p class="caption">Nothing to list.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in _flat(value).items())
    return str(value)


def _flat(where: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in where.items():
        out.update(_flat(value) if isinstance(value, dict) else {key: value})
    return out


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats to 9 decimal places, p-values to 6 significant digits: a function of the data,
    not of the order DuckDB's threads summed in.

    Significant digits do not do for differences: an excess loss of 0.00034 is a difference
    of two means near 0.3, so the sums' last-bit noise (about 1e-15 absolute) sits in its
    12th significant digit, which then differed between two runs over the same data; 9
    decimals leave that noise 1e5 times below the last digit kept. A p-value far in the tail
    moves by about t² times its t statistic's relative error (p = 5.6e-80 at t = 19 moved in
    its 12th digit), so it keeps 6 significant digits, every digit a p-value means."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            if "p_value" in col or "pvalue" in col:
                out[col] = out[col].map(lambda v: v if pd.isna(v) else float(f"{v:.6g}"))
            else:
                out[col] = out[col].map(lambda v: v if pd.isna(v) else round(v, 9) + 0.0)
    return out


class _Figures:
    """Figures to HTML: plotly.js inline with the first one only, ids fixed (same bytes)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: go.Figure, caption: str) -> str:
        self.count += 1
        div = fig.to_html(full_html=False, include_plotlyjs=self.count == 1,
                          div_id=f"lossboard-figure-{self.count}",
                          config={"displaylogo": False, "responsive": True})
        return f'{div}<p class="caption">{_e(caption)}</p>'


def top_drift_rows(drift: list[dict[str, Any]], top: int = TOP_N) -> list[dict[str, Any]]:
    """The report's drift rows worth listing: those with a PSI (``no_data`` rows compare with
    nothing and are left out), most drifted first, at most ``top``."""
    rows = [d for d in drift if d.get("status") != "no_data" and d.get("psi") is not None]
    return sorted(rows, key=lambda d: (-d["psi"], str(d["feature"])))[:top]


def _drift_section(drift: list[dict[str, Any]] | None) -> list[str]:
    if drift is None:
        return ['<p class="caption">Drift was not computed for this report.</p>']
    rows = top_drift_rows(drift)
    if not rows:
        return ['<p class="caption">No reference data to compare with: every feature and the '
                "score are no_data (the reference window holds no value of this filter, or the "
                "window none). Choose a reference window or version with data.</p>"]
    left_out = sum(d.get("status") == "no_data" for d in drift)
    note = (f" {left_out} feature(s) without data in either window are not listed."
            if left_out else "")
    return [_table(rows, ["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "status",
                          "n_reference", "n_current"]),
            '<p class="caption">PSI and exact KS of each feature (and the score) in the window '
            "against the reference window, most drifted first (by PSI); status watch at PSI "
            f"0.1, act at 0.25.{_e(note)}</p>"]


# --------------------------------------------------------------------------- the report
def build_html(con: duckdb.DuckDBPyConnection, flt: Filter, *, bins: int = 10,
               min_samples: int = loss.DEFAULT_MIN_SAMPLES, include_drift: bool = True,
               trend_days: int = 30, slo_target: float | None = None,
               slos: tuple[Slo, ...] = ()) -> str:
    """The report of ``flt`` (module docstring) as one HTML document.

    The window and reference default as in ``lossboard report`` (``report.resolve_windows``).
    ``slos``: configured SLOs (those of the report's model are listed with their budget and
    burn rates); ``slo_target``: a target line on the trend. Raises
    :class:`lossboard.errors.QueryError` for a Filter the analysis rejects (unknown model,
    several models and none chosen).
    """
    flt = report.resolve_windows(con, flt)
    slos = tuple(spec for spec in slos if spec.model == flt.model)
    rep = report.build_report(con, flt, bins=bins, min_samples=min_samples,
                              include_drift=include_drift)
    summary = loss.overall(con, flt, min_samples=min_samples, auc=False)
    # No reference when the data spans a single instant (report.resolve_windows): no change.
    reference = (loss.overall(con, flt.reference(), min_samples=min_samples, auc=False)
                 if flt.has_reference else None)
    ref_loss, ref_n = (reference.log_loss, reference.n) if reference else (None, 0)
    cal = calibration.calibration_errors(con, flt, bins=bins, min_samples=min_samples)
    days = loss.by_bucket(con, trend_filter(flt, trend_days), bucket="day",
                          min_samples=min_samples, auc=False)
    versions = loss.by_version(con, flt, min_samples=min_samples, auc=False)
    kpis = executive.kpi_vs_loss(con, trend_filter(flt, trend_days), min_samples=min_samples)
    excess = segments.excess_loss_all(con, replace(flt, reference_start=None, reference_end=None,
                                                   reference_version=None),
                                      min_samples=min_samples)
    # DuckDB sums in parallel, so the last bits of a float vary from run to run; rounding
    # (_rounded) makes the file a function of the data (same bytes every time).
    days, versions, excess = _rounded(days), _rounded(versions), _rounded(excess)
    kpis = replace(kpis, frame=_rounded(kpis.frame))
    figure = _Figures()
    parts: list[str] = []

    title = f"lossboard report: {flt.model}"
    parts.append(f"<h1>{_e(title)}</h1>")
    parts.append(f'<p class="meta">{_e(_when(flt.start))} to {_e(_when(flt.end))} UTC '
                 f"(half-open) · {_e(describe_reference(flt))} · filter "
                 f"<code>{_e(flt.to_query_string())}</code></p>")

    # Executive summary.
    parts.append("<h2>Executive summary</h2>")
    change = relative_change(summary.log_loss, ref_loss)
    coverage = summary.n_labelled / summary.n_predictions if summary.n_predictions else None
    parts.append('<div class="tiles">' + "".join([
        _tile("Log loss", fmt(summary.log_loss, ".4f"),
              f"n = {summary.n:,} labelled; 95% interval {fmt(summary.log_loss_ci_low, '.4f')} "
              f"to {fmt(summary.log_loss_ci_high, '.4f')}"),
        _tile(f"Change vs {reference_name(flt)}", fmt(change, "+.1%"),
              f"reference log loss {fmt(ref_loss, '.4f')} (n = {ref_n:,})"),
        _tile("Calibration ECE", fmt(cal.ece, ".4f"), f"{cal.bins} equal-width bins, n = {cal.n:,}"),
        _tile("Label coverage", fmt(coverage, ".1%"),
              f"{summary.n_labelled:,} of {summary.n_predictions:,} predictions"),
    ]) + "</div>")
    if slos:
        statuses: list[slo.SloStatus | None] = []
        problems: list[str | None] = []
        for spec in slos:
            try:
                statuses.append(slo.status(con, spec, flt))
                problems.append(None)
            except LossboardError as exc:
                statuses.append(None)
                problems.append(str(exc))
        stalled = stalled_since(con, flt, statuses)
        rows = [slo_status_row(spec, status, problem, stalled_since=stalled)
                for spec, status, problem in zip(slos, statuses, problems)]
        parts.append(_table(rows, list(rows[0])))
        parts.append(f'<p class="caption">{_e(SLO_CAPTION)}</p>')
    parts.append(f"<p>{_e(target_sentence(flt.model, slo_target, len(slos)))}</p>")
    parts.append(figure(charts.loss_trend_figure(days, slo_target=slo_target,
                                                 selected=(flt.start, flt.end)),
                        f"Daily log loss over the {trend_days} days up to the end of the window "
                        "(nats, lower is better) with its 95% interval (blue band); yellow: the report's "
                        "window; hollow grey "
                        f"markers: days with fewer than {min_samples:,} labelled predictions."))

    # On-call state.
    parts.append("<h2>On-call state: what broke, where, since when</h2>")
    findings = rep["findings"]
    if findings:
        parts.append(_table(findings, ["what", "where", "since", "until", "detail"]))
    else:
        parts.append('<p class="ok">No finding in this window: nothing broke.</p>')
    can = rep.get("canary")
    if can:
        parts.append(f"<p>Canary <b>{_e(can['candidate'])}</b> vs baseline "
                     f"<b>{_e(can['baseline'])}</b>: verdict <b>{_e(can['verdict'])}</b> "
                     f"({_e(can.get('reason'))}).</p>")
    stall = rep["labels"]["stall"]
    lag = rep["labels"]["lag_hours"]
    parts.append(f"<p>Label lag p50 {fmt(lag.get('p50'), '.1f')} h, p90 {fmt(lag.get('p90'), '.1f')} h; "
                 f"label delivery {'<b class=bad>stalled</b>' if stall.get('stalled') else 'normal'}. "
                 f"NaN scores: {rep['overall']['n_nan_scores']:,}; ±inf: "
                 f"{rep['overall']['n_inf_scores']:,}.</p>")

    # Where: segments and drift.
    parts.append("<h2>Top segment findings</h2>")
    excess = excess[excess["excess_loss"].notna()]
    if excess.empty:
        parts.append('<p class="caption">No segment value to compare with the rest: no segment '
                     "columns, no labelled predictions, or the filter keeps one value of each "
                     "segment column.</p>")
    else:
        parts.append(figure(charts.excess_loss_figure(excess, top=TOP_N),
                            "Segment values ranked by excess log loss over the rest of the window "
                            "(nats); red: significant (Welch's test); hollow: low confidence."))
    parts.append("<h2>Top drift findings</h2>")
    parts.extend(_drift_section(rep.get("drift")))

    # Versions and KPIs.
    parts.append("<h2>Model versions</h2>")
    parts.append(figure(charts.version_loss_figure(versions),
                        "Log loss per model version with its 95% interval; hollow: low confidence."))
    parts.append(_table(version_table(versions).to_dict("records"),
                        list(version_table(versions).columns)))
    parts.append("<h2>Business KPIs</h2>")
    if not kpis.correlations:
        parts.append('<p class="caption">No business KPI points in this window.</p>')
    for corr in kpis.correlations:
        parts.append(figure(charts.kpi_loss_figure(kpis.frame, corr.kpi),
                            f"{corr.kpi} per day beside the daily log loss: "
                            f"{correlation_sentence(corr)}"))
    parts.append('<p class="caption">Made by lossboard from the database as of its newest '
                 "prediction; definitions in docs/metrics.md.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
