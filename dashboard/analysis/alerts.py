"""Alerts: multiwindow burn-rate alerts on SLOs and threshold rules, evaluated at any time.

:func:`evaluate` runs every enabled rule of a :class:`MonitoringConfig` at an as-of time and
returns the firing alerts, grouped by (rule, model, version, segment), each with a severity
(``page`` / ``ticket``), the time its condition began (found by looking back over 5-minute
steps), the current value against the threshold and a dashboard link with the filter in the
query string. docs/slo-alerts.md is the reference; the rules in short:

``slo_burn_rate:<slo>``
    Google SRE workbook multiwindow, multi-burn-rate: a policy fires when the burn rate
    (:mod:`slo`) is above ``factor`` over both its long and its short window (defaults: page at
    14.4x over 1 h and 5 m, or 6x over 6 h and 30 m; ticket at 1x over 3 d and 6 h).
``nonfinite_scores`` / ``extreme_scores``
    Share of NaN / ±inf scores among all scores, or of finite scores below ``low`` / above
    ``high``, over the trailing ``window``, per model version; at least ``min_samples`` scores.
``activation_tail``
    Share of finite activations with ``|a| > activation_threshold`` over the window, per
    activation column, above ``threshold`` for at least ``for`` (default 1 h).
``label_stall``
    Labels of the model that arrived in the window, divided by the number expected from the
    arrival rate of the ``baseline`` before it, below ``threshold``; at least ``min_samples``
    expected.
``drift``
    PSI (drift.feature_drift / score_drift) of any feature or the score over the window against
    the reference window, above ``threshold``; overall and per value of ``[alerts] segments``.
``canary``
    canary.compare_versions of the pair detect_pair finds in the window: verdict ``fail``.

Replay: every rule sees only predictions made before the as-of time, and the SLO and
label-stall rules only labels that had arrived by then (``label_ts``), so they give the answer
of that time. The canary rule (canary.compare_versions) uses the labels stored now for those
predictions, so a replay of it can only be as early as or earlier than live evaluation.
Alerts evaluated inside a ``[[maintenance]]`` window of their model are suppressed.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from lossboard.dashboard.analysis import base, canary, drift, slo
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.labels import label_relation, stall_onset
from lossboard.dashboard.analysis.saturation import run_query
from lossboard.dashboard.monitoring_config import (
    Maintenance,
    MonitoringConfig,
    Rule,
    format_minutes,
)
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

SEVERITY_RANK = {"page": 2, "ticket": 1}
#: Exit codes of ``lossboard alerts``.
EXIT_OK, EXIT_TICKET, EXIT_PAGE = 0, 1, 2
_STEP_US = slo.STEP_US
_STEPS_PER_HOUR = 3_600_000_000 // _STEP_US


@dataclass(frozen=True)
class Alert:
    """One firing (or suppressed) alert.

    ``rule`` (``slo_burn_rate:<name>`` for an SLO), ``severity`` (page | ticket), ``model``,
    ``version`` / ``segment`` (``"region=eu"``; None: all), ``since`` (UTC: the first 5-minute
    step of the run of steps at which the condition held, up to ``as_of``; the look-back is
    ``[alerts] lookback``, so ``since`` is at most that far back), ``as_of`` (the evaluation
    time), ``value`` vs ``threshold`` (``comparison`` ``>`` or ``<``: how value must compare
    to fire), ``n`` (the samples behind the value), ``message`` (one sentence), ``url`` (the
    dashboard view: model, version, segment and the time range around the incident),
    ``details`` (rule-specific (name, value) pairs as text), ``suppressed_by`` (the
    maintenance reason when suppressed, else None), ``fingerprint`` (stable per group key).
    """

    rule: str
    severity: str
    model: str
    version: str | None
    segment: str | None
    since: datetime
    as_of: datetime
    value: float
    threshold: float
    comparison: str
    n: int
    message: str
    url: str
    details: tuple[tuple[str, str], ...] = ()
    suppressed_by: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The grouping key: (rule, model, version, segment), None as ``""``."""
        return (self.rule, self.model, self.version or "", self.segment or "")

    @property
    def fingerprint(self) -> str:
        """A stable id of the group key (for receivers that deduplicate across runs)."""
        return hashlib.sha256("\x1f".join(self.key).encode()).hexdigest()[:16]

    @property
    def suppressed(self) -> bool:
        return self.suppressed_by is not None

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types; times ISO-8601 UTC with ``Z``."""
        out = asdict(self)
        for key in ("since", "as_of"):
            out[key] = _iso(out[key])
        out["details"] = dict(self.details)
        out["fingerprint"] = self.fingerprint
        out["suppressed"] = self.suppressed
        return out


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- grouping
def group(alerts: list[Alert]) -> list[Alert]:
    """One alert per (rule, model, version, segment): the most severe one, with the earliest
    ``since`` of the group and the union of the details; ordered by severity (page first),
    then ``since``, then the key."""
    groups: dict[tuple[str, str, str, str], Alert] = {}
    for alert in alerts:
        seen = groups.get(alert.key)
        if seen is None:
            groups[alert.key] = alert
            continue
        top = max((seen, alert), key=lambda a: (SEVERITY_RANK[a.severity], a.value))
        details = dict(seen.details)
        details.update(alert.details)
        groups[alert.key] = replace(top, since=min(seen.since, alert.since),
                                    details=tuple(sorted(details.items())))
    return sorted(groups.values(), key=lambda a: (-SEVERITY_RANK[a.severity], a.since, a.key))


def suppress(alerts: list[Alert], maintenance: tuple[Maintenance, ...]) -> list[Alert]:
    """Mark the alerts evaluated inside a maintenance window of their model as suppressed."""
    out = []
    for alert in alerts:
        window = next((m for m in maintenance if m.covers(alert.model, alert.as_of)), None)
        out.append(alert if window is None else replace(alert, suppressed_by=window.reason))
    return out


def exit_code(alerts: list[Alert]) -> int:
    """2 when an unsuppressed page fires, 1 when only tickets do, else 0."""
    live = [a for a in alerts if not a.suppressed]
    if any(a.severity == "page" for a in live):
        return EXIT_PAGE
    return EXIT_TICKET if live else EXIT_OK


# --------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Ctx:
    con: duckdb.DuckDBPyConnection
    config: MonitoringConfig
    model: str
    at: datetime

    @property
    def at_us(self) -> int:
        return slo._epoch_us(self.at)

    @property
    def lookback_start(self) -> datetime:
        return self.at - timedelta(minutes=self.config.lookback_minutes)


def _url(ctx: _Ctx, version: str | None, segment: tuple[tuple[str, str], ...],
         since: datetime) -> str:
    view = Filter(model=ctx.model, versions=(version,) if version else (), segments=segment,
                  start=min(since, ctx.at) - timedelta(days=1), end=ctx.at)
    return f"{ctx.config.dashboard_url}?{view.to_query_string()}"


def _segment_text(segment: tuple[tuple[str, str], ...]) -> str | None:
    return ",".join(f"{c}={v}" for c, v in segment) or None


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any],
         what: str) -> pd.DataFrame:
    # DuckDB refuses parameters a query does not use: bind only those that appear.
    used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
    return run_query(con, sql, used, what)


def _rolling(ctx: _Ctx, rows_sql: str, params: dict[str, Any], *, key: str, num: str,
             den: str, window_minutes: int, baseline_minutes: int = 0,
             what: str) -> pd.DataFrame:
    """``key, step_end, num, den`` (and ``base``: ``num`` summed over the ``baseline_minutes``
    before each window) for every 5-minute step of the look-back, per key, from 5-minute sums
    of ``rows_sql`` (which has ``t_us``, epoch microseconds). Window ``[step_end - window,
    step_end)``."""
    window_us = window_minutes * 60_000_000
    base_us = baseline_minutes * 60_000_000
    first_us = slo._epoch_us(ctx.lookback_start)
    p = {**params, "al_step": _STEP_US, "al_lo": first_us - window_us - base_us,
         "al_hi": ctx.at_us - _STEP_US, "al_first": first_us, "al_at": ctx.at_us,
         "al_back": window_us - _STEP_US, "al_base_hi": window_us,
         "al_base_lo": window_us + base_us - _STEP_US}
    base_col = (", sum(num) OVER wb AS base" if baseline_minutes else "")
    base_frame = (", wb AS (PARTITION BY key ORDER BY b RANGE BETWEEN $al_base_lo PRECEDING "
                  "AND $al_base_hi PRECEDING)" if baseline_minutes else "")
    sql = f"""
