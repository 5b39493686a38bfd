"""User column names -> the log contract.

Users keep their own column names. Which column plays which contract field comes from, in
order of precedence: CLI flags, a ``lossboard.toml`` config file, then auto-detection of common
names. Columns that map to no field are kept under their own names with a role (segment,
feature, activation, pii, attribute) that is given by flag or config, or inferred, and that the
user can list and override (``lossboard columns``).

This module decides names and roles only; it reads no data (role inference gets the column's
type and, for text columns, its number of distinct values from the reader).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossboard.errors import ConfigError, IngestError
from lossboard.tomlfile import read_toml

#: Contract fields per kind. ``score`` is one of p / logit / probs / class_probs.
FIELDS: dict[str, tuple[str, ...]] = {
    "predictions": ("request_id", "ts", "model", "model_version", "p", "logit", "probs", "weight"),
    "labels": ("request_id", "label", "label_ts", "model"),
    "kpi": ("ts", "kpi", "value"),
}
ALL_FIELDS = frozenset(f for fs in FIELDS.values() for f in fs)

# Auto-detection: candidate names per field, most specific first. Names are compared after
# lower-casing and dropping everything but letters and digits, so "Event-ID" matches event_id.
_AUTO_NAMES: dict[str, tuple[str, ...]] = {
    "request_id": ("request_id", "requestid", "req_id", "event_id", "prediction_id", "id", "uuid"),
    "ts": ("ts", "timestamp", "scored_at", "event_time", "prediction_ts", "prediction_time",
           "time", "datetime", "created_at", "event_ts", "date", "day"),
    "model": ("model", "model_name", "model_id"),
    "model_version": ("model_version", "version", "model_ver", "modelversion"),
    "p": ("p", "score", "prob", "probability", "prediction", "pred", "y_prob", "y_pred",
          "proba", "predicted_probability", "p1"),
    "logit": ("logit", "raw_score", "margin", "log_odds"),
    "probs": ("probs", "probabilities", "class_probs", "class_probabilities", "scores"),
    "weight": ("weight", "sample_weight"),
    "label": ("label", "target", "outcome", "y", "y_true", "actual", "ground_truth", "truth"),
    "label_ts": ("label_ts", "labelled_at", "labeled_at", "label_time", "label_timestamp",
                 "outcome_ts", "outcome_at", "resolved_at"),
    "kpi": ("kpi", "kpi_name", "metric"),
    "value": ("value", "kpi_value"),
}

_PII_PATTERN = re.compile(
    r"(^|_)(e?mail|email_address|phone|phone_number|mobile|ssn|ip|ip_address|ipaddr|"
    r"name|first_name|last_name|full_name|address|street|passport|iban|card_number)$"
)
_ACTIVATION_PATTERN = re.compile(r"(tanh|activation|^act_|_act$|^h\d+_|^hidden)")

#: A text column with at most this many distinct values in a file is inferred as a segment.
SEGMENT_MAX_DISTINCT = 50

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def is_numeric_type(sql_type: str) -> bool:
    return sql_type.upper() in _NUMERIC_TYPES or sql_type.upper().startswith("DECIMAL")


@dataclass(frozen=True)
class MappingOptions:
    """What the user said about a file, from flags or from a config source (all optional)."""

    kind: str | None = None
    map: dict[str, str] = field(default_factory=dict)
    segments: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    model: str | None = None
    model_version: str | None = None
    class_probs: tuple[tuple[str, str], ...] = ()
    classes: tuple[str, ...] = ()
    timezone: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in FIELDS:
            raise ConfigError(f"kind must be one of predictions, labels, kpi; got {self.kind!r}")
        for fld in self.map:
            if fld not in ALL_FIELDS:
                raise ConfigError(
                    f"unknown field {fld!r} in a mapping; fields are: {', '.join(sorted(ALL_FIELDS))}"
                )


@dataclass(frozen=True)
class ResolvedMapping:
    """How one file's columns map to the contract. ``fields`` maps field -> source column."""

    kind: str
    fields: dict[str, str]
    field_sources: dict[str, str]
    constants: dict[str, str]
    class_probs: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]
    roles: dict[str, str]
    role_sources: dict[str, str]
    timezone: str

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return tuple(c for c, r in self.roles.items() if r == "pii")

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fields": self.fields,
            "field_sources": self.field_sources,
            "constants": self.constants,
            "class_probs": dict(self.class_probs),
            "classes": list(self.classes),
            "roles": self.roles,
            "timezone": self.timezone,
        }


