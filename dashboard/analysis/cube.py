"""One pass of mergeable sums that the report's loss and segment figures share.

The report asks the same rows for the overall loss, the loss per day, per version and per
segment value, the reference window's loss, the loss since a regression began, each
segment's contribution to the change, score saturation and label coverage by day and by hour:
a dozen scans of the window. :func:`build` scans it once into a small TEMP table holding, per
*slot*, the sums of ``loss.hourly_sums_sql`` (Σw, Σw·ℓ, Σw·ℓ², Brier, entropy, counts, ...),
the prediction count and first / last time, ``saturation.SCORE_COUNTS`` and the label counts
of ``labels.coverage``, for

* every model version (``dim = 'model_version'``: one hash aggregate over the rows), and
  the whole window (``dim = ''``: their sum, from the small table);
* every value of each segment column (``dim`` = the column's name): only the five loss
  moments of ``segments``. When the segment columns take few value combinations (at most
  :data:`MAX_COMBINATIONS`, judged on a 1% block sample), the one hash aggregate is keyed by
  (slot, version, combination) and the versions' and the values' rows are sums of that small
  table (0.2 s less at 10M rows); otherwise a second, lighter statement aggregates the labelled
  rows per value. The two give the same table (tests/analysis/test_cube.py).

A slot is a piece of a UTC hour: the hour, cut at the windows' own boundaries (the window's
start and end and the reference window's), which need not fall on an hour. Any window whose
ends are hour boundaries or those boundaries is then an exact union of slots, so a figure
read from the cube equals the one computed from the rows (up to the order of floating-point
summation; tests/analysis/test_cube.py). :meth:`Cube.covers` says which Filters the cube can
answer; the analysis functions that take ``cube=`` fall back to their row scan for any other.

Size: about 720 slots x (1 + versions + segment values) rows for 30 days. At 10M rows the
build takes 0.75-0.9 s (docs/benchmarks.md, "Analysis and report").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import duckdb

from lossboard.dashboard.analysis.base import ModelInfo, model_info, resolve_model, scored_rows
from lossboard.dashboard.analysis.filters import Filter
from lossboard.errors import QueryError
from lossboard.sql import quote_ident

_US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_counter = itertools.count()


def _us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Cube:
    """A built cube: its TEMP table, the Filter it was built for, its split points."""

    table: str
    flt: Filter  # model set; start / end = the span of every window it holds
    info: ModelInfo
    points: frozenset[int]  # slot boundaries besides whole hours, epoch microseconds
    segment_columns: tuple[str, ...]

    def covers(self, flt: Filter) -> bool:
        """True when every row of ``flt`` is an exact union of this cube's slots: same model,
        versions, segments and maturity; ``[start, end)`` inside the cube's span with each end
        on an hour or on one of its split points. The cube's sums are weighted with threshold
        0.5: callers check their own parameters."""
        base = self.flt
        if (flt.model not in (None, base.model) or flt.versions != base.versions
                or tuple(sorted(flt.segments)) != tuple(sorted(base.segments))
                or flt.maturity_hours != base.maturity_hours or flt.start is None or flt.end is None):
            return False
        # Maturity is measured back from the Filter's end: only the cube's own end keeps it.
        if flt.maturity_hours is not None and flt.end != base.end:
            return False
        lo, hi = _us(flt.start), _us(flt.end)
        if lo < _us(base.start) or hi > _us(base.end) or lo > hi:
            return False
        return all(x % _US_PER_HOUR == 0 or x in self.points for x in (lo, hi))

    def where(self, flt: Filter, dim: str = "") -> tuple[str, dict[str, object]]:
        """The condition selecting ``flt``'s slots of grouping ``dim``, and its parameters."""
        if dim not in ("", "model_version") and dim not in self.segment_columns:
            raise QueryError(f"the cube holds no grouping by {dim!r}")
        return ("dim = $cube_dim AND slot >= $cube_lo AND slot < $cube_hi",
                {"cube_dim": dim, "cube_lo": _us(flt.start), "cube_hi": _us(flt.end)})

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DROP TABLE IF EXISTS {quote_ident(self.table)}")


#: The most value combinations of the segment columns for which :func:`build` sums per
#: (slot, version, combination) in one pass: the cube then has up to slots x versions x this
#: many rows before it is summed down (docs/metrics.md, "One scan per report").
MAX_COMBINATIONS = 64
_SAMPLE_ROWS = 2000
#: The five loss moments (and n_labelled) a segment value's rows hold (segments.py).
_LIGHT = ("n_labelled", "n", "sw", "sw2", "s_loss", "s_loss2")


