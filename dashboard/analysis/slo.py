"""SLOs on log loss: the SLI, the error budget, what is left of it, and burn rates.

An SLO (``[[slo]]`` in lossboard.toml, :class:`lossboard.dashboard.monitoring_config.Slo`)
counts *events* and *bad events* (docs/slo-alerts.md has the auditor's version):

* ``sli = "predictions"``: every labelled prediction of the SLO's model / versions / segment
  is an event; it is bad when its score is NaN / ±inf or its per-row log loss (clipped at
  1e-15, ``base.labelled_rows``) exceeds ``max_row_loss``. Rows are counted, not weighted.
* ``sli = "windows"``: every 5-minute step ``t`` is an event when the trailing window
  ``[t - window, t)`` holds at least ``min_samples`` labelled finite rows (and Σw > 0); it is
  bad when that window's weighted log loss ``Σw·ℓ / Σw`` exceeds the target: the absolute
  ``target_log_loss``, or ``(1 + max_relative_increase) ×`` the baseline's log loss (the
  ``baseline_version`` over the SLO period, or the ``reference_from``/``reference_to`` window).

With objective ``o`` and, over a window, ``E`` events of which ``B`` are bad:

* ``sli = (E - B) / E``; error budget ``= 1 - o`` (the share of events allowed to be bad);
* burn rate ``= (B / E) / (1 - o)``: 1 spends the budget exactly over the SLO period, 14.4
  spends 2% of a 30-day budget in one hour;
* over the SLO period (``period_days`` ending at the as-of time): ``budget_consumed = burn
  rate over the period = (B / E) / (1 - o)``, ``budget_remaining = 1 - budget_consumed``
  (negative once the budget is spent); ``None`` when ``E = 0`` (no data: nothing is known).

Time: events sit on a 5-minute UTC grid. ``time_axis = "label"`` (default) places an event
when its outcome became known, ``max(ts, label_ts)``; ``"prediction"`` at ``ts``. Either way
only labels known before the as-of time count (``max(ts, label_ts) < as_of``), so evaluating
at a past as-of time gives the answer lossboard would have given then. The as-of time is
rounded down to the 5-minute grid; left out, it is the grid point after the newest prediction
of the model. All counting happens in DuckDB: one GROUP BY per 5-minute bucket, then window
sums over the bucket sums (a ``RANGE`` frame per window).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from lossboard.dashboard.analysis import base
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.saturation import run_query
from lossboard.dashboard.monitoring_config import MonitoringConfig, Slo, format_minutes
from lossboard.errors import QueryError

#: The evaluation grid, in microseconds (5 minutes).
STEP_US = 300_000_000
#: Windows :func:`status` reports burn rates for (minutes): 1 h, 6 h, 3 days.
STATUS_WINDOWS = (60, 360, 4320)


# --------------------------------------------------------------------------- budget math
@dataclass(frozen=True)
class Budget:
    """Error-budget figures of ``events`` of which ``bad_events`` were bad (module docstring).

    ``sli`` = good share; ``burn_rate`` = (bad / events) / (1 - objective); ``budget_consumed``
    equals the burn rate when the window is the SLO period; ``budget_remaining`` =
    1 - budget_consumed; ``allowed_bad_events`` = (1 - objective) · events. Figures are None
    when ``events = 0``.
    """

    events: int
    bad_events: int
    objective: float
    sli: float | None
    burn_rate: float | None
    budget_consumed: float | None
    budget_remaining: float | None
    allowed_bad_events: float


def budget(events: int, bad_events: int, objective: float) -> Budget:
    """Budget figures from counts.

    Example: objective 0.99, 10,000 events, 50 bad: sli = 0.995, burn rate = 0.005 / 0.01 =
    0.5, half the budget consumed, 0.5 remaining, 100 bad events allowed.
    """
    if not 0 < objective < 1:
        raise QueryError(f"objective must be in (0, 1), got {objective!r}")
    if events < 0 or bad_events < 0 or bad_events > events:
        raise QueryError(f"need 0 <= bad_events <= events, got {bad_events} of {events}")
    allowed = (1 - objective) * events
    if events == 0:
        return Budget(0, 0, objective, None, None, None, None, 0.0)
    rate = (bad_events / events) / (1 - objective)
    return Budget(events, bad_events, objective, (events - bad_events) / events, rate, rate,
                  1 - rate, allowed)


def burn_rate_of(events: int, bad_events: int, objective: float) -> float | None:
    """``(bad_events / events) / (1 - objective)``; None without events."""
    return budget(events, bad_events, objective).burn_rate


# --------------------------------------------------------------------------- time
def floor_step(at: datetime) -> datetime:
    """``at`` rounded down to the 5-minute UTC grid."""
    us = _epoch_us(at)
    return _from_us(us - us % STEP_US)


def _epoch_us(at: datetime) -> int:
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def resolve_as_of(con: duckdb.DuckDBPyConnection, model: str | None,
                  as_of: datetime | str | None) -> datetime:
    """The evaluation time on the 5-minute grid: ``as_of`` rounded down, or (None) the grid
    point after the newest prediction of ``model`` (of any model when None)."""
    if as_of is not None:
        return floor_step(Filter(end=as_of).end)  # Filter parses ISO text and makes it UTC
    row = con.execute("SELECT max(ts) FROM predictions WHERE $m IS NULL OR model = $m",
                      {"m": model}).fetchone()
    if row is None or row[0] is None:
        raise QueryError(f"no predictions{' of model ' + repr(model) if model else ''} yet: "
                         "nothing to evaluate")
    return floor_step(row[0]) + timedelta(microseconds=STEP_US)


# --------------------------------------------------------------------------- SQL
def _filter(slo: Slo, at: datetime, **changes: Any) -> Filter:
    return replace(Filter(model=slo.model, versions=slo.versions, segments=slo.segments, end=at),
                   **changes)


def _known_rows(con: duckdb.DuckDBPyConnection, slo: Slo, flt: Filter,
                at: datetime) -> tuple[str, dict[str, Any]]:
    """Labelled rows of ``flt`` whose label was known before ``at``, with the event time
    ``t_us`` (epoch microseconds) of the SLO's time axis."""
    rows = base.labelled_rows(con, flt)
    known = "greatest(ts, coalesce(label_ts, ts))"
    t = known if slo.time_axis == "label" else "ts"
    sql = (f"SELECT epoch_us({t}) AS t_us, weight, loss, score_ok FROM ({rows.sql}) "
           f"WHERE {known} < $slo_at")
    return sql, {**rows.params, "slo_at": at}


