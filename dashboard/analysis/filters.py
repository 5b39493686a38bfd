"""The one Filter: which predictions a view, a report or an alert is about.

A frozen dataclass that renders its own WHERE clause with bind parameters, and round-trips
through a URL query string so that every dashboard view is a shareable link.

Conventions (docs/metrics.md):

* time ranges are UTC and half-open, ``[start, end)``; a naive datetime is taken as UTC;
* several segment values of the same column are OR-ed, different columns are AND-ed;
* label maturity ``maturity_hours = N`` keeps predictions made at least N hours before the
  *as-of* time, which is ``end`` when set, else the newest prediction in the database; tied to
  the data rather than the wall clock, so a replay of last month gives today's answer;
* the reference window (``reference_start``/``reference_end``, optionally one
  ``reference_version``) is what drift and "what changed" compare the selection with.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from lossboard.errors import QueryError
from lossboard.sql import quote_ident


def _utc(value: datetime | str | None, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise QueryError(f"{what}: not an ISO-8601 time: {value!r}") from exc
    if not isinstance(value, datetime):
        raise QueryError(f"{what}: expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Where:
    """A SQL boolean expression and the parameters it binds (names are unique per Filter)."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Filter:
    """Which predictions to look at. Every field is optional; the empty Filter means all."""

    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    versions: tuple[str, ...] = ()
    segments: tuple[tuple[str, str], ...] = ()
    maturity_hours: float | None = None
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    reference_version: str | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end", "reference_start", "reference_end"):
            object.__setattr__(self, name, _utc(getattr(self, name), name))
        object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))
        object.__setattr__(self, "segments", tuple(sorted(set(
            (str(c), str(v)) for c, v in self.segments))))
        if self.start and self.end and self.start >= self.end:
            raise QueryError(f"empty time range: from {_iso(self.start)} is not before to "
                             f"{_iso(self.end)}")
        if (self.reference_start and self.reference_end
                and self.reference_start >= self.reference_end):
            raise QueryError("empty reference window: reference_from is not before reference_to")
        if self.maturity_hours is not None and not self.maturity_hours >= 0:
            raise QueryError(f"maturity_hours must be >= 0, got {self.maturity_hours!r}")

    # ------------------------------------------------------------------ SQL
    def where(self, columns: Collection[str] | None = None, alias: str = "p",
              prefix: str = "f") -> Where:
        """The WHERE condition over predictions aliased ``alias``.

        ``columns`` are the predictions table's column names: a segment column not among them
        is an error (so a stale link fails loudly instead of silently matching nothing).
        ``prefix`` keeps parameter names apart when one query holds two filters.
        """
        a = f"{alias}." if alias else ""
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.start is not None:
            parts.append(f"{a}ts >= ${prefix}_start")
            params[f"{prefix}_start"] = self.start
        if self.end is not None:
            parts.append(f"{a}ts < ${prefix}_end")
            params[f"{prefix}_end"] = self.end
        if self.model is not None:
            parts.append(f"{a}model = ${prefix}_model")
            params[f"{prefix}_model"] = self.model
        if self.versions:
            parts.append(f"list_contains(${prefix}_versions, {a}model_version)")
            params[f"{prefix}_versions"] = list(self.versions)
        by_column: dict[str, list[str]] = {}
        for col, value in self.segments:
            by_column.setdefault(col, []).append(value)
        for i, (col, values) in enumerate(sorted(by_column.items())):
            if columns is not None and col not in columns:
                raise QueryError(f"no column {col!r} to filter on (segment {col}=...); "
                                 f"known columns: {', '.join(sorted(columns))}")
            parts.append(f"list_contains(${prefix}_seg{i}, CAST({a}{quote_ident(col)} AS VARCHAR))")
            params[f"{prefix}_seg{i}"] = values
        if self.maturity_hours is not None:
            as_of = (f"${prefix}_asof" if self.end is not None
                     else "(SELECT max(ts) FROM predictions)")
            if self.end is not None:
                params[f"{prefix}_asof"] = self.end
            parts.append(f"{a}ts < {as_of} - to_microseconds(CAST(${prefix}_maturity_us AS BIGINT))")
            params[f"{prefix}_maturity_us"] = round(self.maturity_hours * 3_600_000_000)
        return Where(" AND ".join(parts) if parts else "true", params)

    def reference(self) -> Filter:
        """The Filter of the reference window: same model and segments, reference time range,
        and the reference version if one is set (else the same versions)."""
        if self.reference_start is None and self.reference_end is None and self.reference_version is None:
            raise QueryError("no reference window: set reference_from/reference_to "
                             "(or a reference version)")
        return replace(self, start=self.reference_start, end=self.reference_end,
                       versions=(self.reference_version,) if self.reference_version else self.versions,
                       maturity_hours=None, reference_start=None, reference_end=None,
                       reference_version=None)

    @property
    def has_reference(self) -> bool:
        return (self.reference_start is not None or self.reference_end is not None
                or self.reference_version is not None)

    # ------------------------------------------------------------------ URL round trip
    def to_query(self) -> dict[str, list[str]]:
        """Query-string parameters (each a list of values); empty fields are left out."""
        q: dict[str, list[str]] = {}
        if self.start:
            q["from"] = [_iso(self.start)]
        if self.end:
            q["to"] = [_iso(self.end)]
        if self.model is not None:
            q["model"] = [self.model]
        if self.versions:
            q["version"] = list(self.versions)
        if self.segments:
            q["segment"] = [f"{c}={v}" for c, v in self.segments]
        if self.maturity_hours is not None:
            q["maturity_h"] = [f"{self.maturity_hours:g}"]
        if self.reference_start:
            q["ref_from"] = [_iso(self.reference_start)]
        if self.reference_end:
            q["ref_to"] = [_iso(self.reference_end)]
        if self.reference_version is not None:
            q["ref_version"] = [self.reference_version]
        return q

    def to_query_string(self) -> str:
        return urlencode(self.to_query(), doseq=True)

    @classmethod
    def from_query(cls, query: Mapping[str, Any] | str) -> Filter:
        """Inverse of :meth:`to_query`; accepts a query string, ``parse_qs`` output, or
        Streamlit's ``st.query_params`` (single values as strings). Unknown keys are ignored
        so that pages can keep their own parameters in the same URL."""
        if isinstance(query, str):
            query = parse_qs(query.lstrip("?"), keep_blank_values=False)

        def many(key: str) -> list[str]:
            value = query.get(key)
            if value is None:
                return []
            return [value] if isinstance(value, str) else [str(v) for v in value]

        def one(key: str) -> str | None:
            values = many(key)
            return values[-1] if values else None

        segments = []
        for item in many("segment"):
            col, sep, value = item.partition("=")
            if not sep or not col:
                raise QueryError(f"segment must be COLUMN=VALUE, got {item!r}")
            segments.append((col, value))
        maturity = one("maturity_h")
        try:
            maturity_hours = float(maturity) if maturity is not None else None
        except ValueError as exc:
            raise QueryError(f"maturity_h must be a number of hours, got {maturity!r}") from exc
        return cls(start=_utc(one("from"), "from"), end=_utc(one("to"), "to"),
                   model=one("model"), versions=tuple(many("version")),
                   segments=tuple(segments), maturity_hours=maturity_hours,
                   reference_start=_utc(one("ref_from"), "ref_from"),
                   reference_end=_utc(one("ref_to"), "ref_to"),
                   reference_version=one("ref_version"))