def _sum_of(column: str) -> str:
    # Sums of counts stay BIGINT (a SUM of BIGINT is HUGEINT in DuckDB), as the counts are.
    total = f"sum({column})"
    return (f"CAST({total} AS BIGINT) AS {column}" if column == "n" or column.startswith("n_")
            else f"{total} AS {column}")


def _few_combinations(con: duckdb.DuckDBPyConnection, flt: Filter,
                      columns: Sequence[str]) -> bool:
    """Whether the segment columns take at most :data:`MAX_COMBINATIONS` value combinations
    in the model's rows, judged on a 1% block sample (on every row when the sample is small).
    Only the speed depends on it: both ways give the same sums."""
    combo = "[" + ", ".join(f"CAST({quote_ident(c)} AS VARCHAR)" for c in columns) + "]"
    for source in ("predictions TABLESAMPLE 1% (system, 42)", "predictions"):
        n, k = con.execute(f"SELECT count(*), count(DISTINCT {combo}) FROM {source} "
                           f"WHERE model = ?", [flt.model]).fetchone()
        if n >= _SAMPLE_ROWS:
            break
    return k <= MAX_COMBINATIONS


def fine_sql(con: duckdb.DuckDBPyConnection, base: Filter, info: ModelInfo,
             segment_columns: Sequence[str], points: Sequence[int] = (),
             hours: Sequence[int] = ()) -> tuple[str, dict[str, object]]:
    """The one hash aggregate behind a cube and the rollup: ``version, _lb_seg0.., slot`` and
    every sum of ``base``'s rows, grouped by slot, model version and segment value
    combination. A slot is the row's UTC hour cut at ``points`` (epoch microseconds off the
    hour). ``hours``: only the rows of these hours (their starts), when not empty."""
    head, select, params = _fine_parts(con, base, info, segment_columns, points, hours)
    return head + select, params


def _fine_parts(con: duckdb.DuckDBPyConnection, base: Filter, info: ModelInfo,
                segment_columns: Sequence[str], points: Sequence[int],
                hours: Sequence[int]) -> tuple[str, str, dict[str, object]]:
    """:func:`fine_sql` as its ``WITH lr AS (...), r AS (...)`` head (the per-row relation
    ``r``), its aggregate, and the parameters of both."""
    # Imported here: loss imports nothing of this module, and this keeps it that way.
    from lossboard.dashboard.analysis.loss import _row_sql, hourly_sums_sql
    from lossboard.dashboard.analysis import saturation as sat

    aliases = _aliases(segment_columns)
    rows = scored_rows(con, base, aliases + ([("logit", "logit")] if info.task == "binary"
                                             else [("probs", "probs")]))
    score, stored_logit = sat.score_columns_sql(info.task)
    hour = f"(us - ((us % {_US_PER_HOUR}) + {_US_PER_HOUR}) % {_US_PER_HOUR})"
    cuts = "".join(f", CASE WHEN us >= $cube_p{i} THEN $cube_p{i} END" for i in range(len(points)))
    passthrough = (f", labelled, us, greatest({hour}{cuts}) AS slot, model_version, "
                   f"label_ts_source, {score} AS s, {sat.logit_sql(score, stored_logit)} AS lg"
                   + "".join(f", CAST({quote_ident(a)} AS VARCHAR) AS {quote_ident(a)}"
                             for a, _ in aliases))
    params: dict[str, object] = dict(rows.params)
    params.update({f"cube_p{i}": p for i, p in enumerate(points)})
    params.update(ls_threshold=0.5, sat_low=sat.DEFAULT_LOW, sat_high=sat.DEFAULT_HIGH,
                  sat_tail=sat.DEFAULT_LOGIT_TAIL, sat_extreme=sat.DEFAULT_LOGIT_EXTREME)
    extra = "".join(f", {sql} AS {name}" for name, sql in _counts().items())
    if info.task != "binary":
        params["ls_classes"] = list(info.classes)
    lr = rows.sql
    if hours:
        # A condition on the stored ts, which DuckDB pushes into the scan.
        ranges = " OR ".join(f"(ts >= $cube_h{i} AND ts < $cube_h{i}e)" for i in range(len(hours)))
        lr = f"SELECT * FROM ({rows.sql}) WHERE {ranges}"
        for i, h in enumerate(hours):
            params[f"cube_h{i}"] = _from_us(h)
            params[f"cube_h{i}e"] = _from_us(h + _US_PER_HOUR)
    row_sql = _row_sql(info, "'all'", True, passthrough)
    segs = "".join(f", {quote_ident(a)}" for a, _ in aliases)
    head = f"WITH lr AS ({lr}),\nr AS ({row_sql})\n"
    select = (f"SELECT CAST(model_version AS VARCHAR) AS version{segs}, slot, "
              f"count(*) AS n_predictions, min(us) AS first_us, max(us) AS last_us, "
              f"{hourly_sums_sql('labelled')}{extra} "
              f"FROM r GROUP BY slot, model_version{segs}")
    return head, select, params