def baseline_log_loss(con: duckdb.DuckDBPyConnection, slo: Slo,
                      at: datetime) -> tuple[float | None, int]:
    """(log loss, rows) of a relative SLO's baseline as known at ``at``: the
    ``baseline_version`` over the SLO period before ``at``, or the reference window. ``(None,
    n)`` when there are fewer than ``min_samples`` rows or Σw = 0."""
    if slo.baseline_version is not None:
        flt = _filter(slo, at, versions=(slo.baseline_version,))
        lo = at - timedelta(minutes=slo.period_minutes)
        period = " AND t_us >= $slo_lo"
    else:
        if at <= slo.reference_start:
            return None, 0
        flt = _filter(slo, min(at, slo.reference_end), start=slo.reference_start)
        lo, period = None, ""
    sql, params = _known_rows(con, slo, flt, at)
    if lo is not None:
        params["slo_lo"] = _epoch_us(lo)
    query = (f"SELECT count(*), sum(weight), sum(weight * loss) FROM ({sql}) "
             f"WHERE score_ok{period}")
    try:
        n, sw, swl = con.execute(query, params).fetchone()
    except duckdb.Error as exc:
        raise QueryError(f"computing the baseline log loss of SLO {slo.name!r}: {exc}") from exc
    if n < slo.min_samples or not sw:
        return None, int(n)
    return float(swl / sw), int(n)