WITH r AS ({rows_sql}),
agg AS (
  SELECT {key} AS key, t_us - t_us % $al_step AS b, {num} AS num, {den} AS den
  FROM r WHERE t_us >= $al_lo AND t_us < $al_at GROUP BY ALL
),
grid AS (SELECT key, unnest(generate_series(CAST($al_lo AS BIGINT), CAST($al_hi AS BIGINT),
                                            CAST($al_step AS BIGINT))) AS b
         FROM (SELECT DISTINCT key FROM agg)),
dense AS (
  SELECT grid.key, grid.b, coalesce(agg.num, 0) AS num, coalesce(agg.den, 0) AS den
  FROM grid LEFT JOIN agg ON agg.key IS NOT DISTINCT FROM grid.key AND agg.b = grid.b
)
SELECT key, step_end, num, den{', base' if baseline_minutes else ''} FROM (
  SELECT key, b, make_timestamptz(b + $al_step) AS step_end,
         CAST(sum(num) OVER w AS DOUBLE) AS num, CAST(sum(den) OVER w AS DOUBLE) AS den{base_col}
  FROM dense
  WINDOW w AS (PARTITION BY key ORDER BY b RANGE BETWEEN $al_back PRECEDING AND CURRENT ROW)
         {base_frame}
)
WHERE b >= $al_first
ORDER BY key, b"""
    frame = _run(ctx.con, sql, p, what)
    frame["step_end"] = pd.to_datetime(frame["step_end"], utc=True)
    return frame


def _trailing_run(steps: pd.Series, condition: np.ndarray,
                  known: np.ndarray | None = None) -> datetime | None:
    """The first step of the run of True that reaches the last step; None if the last step is
    not True. ``known``: False marks a step that cannot be judged (too few samples): it
    neither breaks the run nor starts it, so a quiet night hour does not reset an incident's
    start (None: every step is known)."""
    if len(condition) == 0 or not condition[-1]:
        return None
    broken = ~condition if known is None else (known & ~condition)
    false = np.flatnonzero(broken)
    start = 0 if len(false) == 0 else false[-1] + 1
    start += int(np.argmax(condition[start:]))  # an unknown step does not start the run
    return steps.iloc[start].to_pydatetime()


def _firing_since(frame: pd.DataFrame, ctx: _Ctx, condition: np.ndarray,
                  rule: Rule, known: np.ndarray | None = None) -> datetime | None:
    """``since`` when the trailing run of the condition (:func:`_trailing_run`, steps not
    ``known`` bridged) ends at the as-of step and has lasted ``for`` (its first step at least
    ``for`` before as-of), else None."""
    if frame.empty or frame["step_end"].iloc[-1].to_pydatetime() != ctx.at:
        return None
    since = _trailing_run(frame["step_end"], condition, known)
    if since is None or ctx.at - since < timedelta(minutes=rule.for_minutes):
        return None
    return since


def _threshold_alerts(ctx: _Ctx, rule: Rule, frame: pd.DataFrame, *, below: bool = False,
                      key_kind: str | None, what: str, unit: str) -> list[Alert]:
    """Alerts of a ratio rule from :func:`_rolling`'s frame with the caller's ``value`` and
    ``support`` (the samples behind it) columns; ``key_kind``: the frame's key is a model
    ``version``, an activation ``column``, or nothing (None)."""
    alerts = []
    for key, part in frame.groupby("key", sort=True, dropna=False):
        part = part.reset_index(drop=True)
        value = part["value"].to_numpy(dtype=float, na_value=np.nan)
        support = part["support"].to_numpy(dtype=float)
        # A step with fewer than min_samples is unknown, not "recovered": it does not end
        # the run (docs/slo-alerts.md, "Every alert").
        enough = (support >= rule.min_samples) & (support > 0) & ~np.isnan(value)
        cond = enough & ((value < rule.threshold) if below else (value > rule.threshold))
        since = _firing_since(part, ctx, cond, rule, known=enough)
        if since is None:
            continue
        version = str(key) if key_kind == "version" else None
        details = (("column", str(key)),) if key_kind == "column" else ()
        seen = np.flatnonzero(support > 0)
        if not (enough & ~cond).any() and seen.size and seen[0] <= _STEPS_PER_HOUR:
            # No step of the look-back said "not firing", and the key had rows from its first
            # hour on (a quiet night's too few are unknown, not absent): it began at since or
            # earlier. A key first seen later (a version rolled out inside the look-back)
            # began there: no flag.
            details += (("since_is_lookback_limit", "true"),)
        current = float(value[-1])
        alerts.append(Alert(
            rule=rule.name, severity=rule.severity, model=ctx.model, version=version,
            segment=None, since=since, as_of=ctx.at, value=current, threshold=rule.threshold,
            comparison="<" if below else ">", n=int(support[-1]),
            message=(f"{what}{' of ' + str(key) if key_kind == 'column' else ''}: "
                     f"{current:.1%}{unit} over the last {format_minutes(rule.window_minutes)} "
                     f"({'<' if below else '>'} {rule.threshold:.1%}; model {ctx.model}"
                     f"{', version ' + version if version else ''}) since {_iso(since)}"),
            url=_url(ctx, version, (), since), details=details))
    return alerts


def _score_expr(ctx: _Ctx) -> str:
    if base.model_info(ctx.con, ctx.model).task == "binary":
        return "p"
    return "list_max(probs) / list_sum(probs)"


def _prediction_rows(ctx: _Ctx, extra: tuple[str, ...] = (),
                     window_minutes: int = 0) -> base.Rows:
    lo = ctx.lookback_start - timedelta(minutes=window_minutes)
    rows = base.prediction_rows(ctx.con, Filter(model=ctx.model, start=lo, end=ctx.at), extra)
    return base.Rows(f"SELECT *, epoch_us(ts) AS t_us FROM ({rows.sql})", rows.params)


# --------------------------------------------------------------------------- rules
def _nonfinite(ctx: _Ctx, rule: Rule) -> list[Alert]:
    rows = _prediction_rows(ctx, window_minutes=rule.window_minutes)
    frame = _rolling(ctx, rows.sql, rows.params, key="model_version",
                     num="count(CASE WHEN NOT score_ok THEN 1 END)", den="count(*)",
                     window_minutes=rule.window_minutes, what="evaluating nonfinite_scores")
    frame["value"] = frame["num"] / frame["den"].where(frame["den"] > 0)
    frame["support"] = frame["den"]
    return _threshold_alerts(ctx, rule, frame, key_kind="version", what="NaN/inf scores",
                             unit=" of all scores")


def _extreme(ctx: _Ctx, rule: Rule) -> list[Alert]:
    rows = _prediction_rows(ctx, window_minutes=rule.window_minutes)
    s = _score_expr(ctx)
    frame = _rolling(ctx, rows.sql, {**rows.params, "al_low": rule.low, "al_high": rule.high},
                     key="model_version",
                     num=f"count(CASE WHEN score_ok AND ({s} < $al_low OR {s} > $al_high) THEN 1 END)",
                     den="count(CASE WHEN score_ok THEN 1 END)",
                     window_minutes=rule.window_minutes, what="evaluating extreme_scores")
    frame["value"] = frame["num"] / frame["den"].where(frame["den"] > 0)
    frame["support"] = frame["den"]
    return _threshold_alerts(ctx, rule, frame, key_kind="version",
                             what=f"scores below {rule.low:g} or above {rule.high:g}",
                             unit=" of finite scores")


def _activation(ctx: _Ctx, rule: Rule) -> list[Alert]:
    columns = tuple(name for name, _ in base.columns_with_role(ctx.con, "activation"))
    if not columns:
        return []
    rows = _prediction_rows(ctx, columns, window_minutes=rule.window_minutes)
    items = ", ".join(f"{{'col': {i}, 'a': CAST({quote_ident(c)} AS DOUBLE)}}"
                      for i, c in enumerate(columns))
    unnested = f"SELECT t_us, unnest([{items}], recursive := true) FROM ({rows.sql})"
    frame = _rolling(ctx, unnested, {**rows.params, "al_act": rule.activation_threshold},
                     key="col",
                     num="count(CASE WHEN isfinite(a) AND abs(a) > $al_act THEN 1 END)",
                     den="count(CASE WHEN isfinite(a) THEN 1 END)",
                     window_minutes=rule.window_minutes, what="evaluating activation_tail")
    frame["key"] = [columns[int(i)] for i in frame["key"]]
    frame["value"] = frame["num"] / frame["den"].where(frame["den"] > 0)
    frame["support"] = frame["den"]
    alerts = _threshold_alerts(ctx, rule, frame, key_kind="column",
                               what=f"activations beyond |a| > {rule.activation_threshold:g}",
                               unit="")
    if len(alerts) <= 1:
        return alerts
    # One alert per model: the most saturated column leads, every firing column is listed.
    top = max(alerts, key=lambda a: a.value)
    details = tuple((f"frac_tail[{dict(a.details)['column']}]", f"{a.value:.4f}") for a in alerts)
    return [replace(top, since=min(a.since for a in alerts), details=top.details + details)]


def _label_stall(ctx: _Ctx, rule: Rule) -> list[Alert]:
    sql, params = label_relation(ctx.con, Filter(model=ctx.model, end=ctx.at))
    # _rolling keeps arrivals before as-of only (t_us < as-of).
    arrivals = f"SELECT epoch_us(label_ts) AS t_us FROM ({sql}) WHERE labelled"
    frame = _rolling(ctx, arrivals, params, key="'all'", num="count(*)", den="count(*)",
                     window_minutes=rule.window_minutes, baseline_minutes=rule.baseline_minutes,
                     what="evaluating label_stall")
    expected = frame["base"].astype(float) * rule.window_minutes / rule.baseline_minutes
    frame["support"] = expected
    frame["value"] = frame["num"] / expected.where(expected > 0)
    alerts = _threshold_alerts(ctx, rule, frame, below=True, key_kind=None,
                               what="labels arriving", unit=" of the usual rate")
    if not alerts:
        return []
    # The window's rate falls below the threshold only once the drop fills enough of the
    # window (13:20 for a drop at 12:00 with a 3 h window): since is the hour arrivals
    # dropped (labels.stall_onset), the start a user investigating "since when" needs.
    onset = stall_onset(ctx.con, Filter(model=ctx.model), end=ctx.at, ratio=rule.threshold,
                        search_start=ctx.lookback_start,
                        baseline_days=max(1, rule.baseline_minutes // (24 * 60)))
    out = []
    for a in alerts:
        since = a.since if onset is None else max(min(onset, a.since), ctx.lookback_start)
        message = a.message if since == a.since else a.message.replace(
            f"since {_iso(a.since)}", f"since {_iso(since)} (arrivals dropped then)")
        # Keep the threshold rule's details (since_is_lookback_limit) beside the counts.
        out.append(replace(a, since=since, message=message, url=_url(ctx, None, (), since),
                           details=a.details + (("arrived", f"{int(frame['num'].iloc[-1])}"),
                                                ("expected", f"{frame['support'].iloc[-1]:.1f}"))))
    return out


def top_segment_values(con: duckdb.DuckDBPyConnection, flt: Filter, columns: tuple[str, ...],
                       k: int) -> list[tuple[str, str]]:
    """(column, value) of the ``k`` busiest values of each segment column in ``flt`` (by
    predictions, then value), column by column: the bounded set of segments alerts and
    metrics look at."""
    known = base.predictions_columns(con)
    out: list[tuple[str, str]] = []
    for column in columns:
        if column not in known:
            raise QueryError(f"[alerts] segments: no predictions column {column!r} "
                             f"(known: {', '.join(sorted(known))})")
        rows = base.prediction_rows(con, flt, (column,))
        values = con.execute(
            f"SELECT v, count(*) AS n FROM (SELECT CAST({quote_ident(column)} AS VARCHAR) AS v "
            f"FROM ({rows.sql})) WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT $al_k",
            {**rows.params, "al_k": k}).fetchall()
        out.extend((column, str(v)) for v, _ in values)
    return out


def _segment_values(ctx: _Ctx, start: datetime) -> list[tuple[tuple[str, str], ...]]:
    """``()`` (all) plus each of :func:`top_segment_values` in the window."""
    pairs = top_segment_values(ctx.con, Filter(model=ctx.model, start=start, end=ctx.at),
                               ctx.config.segment_columns, ctx.config.max_segment_values)
    return [()] + [(pair,) for pair in pairs]


def _drift(ctx: _Ctx, rule: Rule) -> list[Alert]:
    start = ctx.at - timedelta(minutes=rule.window_minutes)
    if rule.reference_start is not None:
        ref_start, ref_end = rule.reference_start, rule.reference_end
    else:  # the week before the window
        ref_start, ref_end = start - timedelta(days=7), start
    if ref_start >= ctx.at:
        return []
    alerts = []
    # Only PSI is read: no exact KS; the features and the score in one pass.
    features = list(rule.features) or [n for n, _ in base.columns_with_role(ctx.con, "feature")]
    for segment in _segment_values(ctx, start):
        flt = Filter(model=ctx.model, start=start, end=ctx.at, segments=segment,
                     reference_start=ref_start, reference_end=min(ref_end, ctx.at))
        results = drift.feature_drift(ctx.con, flt, features=[*features, drift.SCORE],
                                      ks=False).to_dict(orient="records")
        hits = [r for r in results
                if r["psi"] is not None and not pd.isna(r["psi"]) and r["psi"] > rule.threshold
                and r["n_reference"] >= rule.min_samples and r["n_current"] >= rule.min_samples]
        if not hits:
            continue
        hits.sort(key=lambda r: -r["psi"])
        top = hits[0]
        since, at_limit = _drift_since(ctx, rule, segment, [r["feature"] for r in hits],
                                       ref_start, min(ref_end, ctx.at), start)
        seg = _segment_text(segment)
        listed = ", ".join(f"{_feature_text(r['feature'])} {r['psi']:.2f}" for r in hits)
        alerts.append(Alert(
            rule=rule.name, severity=rule.severity, model=ctx.model, version=None, segment=seg,
            since=since, as_of=ctx.at, value=float(top["psi"]), threshold=rule.threshold,
            comparison=">", n=int(top["n_current"]),
            message=(f"PSI of {listed} > "
                     f"{rule.threshold:g} over the last {format_minutes(rule.window_minutes)} vs "
                     f"{_iso(ref_start)}..{_iso(min(ref_end, ctx.at))} (model {ctx.model}"
                     f"{', ' + seg if seg else ''}) since {_iso(since)}"),
            url=_url(ctx, None, segment, since),
            details=tuple((f"psi[{_feature_name(r['feature'])}]", f"{r['psi']:.4f}")
                          for r in hits) + ((("since_is_lookback_limit", "true"),)
                                            if at_limit else ())))
    return alerts


def _feature_name(feature: str) -> str:
    """A drift result's feature as users know it: ``"score"`` for drift.SCORE (the name the
    report and the pages use), else the column name."""
    return "score" if feature == drift.SCORE else feature


def _feature_text(feature: str) -> str:
    """A drift result's feature in a sentence: ``"the score"`` for drift.SCORE."""
    return "the score" if feature == drift.SCORE else feature