def _aliases(segment_columns: Sequence[str]) -> list[tuple[str, str]]:
    return [(f"_lb_seg{i}", c) for i, c in enumerate(segment_columns)]


def _counts() -> dict[str, str]:
    # Beside the loss sums: score saturation's counts (default thresholds) and the label
    # counts of labels.coverage, per slot, so those two read the cube as well.
    from lossboard.dashboard.analysis.saturation import SCORE_COUNTS

    return {**SCORE_COUNTS,
            "n_lag": "count(CASE WHEN labelled AND label_ts_source = 'file' THEN 1 END)",
            "n_ingest_time": "count(CASE WHEN labelled AND label_ts_source = 'ingest_time' THEN 1 END)"}


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def build(con: duckdb.DuckDBPyConnection, flt: Filter, segment_columns: Sequence[str],
          windows: Sequence[Filter] = ()) -> Cube:
    """Scan ``flt`` (which must have start and end) once into a cube that also covers
    ``windows`` (e.g. the reference window): the span is their union, their ends are split
    points. Drop it with :meth:`Cube.drop` when done.

    When the database's rollup (:mod:`rollup`) is current for the model and these segment
    columns, the whole hours come from it and only the hours cut by a window's end or by the
    label maturity are read from the rows: the same sums (tests/analysis/test_rollup.py)."""
    from lossboard.dashboard.analysis import rollup
    from lossboard.dashboard.analysis.loss import _SUM_NAMES

    flt = resolve_model(con, flt)
    if flt.start is None or flt.end is None:
        raise QueryError("a cube needs a Filter with start and end")
    info = model_info(con, flt.model)
    spans = [flt] + [w for w in windows if w.start is not None and w.end is not None]
    start = min(w.start for w in spans)
    end = max(w.end for w in spans)
    base = replace(flt, start=start, end=end, reference_start=None, reference_end=None,
                   reference_version=None)
    # Boundaries on an hour need no cut.
    points = sorted({_us(t) for w in spans for t in (w.start, w.end)})
    points = [p for p in points if p % _US_PER_HOUR]
    aliases = _aliases(segment_columns)
    name = f"lb_cube_{next(_counter)}"
    table, fine = quote_ident(name), quote_ident(name + "_fine")
    counts = _counts()
    merged = ", ".join(_sum_of(c) for c in (*_SUM_NAMES, *counts))
    names = {f"cube_name{i}": c for i, (_, c) in enumerate(aliases)}
    whole = (f"INSERT INTO {table} SELECT '' AS dim, NULL AS value, slot, sum(n_predictions), "
             f"min(first_us), max(last_us), "
             f"{', '.join(f'sum({c})' for c in (*_SUM_NAMES, *counts))} "
             f"FROM {table} WHERE dim = 'model_version' GROUP BY slot ORDER BY slot")
    source = rollup.source(con, base, info, segment_columns, points)
    if source is not None:
        fine_select, params = source
    elif aliases and _few_combinations(con, base, segment_columns):
        fine_select, params = fine_sql(con, base, info, segment_columns, points)
    else:
        fine_select, params = None, {}
    if fine_select is not None:
        # One hash aggregate per (slot, version, segment value combination) holds every sum
        # once (or the rollup holds it), and the versions' and each segment value's rows are
        # sums of that small table. A second aggregate over the labelled rows for the
        # segments cost 0.24 s at 10M rows; the wider key 0.06 s.
        # Sorted, so that every sum below adds its terms in the same order on every run (a
        # parallel aggregate or UNION ALL returns rows in any order, and floating-point
        # addition is not associative: the last digit moved between two identical requests).
        keys = ", ".join(["slot", "version", *(quote_ident(a) for a, _ in aliases)])
        statements = [
            f"CREATE TEMP TABLE {fine} AS SELECT * FROM ({fine_select}) ORDER BY {keys}",
            (f"CREATE TEMP TABLE {table} AS SELECT 'model_version' AS dim, version AS value, "
             f"slot, {_sum_of('n_predictions')}, min(first_us) AS first_us, "
             f"max(last_us) AS last_us, {merged} FROM {fine} GROUP BY slot, version "
             f"ORDER BY slot, version"),
            whole,
        ]
        # A (slot, value) row exists when the slot has a labelled row of the value, as the
        # aggregate over the labelled rows below gives.
        statements += [
            f"INSERT INTO {table} (dim, value, slot, {', '.join(_LIGHT)}) "
            f"SELECT $cube_name{i}, {quote_ident(a)}, slot, "
            f"{', '.join(_sum_of(c) for c in _LIGHT)} FROM {fine} "
            f"GROUP BY slot, {quote_ident(a)} HAVING sum(n_labelled) > 0 "
            f"ORDER BY slot, {quote_ident(a)}"
            for i, (a, _) in enumerate(aliases)]
        statements.append(f"DROP TABLE {fine}")
    else:
        statements = [_row_statement(con, base, info, points, table, params), whole]
        if aliases:
            statements.append(_segment_statement(con, base, info, aliases, points, table, params))
    params.update(names)
    try:
        for sql in statements:
            con.execute(sql, {k: v for k, v in params.items()
                              if re.search(rf"\${re.escape(k)}\b", sql)})
    except duckdb.Error as exc:
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"DROP TABLE IF EXISTS {fine}")
        raise QueryError(f"summing the window: {exc}") from exc
    return Cube(name, base, info, frozenset(points), tuple(segment_columns))