def target_log_loss(con: duckdb.DuckDBPyConnection, slo: Slo, at: datetime) -> float | None:
    """The log loss a window must not exceed (``sli = "windows"``); None when a relative
    target has no baseline yet, and for ``sli = "predictions"``."""
    if slo.sli != "windows":
        return None
    if slo.target_log_loss is not None:
        return slo.target_log_loss
    baseline, _ = baseline_log_loss(con, slo, at)
    return None if baseline is None else (1 + slo.max_relative_increase) * baseline


def _check_windows(windows: tuple[int, ...]) -> tuple[int, ...]:
    windows = tuple(windows)
    if not windows or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 or w % 5
                          for w in windows):
        raise QueryError(f"windows must be positive multiples of 5 minutes, got {windows!r}")
    return windows


def burn_series(con: duckdb.DuckDBPyConnection, slo: Slo, windows: tuple[int, ...], *,
                start: datetime | str, as_of: datetime | str | None = None,
                target: float | None = None) -> pd.DataFrame:
    """Events, bad events and burn rate over each window (minutes) ending at every 5-minute
    step in ``(start, as_of]``.

    Columns: ``step_end`` (UTC; the windows are ``[step_end - w, step_end)``), ``n``,
    ``log_loss`` (labelled finite rows and their weighted log loss over the SLO's own
    ``window``), then per window ``w`` labelled like ``1h``: ``events_1h``, ``bad_1h``,
    ``burn_1h`` (None without events). ``target``: the windows SLI's target when already
    known (else :func:`target_log_loss` at ``as_of``). One query; rows in time order.
    """
    windows = _check_windows(windows)
    at = resolve_as_of(con, slo.model, as_of)
    first = floor_step(Filter(start=start).start)
    if first >= at:
        raise QueryError(f"start {first.isoformat()} is not before as-of {at.isoformat()}")
    sli_us = slo.window_minutes * 60_000_000
    lo_us = _epoch_us(first) - max(windows) * 60_000_000 - sli_us
    flt = _filter(slo, at)
    if slo.time_axis == "prediction":
        flt = replace(flt, start=_from_us(lo_us))
    if slo.sli == "windows" and target is None:
        target = target_log_loss(con, slo, at)
    rows_sql, params = _known_rows(con, slo, flt, at)
    params.update(slo_step=STEP_US, slo_lo=lo_us, slo_hi=_epoch_us(at) - STEP_US,
                  slo_first=_epoch_us(first), slo_sli_back=sli_us - STEP_US,
                  slo_max_row_loss=slo.max_row_loss if slo.max_row_loss is not None else 0.0,
                  slo_min=slo.min_samples,
                  slo_target=target if target is not None else math.inf)
    if slo.sli == "predictions":
        events = "n_labelled AS events, n_bad AS bad"
    else:
        # No target yet (a relative SLO without baseline): no step is an event.
        ok = "w_n >= $slo_min AND w_sw > 0 AND $slo_target < 'inf'::DOUBLE"
        events = (f"({ok})::BIGINT AS events, "
                  f"({ok} AND w_swl / w_sw > $slo_target)::BIGINT AS bad")
    frames, sums = [], []
    for i, w in enumerate(windows):
        params[f"slo_back{i}"] = w * 60_000_000 - STEP_US
        frames.append(f"w{i} AS (ORDER BY b RANGE BETWEEN $slo_back{i} PRECEDING AND CURRENT ROW)")
        label = format_minutes(w)
        sums.append(f"sum(events) OVER w{i} AS events_{label}, sum(bad) OVER w{i} AS bad_{label}")
    sql = f"""
WITH ev AS ({rows_sql}),
agg AS (
  SELECT t_us - t_us % $slo_step AS b, count(*) AS n_labelled,
         count(CASE WHEN score_ok THEN 1 END) AS n,
         coalesce(sum(CASE WHEN score_ok THEN weight END), 0) AS sw,
         coalesce(sum(CASE WHEN score_ok THEN weight * loss END), 0) AS swl,
         count(CASE WHEN NOT score_ok OR loss > $slo_max_row_loss THEN 1 END) AS n_bad
  FROM ev WHERE t_us >= $slo_lo GROUP BY 1
),
grid AS (SELECT unnest(generate_series(CAST($slo_lo AS BIGINT), CAST($slo_hi AS BIGINT),
                                       CAST($slo_step AS BIGINT))) AS b),
dense AS (
  SELECT grid.b, coalesce(n_labelled, 0) AS n_labelled, coalesce(n, 0) AS n,
         coalesce(sw, 0) AS sw, coalesce(swl, 0) AS swl, coalesce(n_bad, 0) AS n_bad
  FROM grid LEFT JOIN agg ON agg.b = grid.b
),
rolled AS (
  SELECT *, sum(n) OVER sli AS w_n, sum(sw) OVER sli AS w_sw, sum(swl) OVER sli AS w_swl
  FROM dense WINDOW sli AS (ORDER BY b RANGE BETWEEN $slo_sli_back PRECEDING AND CURRENT ROW)
),
steps AS (SELECT b, w_n, w_sw, w_swl, {events} FROM rolled)
SELECT * EXCLUDE (b) FROM (
  SELECT b, make_timestamptz(b + $slo_step) AS step_end, CAST(w_n AS BIGINT) AS n,
         CASE WHEN w_sw > 0 THEN w_swl / w_sw END AS log_loss, {", ".join(sums)}
  FROM steps WINDOW {", ".join(frames)}
)
WHERE b >= $slo_first
ORDER BY b"""
    # DuckDB refuses parameters a query does not use: bind only those that appear.
    used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
    frame = run_query(con, sql, used, f"computing burn rates of SLO {slo.name!r}")
    error_budget = slo.error_budget
    for w in windows:
        label = format_minutes(w)
        ev, bad = frame[f"events_{label}"].astype("Int64"), frame[f"bad_{label}"].astype("Int64")
        frame[f"events_{label}"], frame[f"bad_{label}"] = ev, bad
        rate = (bad.astype("Float64") / ev.astype("Float64").where(ev > 0)) / error_budget
        frame[f"burn_{label}"] = rate.astype("Float64")
    frame["n"] = frame["n"].astype("Int64")
    frame["log_loss"] = frame["log_loss"].astype("Float64")
    frame["step_end"] = pd.to_datetime(frame["step_end"], utc=True)
    return frame