def _drift_since(ctx: _Ctx, rule: Rule, segment: tuple[tuple[str, str], ...],
                 features: list[str], ref_start: datetime, ref_end: datetime,
                 window_start: datetime) -> tuple[datetime, bool]:
    """(since, at the look-back limit): the first UTC day of the run of days, up to as-of, on
    which one of ``features`` had PSI above the threshold (days with fewer than min_samples
    values neither break nor start the run); the window's start when the current day does
    not show it. The flag is True when the run reaches back to the first day the look-back
    could judge (the drift began earlier still, or at the latest then)."""
    lo = max(ctx.lookback_start, ref_end) if ref_end <= window_start else ctx.lookback_start
    if lo >= window_start:
        return window_start, True
    flt = Filter(model=ctx.model, start=lo, end=ctx.at, segments=segment,
                 reference_start=ref_start, reference_end=ref_end)
    daily = drift.daily_drift(ctx.con, flt, feature=features, ks=False)  # PSI only is read
    if daily.empty:
        return window_start, False
    enough = (daily["n_current"] >= rule.min_samples) & (daily["n_reference"] >= rule.min_samples)
    daily = daily[enough]
    drifted = daily.assign(hit=daily["psi"].fillna(0) > rule.threshold).groupby("day")["hit"].any()
    drifted = drifted.sort_index()
    if drifted.empty or not drifted.iloc[-1]:
        return window_start, False
    flags = drifted.to_numpy()
    false = np.flatnonzero(~flags)
    first_day = drifted.index[0 if len(false) == 0 else false[-1] + 1]
    since = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    return max(min(since, window_start), ctx.lookback_start), len(false) == 0