def from_rollup(con: duckdb.DuckDBPyConnection, flt: Filter) -> Cube | None:
    """A cube of ``flt`` alone when the hourly rollup can serve it (a current rollup, a
    Filter with start and end), else None: callers without a cube of their own then read
    hours instead of rows (a 30-day daily trend at 10M rows: 0.47 s from the rows). Without
    the rollup, building a cube costs more than the one scan it would replace."""
    from lossboard.dashboard.analysis import rollup
    from lossboard.dashboard.analysis.base import columns_with_role

    flt = resolve_model(con, flt)
    if flt.start is None or flt.end is None or flt.start >= flt.end:
        return None
    columns = [name for name, _ in columns_with_role(con, "segment")]
    if (any(column not in columns for column, _ in flt.segments)
            or not rollup.current(con, model_info(con, flt.model), columns)):
        return None  # the rollup cannot serve it: a cube would scan the rows anyway
    return build(con, flt, columns)


def _row_statement(con: duckdb.DuckDBPyConnection, base: Filter, info: ModelInfo,
                   points: list[int], table: str, params: dict[str, object]) -> str:
    """Many segment value combinations: the versions' sums straight from the rows (the
    segment columns left out of the key)."""
    sql, p = fine_sql(con, base, info, (), points)
    params.update(p)
    return (f"CREATE TEMP TABLE {table} AS SELECT 'model_version' AS dim, version AS value, "
            f"* EXCLUDE (version) FROM ({sql}) ORDER BY slot, version")


def _segment_statement(con: duckdb.DuckDBPyConnection, base: Filter, info: ModelInfo,
                       aliases: list[tuple[str, str]], points: list[int], table: str,
                       params: dict[str, object]) -> str:
    """Segments need only the five moments of the labelled rows (segments.py), a lighter
    aggregate per column: the other columns of these rows stay NULL."""
    from lossboard.dashboard.analysis.loss import hourly_sums_sql

    head, _, p = _fine_parts(con, base, info, [c for _, c in aliases], points, ())
    params.update(p)
    which = " ".join(f"WHEN grouping({quote_ident(a)}) = 0 THEN $cube_name{i}"
                     for i, (a, _) in enumerate(aliases))
    value = "coalesce(" + ", ".join(quote_ident(a) for a, _ in aliases) + ")"
    sets = ", ".join(f"(slot, {quote_ident(a)})" for a, _ in aliases)
    return (f"INSERT INTO {table} (dim, value, slot, {', '.join(_LIGHT)}) {head}"
            f"SELECT CASE {which} END, {value}, slot, {hourly_sums_sql(None, _LIGHT)} "
            f"FROM r WHERE labelled GROUP BY GROUPING SETS ({sets}) ORDER BY 1, 2, slot")