# --------------------------------------------------------------------------- status
@dataclass(frozen=True)
class BurnRate:
    """Events, bad events and burn rate over ``[as_of - window, as_of)``."""

    window_minutes: int
    events: int
    bad_events: int
    burn_rate: float | None


@dataclass(frozen=True)
class SloStatus:
    """Where an SLO stands at ``as_of`` (see the module docstring for every figure).

    ``events``/``bad_events``/``sli``/``budget_consumed``/``budget_remaining`` cover the SLO
    period ``[period_start, as_of)``. ``current_log_loss`` / ``current_n``: the SLO's own
    ``window`` ending at ``as_of``. ``target_log_loss`` / ``baseline_log_loss``: the windows
    SLI's target and, for a relative SLO, the baseline it came from. ``burn_rates``: one
    :class:`BurnRate` per window of :data:`STATUS_WINDOWS`. ``met``: ``sli >= objective`` (None
    without events). ``state``: ``ok``, ``budget_exhausted`` (remaining <= 0), ``no_events``
    or ``no_baseline`` (relative target without enough baseline rows).
    """

    name: str
    model: str
    sli_kind: str
    objective: float
    period_days: float
    as_of: datetime
    period_start: datetime
    events: int
    bad_events: int
    sli: float | None
    error_budget: float
    budget_consumed: float | None
    budget_remaining: float | None
    target_log_loss: float | None
    baseline_log_loss: float | None
    current_log_loss: float | None
    current_n: int
    burn_rates: tuple[BurnRate, ...]
    met: bool | None
    state: str