def _canary(ctx: _Ctx, rule: Rule) -> list[Alert]:
    # The pair is named by the versions' first predictions ever (canary.detect_pair): the
    # same pair in every window, so the search for since compares like with like.
    first_seen = canary.version_first_seen(ctx.con, ctx.model)

    def verdict(at: datetime) -> canary.CanaryResult | None:
        flt = Filter(model=ctx.model, start=at - timedelta(minutes=rule.window_minutes), end=at)
        pair = canary.detect_pair(ctx.con, flt, first_seen=first_seen)
        if pair is None:
            return None
        return canary.compare_versions(ctx.con, flt, baseline=pair[0], candidate=pair[1],
                                       min_samples=rule.min_samples,
                                       max_relative_increase=rule.threshold, alpha=rule.alpha)

    result = verdict(ctx.at)
    if result is None or result.verdict != "fail":
        return []
    # The earliest hour from which the verdict is fail, by bisection over the whole hours of
    # the look-back (verdicts are taken to stay fail once failed).
    lo_h = math.ceil(slo._epoch_us(ctx.lookback_start) / 3_600_000_000)
    hi_h = slo._epoch_us(ctx.at) // 3_600_000_000
    first_h = lo_h
    since = ctx.at
    while lo_h <= hi_h:
        mid = (lo_h + hi_h) // 2
        at = slo._from_us(mid * 3_600_000_000)
        r = verdict(at)
        if r is not None and r.verdict == "fail" and r.candidate == result.candidate:
            since, hi_h = at, mid - 1
        else:
            lo_h = mid + 1
    return [Alert(
        rule=rule.name, severity=rule.severity, model=ctx.model, version=result.candidate,
        segment=None, since=since, as_of=ctx.at, value=float(result.relative_delta),
        threshold=rule.threshold, comparison=">", n=result.n_candidate,
        message=f"canary {result.candidate} fails against {result.baseline}: {result.reason}",
        url=_url(ctx, None, (), since),
        details=(("baseline", result.baseline), ("candidate", result.candidate),
                 ("log_loss_baseline", f"{result.log_loss_baseline:.4f}"),
                 ("log_loss_candidate", f"{result.log_loss_candidate:.4f}"),
                 ("p_value_worse", f"{result.p_value_worse:.3g}"))
        # Failing already at the first hour the look-back judges: it began then or earlier.
        + ((("since_is_lookback_limit", "true"),)
           if since == slo._from_us(first_h * 3_600_000_000) else ()))]