# --------------------------------------------------------------------------- parsing helpers
def parse_pairs(items: list[str] | tuple[str, ...], what: str) -> tuple[tuple[str, str], ...]:
    """Parse ``KEY=VALUE`` items (each item may hold several, comma separated)."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"{what}: expected KEY=VALUE, got {part!r}")
            pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def parse_list(value: str | None) -> tuple[str, ...]:
    """Parse ``a,b,c`` into a tuple; empty parts dropped."""
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


# --------------------------------------------------------------------------- config file
@dataclass(frozen=True)
class ConfigSource:
    """One ``[[source]]`` table of lossboard.toml."""

    match: str | None
    options: MappingOptions


@dataclass(frozen=True)
class Config:
    path: Path | None
    sources: tuple[ConfigSource, ...] = ()
    timezone: str | None = None

    def source_for(self, file_name: str, kind: str | None) -> MappingOptions | None:
        """The first source whose ``match`` glob fits the file name (and kind, if given)."""
        for src in self.sources:
            if src.match is not None and not fnmatch.fnmatch(file_name, src.match):
                continue
            if kind is not None and src.options.kind is not None and src.options.kind != kind:
                continue
            return src.options
        return None


_SOURCE_KEYS = {"match", "kind", "map", "segments", "features", "activations", "pii", "model",
                "model_version", "class_probs", "classes", "timezone"}


def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_list(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a list of column names, got {value!r}")


def load_config(path: Path | str | None) -> Config:
    """Read lossboard.toml. ``None`` means: ./lossboard.toml if it exists, else no config.

    Format (docs/log-contract.md has the full reference)::

        timezone = "UTC"            # for naive timestamps, unless a source says otherwise
        [[source]]
        match = "fraud_*.parquet"   # glob on the file name; omit to match every file
        kind = "predictions"
        map = { request_id = "event_id", p = "fraud_score" }
        segments = ["region"]
    """
    if path is None:
        default = Path("lossboard.toml")
        if not default.exists():
            return Config(path=None)
        path = default
    path = Path(path)
    data = read_toml(path)
    # [[slo]], [alerts] and [[maintenance]] belong to lossboard.dashboard.monitoring_config,
    # which reads the same file and checks them.
    unknown_top = set(data) - {"timezone", "source", "slo", "alerts", "maintenance"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown_top)}; "
                          "expected timezone, [[source]], [[slo]], [alerts] and [[maintenance]]")
    sources = []
    for i, raw in enumerate(data.get("source", [])):
        where = f"{path} [[source]] #{i + 1}"
        unknown = set(raw) - _SOURCE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        cp = raw.get("class_probs", {})
        if not isinstance(cp, dict):
            raise ConfigError(f"{where}: class_probs must be a table CLASS = \"column\"")
        mp = raw.get("map", {})
        if not isinstance(mp, dict) or not all(isinstance(v, str) for v in mp.values()):
            raise ConfigError(f"{where}: map must be a table FIELD = \"column\"")
        try:
            options = MappingOptions(
                kind=raw.get("kind"),
                map=dict(mp),
                segments=_as_tuple(raw.get("segments"), where),
                features=_as_tuple(raw.get("features"), where),
                activations=_as_tuple(raw.get("activations"), where),
                pii=_as_tuple(raw.get("pii"), where),
                model=raw.get("model"),
                model_version=raw.get("model_version"),
                class_probs=tuple((str(k), str(v)) for k, v in cp.items()),
                classes=_as_tuple(raw.get("classes"), where),
                timezone=raw.get("timezone"),
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        sources.append(ConfigSource(match=raw.get("match"), options=options))
    return Config(path=path, sources=tuple(sources), timezone=data.get("timezone"))


# --------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class SourceColumn:
    """A column as the reader sees it: name, DuckDB type, distinct count for text columns."""

    name: str
    sql_type: str
    n_distinct: int | None = None
    #: For a text column that could be a numeric field by its name: the share of its non-blank
    #: values that read as numbers (None: not measured yet, before the file is read).
    numeric_share: float | None = None


# Fields whose auto-detected column must have a plausible type: a text column called
# "prediction" holding class names must not become the probability.
_NUMERIC_FIELDS = frozenset({"p", "logit", "weight", "value"})

#: A text column counts as numeric for auto-detection when at least this share of its
#: non-blank values read as numbers: one "abc" among scores makes the reader type the column
#: as text, and that row belongs in the quarantine (bad_score), not the whole file in the bin.
#: A majority, because a short file with one bad score has a low share (2 of 3), while a text
#: column of class names that the guard above is for has a share near 0.
NUMERIC_TEXT_MIN_SHARE = 0.5


def numeric_candidates(columns: list[SourceColumn]) -> list[str]:
    """Text columns whose name could make them a numeric field: their numeric share decides
    (:data:`NUMERIC_TEXT_MIN_SHARE`), so the ingest measures it before resolving."""
    names = {_norm(c) for f in _NUMERIC_FIELDS for c in _AUTO_NAMES[f]}
    return [c.name for c in columns if _is_text_type(c.sql_type) and _norm(c.name) in names]


def _is_text_type(sql_type: str) -> bool:
    return sql_type.upper() in ("VARCHAR", "JSON")


def _auto_detect(field_name: str, by_norm: dict[str, str], taken: set[str],
                 types: dict[str, str] | None = None,
                 shares: dict[str, float | None] | None = None) -> str | None:
    for candidate in _AUTO_NAMES[field_name]:
        col = by_norm.get(_norm(candidate))
        if col is None or col in taken:
            continue
        sql_type = (types or {}).get(col, "").upper()
        if field_name in _NUMERIC_FIELDS and types is not None and not is_numeric_type(sql_type):
            # A text column qualifies by its values (numeric_share, measured by the ingest).
            share = (shares or {}).get(col)
            if not _is_text_type(sql_type) or share is None or share < NUMERIC_TEXT_MIN_SHARE:
                continue
        if field_name == "probs" and types is not None and not sql_type.endswith("[]"):
            continue
        return col
    return None


def _detect_kind(columns: list[str], types: dict[str, str],
                 shares: dict[str, float | None]) -> str | None:
    by_norm = {_norm(c): c for c in columns}
    has = {f: _auto_detect(f, by_norm, set(), types, shares) is not None for f in _AUTO_NAMES}
    if has["p"] or has["logit"] or has["probs"]:
        return "predictions"
    if has["label"]:
        return "labels"
    if has["kpi"] and has["value"]:
        return "kpi"
    return None


def _kind_from_user(*opts: MappingOptions) -> str | None:
    """The kind implied by what the user mapped: a score means predictions, etc."""
    mapped = {f for o in opts for f in o.map}
    if any(o.class_probs for o in opts) or mapped & {"p", "logit", "probs", "model_version"}:
        return "predictions"
    if mapped & {"label", "label_ts"}:
        return "labels"
    if mapped & {"kpi", "value"}:
        return "kpi"
    return None


def infer_role(col: SourceColumn) -> str:
    """Role of a column nobody named: pii by name, activation by name (numeric), numeric ->
    feature, text with few distinct values -> segment, other text -> feature, else attribute."""
    key = col.name.lower()
    if _PII_PATTERN.search(key):
        return "pii"
    sql_type = col.sql_type.upper()
    if is_numeric_type(sql_type):
        return "activation" if _ACTIVATION_PATTERN.search(key) else "feature"
    if sql_type in ("VARCHAR", "BOOLEAN"):
        if col.n_distinct is not None and col.n_distinct <= SEGMENT_MAX_DISTINCT:
            return "segment"
        return "feature"
    return "attribute"


def resolve(
    file_label: str,
    columns: list[SourceColumn],
    flags: MappingOptions,
    config: Config,
    registered_roles: dict[str, str] | None = None,
) -> ResolvedMapping:
    """Decide which column plays which field, and every other column's role.

    Raises :class:`IngestError` naming the file, the missing field and the columns found,
    when a required field cannot be found.
    """
    names = [c.name for c in columns]
    present = set(names)
    file_name = Path(file_label).name
    cfg = config.source_for(file_name, flags.kind) or MappingOptions()
    shares = {c.name: c.numeric_share for c in columns}
    kind = flags.kind or cfg.kind or _kind_from_user(flags, cfg) or _detect_kind(
        names, {c.name: c.sql_type for c in columns}, shares
    )
    if kind is None:
        raise IngestError(
            f"{file_label}: cannot tell whether this is a predictions, labels or kpi file "
            f"(columns found: {', '.join(names)}); pass --kind or map the score/label "
            "column with --map p=COLUMN or --map label=COLUMN"
        )

    fields: dict[str, str] = {}
    sources: dict[str, str] = {}
    for origin, opts in (("flag", flags), ("config", cfg)):
        for fld, col in opts.map.items():
            if fld in fields:
                continue
            if fld not in FIELDS[kind]:
                raise IngestError(f"{file_label}: field {fld!r} ({origin}) does not apply to a "
                                  f"{kind} file; its fields are {', '.join(FIELDS[kind])}")
            if col not in present:
                where = "--map" if origin == "flag" else f"{config.path}"
                raise IngestError(
                    f"{file_label}: {where} maps {fld} to column {col!r}, which the file does not "
                    f"have (columns found: {', '.join(names)})"
                )
            fields[fld] = col
            sources[fld] = origin
    class_probs = flags.class_probs or cfg.class_probs
    for cls, col in class_probs:
        if col not in present:
            raise IngestError(f"{file_label}: --class-probs names column {col!r} for class "
                              f"{cls!r}, which the file does not have (columns found: "
                              f"{', '.join(names)})")
    constants = {}
    for fld in ("model", "model_version"):
        value = getattr(flags, fld) or getattr(cfg, fld)
        if value is not None:
            constants[fld] = value

    types = {c.name: c.sql_type for c in columns}
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(_norm(n), n)
    taken = set(fields.values()) | {c for _, c in class_probs}
    for fld in FIELDS[kind]:
        if fld in fields:
            continue
        if kind == "predictions" and fld in ("p", "logit", "probs") and class_probs:
            continue
        col = _auto_detect(fld, by_norm, taken, types, shares)
        if col is None and kind == "labels" and fld == "label_ts":
            col = _auto_detect("ts", by_norm, taken, types, shares)
        if col is not None:
            fields[fld] = col
            sources[fld] = "auto"
            taken.add(col)

    _check_required(file_label, kind, fields, constants, class_probs, names)

    explicit_roles: dict[str, tuple[str, str]] = {}
    for origin, opts in (("flag", flags), ("config", cfg)):
        for role, cols in (("segment", opts.segments), ("feature", opts.features),
                           ("activation", opts.activations), ("pii", opts.pii)):
            for col in cols:
                if col not in present:
                    raise IngestError(f"{file_label}: {role} column {col!r} ({origin}) is not in "
                                      f"the file (columns found: {', '.join(names)})")
                if col in taken:
                    raise IngestError(f"{file_label}: column {col!r} is mapped to a field and "
                                      f"cannot also be a {role}")
                explicit_roles.setdefault(col, (role, origin))
    roles: dict[str, str] = {}
    role_sources: dict[str, str] = {}
    # Case-insensitive, as DuckDB's identifiers: a later file's REGION is the registered region.
    registered_lower = {n.lower(): r for n, r in (registered_roles or {}).items()}
    for col in columns:
        if col.name in taken:
            continue
        if col.name in explicit_roles:
            roles[col.name], role_sources[col.name] = explicit_roles[col.name]
        elif col.name.lower() in registered_lower:
            roles[col.name], role_sources[col.name] = registered_lower[col.name.lower()], "registry"
        else:
            roles[col.name], role_sources[col.name] = infer_role(col), "inferred"
    classes = flags.classes or cfg.classes or tuple(c for c, _ in class_probs)
    timezone = flags.timezone or cfg.timezone or config.timezone or "UTC"
    return ResolvedMapping(kind=kind, fields=fields, field_sources=sources, constants=constants,
                           class_probs=tuple(class_probs), classes=tuple(classes), roles=roles,
                           role_sources=role_sources, timezone=timezone)


def _check_required(file_label: str, kind: str, fields: dict[str, str], constants: dict[str, str],
                    class_probs: tuple[tuple[str, str], ...], names: list[str]) -> None:
    found = f"columns found: {', '.join(names)}"
    missing: list[str] = []
    hints: list[str] = []
    if kind == "predictions":
        for fld in ("request_id", "ts"):
            if fld not in fields:
                missing.append(fld)
                hints.append(f"--map {fld}=COLUMN")
        for fld in ("model", "model_version"):
            if fld not in fields and fld not in constants:
                missing.append(fld)
                hints.append(f"--{fld.replace('_', '-')} VALUE (a constant) or --map {fld}=COLUMN")
        if not class_probs and not {"p", "logit", "probs"} & set(fields):
            missing.append("score (p, logit, or per-class probabilities)")
            hints.append("--map p=COLUMN, --map logit=COLUMN or --class-probs CLASS=COLUMN,...")
    elif kind == "labels":
        for fld in ("request_id", "label"):
            if fld not in fields:
                missing.append(fld)
                hints.append(f"--map {fld}=COLUMN")
    else:
        for fld in ("ts", "kpi", "value"):
            if fld not in fields:
                missing.append(fld)
                hints.append(f"--map {fld}=COLUMN")
    if missing:
        raise IngestError(
            f"{file_label}: required field(s) missing for a {kind} file: {', '.join(missing)} "
            f"({found}); use {'; '.join(hints)}"
        )