def status(con: duckdb.DuckDBPyConnection, slo: Slo, flt: Filter | None = None, *,
           as_of: datetime | str | None = None,
           windows: tuple[int, ...] = STATUS_WINDOWS) -> SloStatus:
    """The SLO's error budget, remaining budget and burn rates at ``as_of``.

    ``as_of``: given, or the end of ``flt`` (the dashboard's time range; the rest of ``flt``
    is not used: the SLO names its own model, versions and segment), else the grid point
    after the model's newest prediction.

    Example: objective 0.99 over 30 days, 20,000 events in the period of which 100 bad:
    sli 0.995, budget_consumed 0.5, budget_remaining 0.5.
    """
    if as_of is None and flt is not None:
        as_of = flt.end
    at = resolve_as_of(con, slo.model, as_of)
    baseline = None
    if slo.sli == "windows" and slo.target_log_loss is None:
        baseline, _ = baseline_log_loss(con, slo, at)
    target = (slo.target_log_loss if slo.target_log_loss is not None
              else None if baseline is None else (1 + slo.max_relative_increase) * baseline)
    windows = _check_windows(windows)
    all_windows = tuple(dict.fromkeys((slo.period_minutes, *windows)))
    frame = burn_series(con, slo, all_windows, start=at - timedelta(microseconds=STEP_US),
                        as_of=at, target=target)
    last = frame.iloc[-1]
    period = format_minutes(slo.period_minutes)
    events, bad = int(last[f"events_{period}"]), int(last[f"bad_{period}"])
    b = budget(events, bad, slo.objective)
    rates = tuple(BurnRate(w, int(last[f"events_{format_minutes(w)}"]),
                           int(last[f"bad_{format_minutes(w)}"]),
                           burn_rate_of(int(last[f"events_{format_minutes(w)}"]),
                                        int(last[f"bad_{format_minutes(w)}"]), slo.objective))
                  for w in windows)
    if slo.sli == "windows" and target is None:
        state = "no_baseline"
    elif events == 0:
        state = "no_events"
    elif b.budget_remaining is not None and b.budget_remaining <= 0:
        state = "budget_exhausted"
    else:
        state = "ok"
    current = last["log_loss"]
    return SloStatus(
        name=slo.name, model=slo.model, sli_kind=slo.sli, objective=slo.objective,
        period_days=slo.period_days, as_of=at,
        period_start=at - timedelta(minutes=slo.period_minutes), events=events, bad_events=bad,
        sli=b.sli, error_budget=slo.error_budget, budget_consumed=b.budget_consumed,
        budget_remaining=b.budget_remaining, target_log_loss=target, baseline_log_loss=baseline,
        current_log_loss=None if pd.isna(current) else float(current), current_n=int(last["n"]),
        burn_rates=rates, met=None if b.sli is None else b.sli >= slo.objective, state=state)


def burn_rate(con: duckdb.DuckDBPyConnection, slo: Slo, window_minutes: int, *,
              as_of: datetime | str | None = None) -> BurnRate:
    """The burn rate over ``[as_of - window, as_of)`` (any multiple of 5 minutes)."""
    at = resolve_as_of(con, slo.model, as_of)
    frame = burn_series(con, slo, (window_minutes,), start=at - timedelta(microseconds=STEP_US),
                        as_of=at)
    label = format_minutes(window_minutes)
    events, bad = int(frame[f"events_{label}"].iloc[-1]), int(frame[f"bad_{label}"].iloc[-1])
    return BurnRate(window_minutes, events, bad, burn_rate_of(events, bad, slo.objective))


def statuses(con: duckdb.DuckDBPyConnection, config: MonitoringConfig, flt: Filter | None = None,
             *, as_of: datetime | str | None = None,
             model: str | None = None) -> tuple[SloStatus, ...]:
    """:func:`status` of every SLO of ``config`` (of ``model`` only, when given; else of
    ``flt.model`` when set), in config order: the executive page's SLO table."""
    model = model if model is not None else (flt.model if flt is not None else None)
    return tuple(status(con, objective, flt, as_of=as_of) for objective in config.slos
                 if model is None or objective.model == model)