def _slo_burn(ctx: _Ctx, objective: Any) -> list[Alert]:
    policies = ctx.config.burn_policies
    windows = tuple(sorted({w for p in policies for w in (p.long_minutes, p.short_minutes)}))
    frame = slo.burn_series(ctx.con, objective, windows, start=ctx.lookback_start, as_of=ctx.at)
    if frame.empty:
        return []
    alerts = []
    for policy in policies:
        long_l, short_l = format_minutes(policy.long_minutes), format_minutes(policy.short_minutes)
        burn_long = frame[f"burn_{long_l}"].to_numpy(dtype=float, na_value=np.nan)
        burn_short = frame[f"burn_{short_l}"].to_numpy(dtype=float, na_value=np.nan)
        cond = (burn_long > policy.factor) & (burn_short > policy.factor)
        since = _trailing_run(frame["step_end"], cond)
        if since is None:
            continue
        version = ",".join(objective.versions) or None
        seg = _segment_text(objective.segments)
        alerts.append(Alert(
            rule=f"slo_burn_rate:{objective.name}", severity=policy.severity, model=ctx.model,
            version=version, segment=seg, since=since, as_of=ctx.at,
            value=float(burn_long[-1]), threshold=policy.factor, comparison=">",
            n=int(frame[f"events_{long_l}"].iloc[-1]),
            message=(f"SLO {objective.name} burns its error budget at {burn_long[-1]:.1f}x over "
                     f"{long_l} and {burn_short[-1]:.1f}x over {short_l} (> {policy.factor:g}x; "
                     f"objective {objective.objective:g} over "
                     f"{format_minutes(objective.period_minutes)}) since {_iso(since)}"),
            url=_url(ctx, version if version and "," not in version else None,
                     objective.segments, since),
            details=((f"burn_{long_l}", f"{burn_long[-1]:.3f}"),
                     (f"burn_{short_l}", f"{burn_short[-1]:.3f}"))))
    return alerts


_RULES = {"nonfinite_scores": _nonfinite, "extreme_scores": _extreme,
          "activation_tail": _activation, "label_stall": _label_stall, "drift": _drift,
          "canary": _canary}
#: What ``rules=`` of :func:`evaluate` accepts: the rule names, and ``slo`` for the SLOs.
RULE_NAMES = ("slo", *_RULES)


def evaluate(con: duckdb.DuckDBPyConnection, config: MonitoringConfig,
             as_of: datetime | str | None = None, model: str | None = None, *,
             rules: tuple[str, ...] | None = None,
             include_suppressed: bool = False) -> list[Alert]:
    """Every enabled rule and SLO of ``config`` at ``as_of``: the firing alerts, grouped.

    ``as_of``: rounded down to the 5-minute grid; None = the grid point after the newest
    prediction. ``model``: only this model (default every model in the database). ``rules``:
    only these (names of :data:`RULE_NAMES`). Suppressed alerts (maintenance) are left out
    unless ``include_suppressed``. Ordered page first, then by ``since``.
    """
    if rules is not None:
        unknown = sorted(set(rules) - set(RULE_NAMES))
        if unknown:
            raise QueryError(f"unknown rule {unknown[0]!r}; rules: {', '.join(RULE_NAMES)}")
    at = slo.resolve_as_of(con, None, as_of)
    known = [r[0] for r in con.execute("SELECT model FROM models ORDER BY model").fetchall()]
    for objective in config.slos:
        if objective.model not in known:
            raise QueryError(f"SLO {objective.name!r}: no model {objective.model!r} in the "
                             f"database (models: {', '.join(known) or 'none'})")
    if model is not None:
        base.model_info(con, model)
    models = known if model is None else [model]
    alerts: list[Alert] = []
    for name in models:
        ctx = _Ctx(con, config, name, at)
        for rule in config.rules:
            if rule.enabled and (rules is None or rule.name in rules):
                alerts.extend(_RULES[rule.name](ctx, rule))
        if rules is None or "slo" in rules:
            for objective in config.slos:
                if objective.model == name:
                    alerts.extend(_slo_burn(ctx, objective))
    # A condition that held from the look-back's first step (which ends 5 minutes after its
    # start) began at least that long ago.
    first_step = at - timedelta(minutes=config.lookback_minutes) + timedelta(microseconds=_STEP_US)
    alerts = [a if a.since > first_step
              or "since_is_lookback_limit" in dict(a.details)
              else replace(a, details=a.details + (("since_is_lookback_limit", "true"),))
              for a in alerts]
    # "or earlier", not "(the look-back's start)": a drift rule whose reference window is the
    # week before cannot look back at all, and its since is the drift window's start.
    alerts = [replace(a, message=a.message.replace(
                  f"since {_iso(a.since)}", f"since {_iso(a.since)} or earlier", 1))
              if "since_is_lookback_limit" in dict(a.details) else a for a in alerts]
    alerts = suppress(group(alerts), config.maintenance)
    return alerts if include_suppressed else [a for a in alerts if not a.suppressed]
