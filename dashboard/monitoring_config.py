"""The monitoring part of lossboard.toml: ``[[slo]]``, ``[alerts]`` and ``[[maintenance]]``.

Parsed into frozen dataclasses of tuples, so a config is hashable and picklable (the
dashboard passes it to cached query functions) and can be compared in tests. Every mistake is
a :class:`~lossboard.errors.ConfigError` naming the file, the table and the key. The format is
documented with examples in docs/slo-alerts.md; ``sample_data/lossboard.toml`` is a complete one.

Durations are strings ``<N>m``, ``<N>h`` or ``<N>d`` (``"5m"``, ``"6h"``, ``"3d"``), held as
whole minutes; every window of a rule or an SLO is a multiple of 5 minutes because alerts are
evaluated on a 5-minute grid (docs/slo-alerts.md, "How alerts are evaluated").
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lossboard.errors import ConfigError, QueryError
from lossboard.tomlfile import read_toml

#: The evaluation grid: every window is a multiple of this many minutes.
STEP_MINUTES = 5
#: Where ``lossboard alerts`` links to when ``[alerts] dashboard_url`` is not set.
DEFAULT_DASHBOARD_URL = "http://localhost:8501/"
#: The environment variable naming a config file (used by :func:`load` without a path).
CONFIG_ENV = "LOSSBOARD_CONFIG"
SEVERITIES = ("page", "ticket")
SLI_KINDS = ("predictions", "windows")
TIME_AXES = ("label", "prediction")


# --------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class Slo:
    """One ``[[slo]]`` table: a service level objective on a model's log loss.

    ``sli = "predictions"``: every labelled prediction is an event, *bad* when its score is
    NaN/inf or its per-row log loss exceeds ``max_row_loss``. ``sli = "windows"``: every
    5-minute step is an event, *bad* when the log loss of the trailing ``window_minutes`` exceeds
    the target (``target_log_loss``, or ``(1 + max_relative_increase)`` times the baseline's
    loss: ``baseline_version`` or the ``reference_start``/``reference_end`` window); steps whose
    window holds fewer than ``min_samples`` rows are not events. ``objective`` is the share of
    good events over ``period_days`` (the error budget is ``1 - objective``). ``time_axis``:
    ``label`` puts an event at the time its outcome became known (``max(ts, label_ts)``),
    ``prediction`` at the prediction's ``ts``; either way only labels known at the as-of time
    count, so a replay gives the answer of that time.
    """

    name: str
    model: str
    sli: str = "predictions"
    objective: float = 0.99
    period_days: float = 30.0
    versions: tuple[str, ...] = ()
    segments: tuple[tuple[str, str], ...] = ()
    max_row_loss: float | None = None
    target_log_loss: float | None = None
    max_relative_increase: float | None = None
    baseline_version: str | None = None
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    window_minutes: int = 60
    min_samples: int = 100
    time_axis: str = "label"

    @property
    def period_minutes(self) -> int:
        return round(self.period_days * 24 * 60)

    @property
    def error_budget(self) -> float:
        """The share of events allowed to be bad: ``1 - objective``."""
        return 1.0 - self.objective


@dataclass(frozen=True)
class BurnPolicy:
    """One multiwindow burn-rate condition: fire with ``severity`` when the burn rate is at
    least ``factor`` over both ``long_minutes`` and ``short_minutes``."""

    severity: str
    long_minutes: int
    short_minutes: int
    factor: float


#: The Google SRE workbook's multiwindow, multi-burn-rate alerts for a 30-day 99.9% SLO
#: (chapter "Alerting on SLOs", table 5-8): 2% of the budget in 1 h, 5% in 6 h, 10% in 3 days.
DEFAULT_BURN_POLICIES = (
    BurnPolicy("page", 60, 5, 14.4),
    BurnPolicy("page", 360, 30, 6.0),
    BurnPolicy("ticket", 4320, 360, 1.0),
)


@dataclass(frozen=True)
class Rule:
    """One threshold rule of ``[alerts.<rule>]``. Which fields a rule reads: :data:`RULE_KEYS`."""

    name: str
    enabled: bool = True
    severity: str = "ticket"
    threshold: float = 0.0
    min_samples: int = 100
    window_minutes: int = 60
    for_minutes: int = 0
    low: float = 0.01
    high: float = 0.99
    activation_threshold: float = 0.9
    baseline_minutes: int = 7 * 24 * 60
    alpha: float = 0.05
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    features: tuple[str, ...] = ()


#: Default settings of every rule (docs/slo-alerts.md, "Rules"); ``[alerts.<rule>]`` overrides.
DEFAULT_RULES: dict[str, Rule] = {
    # NaN / inf scores: numerical failures, every one of them lost traffic.
    "nonfinite_scores": Rule("nonfinite_scores", severity="page", threshold=0.01,
                             min_samples=100, window_minutes=60),
    # Share of finite scores below `low` or above `high`.
    "extreme_scores": Rule("extreme_scores", threshold=0.25, min_samples=100, window_minutes=60),
    # Share of |activation| > activation_threshold, sustained for `for`.
    "activation_tail": Rule("activation_tail", threshold=0.05, min_samples=100,
                            window_minutes=60, for_minutes=60),
    # Labels that arrived in the window vs the rate of the `baseline` before it: below `threshold`.
    "label_stall": Rule("label_stall", threshold=0.5, min_samples=100, window_minutes=180),
    # PSI of any feature (or the score) over the window vs the reference window.
    "drift": Rule("drift", threshold=0.25, min_samples=500, window_minutes=24 * 60),
    # canary.compare_versions over the window: verdict fail.
    "canary": Rule("canary", severity="page", threshold=0.05, min_samples=1000,
                   window_minutes=7 * 24 * 60),
}
_COMMON_KEYS = {"enabled", "severity", "threshold", "min_samples", "window", "for"}
RULE_KEYS: dict[str, set[str]] = {
    "nonfinite_scores": _COMMON_KEYS,
    "extreme_scores": _COMMON_KEYS | {"low", "high"},
    "activation_tail": _COMMON_KEYS | {"activation_threshold"},
    "label_stall": _COMMON_KEYS | {"baseline"},
    "drift": _COMMON_KEYS | {"reference_from", "reference_to", "features"},
    "canary": _COMMON_KEYS | {"alpha"},
}


@dataclass(frozen=True)
class Webhook:
    """Where ``lossboard alerts`` POSTs its JSON (``[alerts.webhook]``)."""

    url: str
    timeout_s: float = 5.0
    retries: int = 3


@dataclass(frozen=True)
class Maintenance:
    """A ``[[maintenance]]`` window ``[start, end)``: alerts of ``model`` (every model when
    None) evaluated inside it are suppressed, with ``reason``."""

    start: datetime
    end: datetime
    model: str | None = None
    reason: str = "maintenance"

    def covers(self, model: str, at: datetime) -> bool:
        return (self.model is None or self.model == model) and self.start <= at < self.end


#: How far back alerts look for when a condition began (``[alerts] lookback``); the findings
#: and the label stall look back as far for a problem already on when a window began.
DEFAULT_LOOKBACK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class MonitoringConfig:
    """Everything ``lossboard alerts`` / ``metrics`` and the dashboard's alert views need."""

    path: str | None = None
    slos: tuple[Slo, ...] = ()
    rules: tuple[Rule, ...] = tuple(DEFAULT_RULES.values())
    burn_policies: tuple[BurnPolicy, ...] = DEFAULT_BURN_POLICIES
    maintenance: tuple[Maintenance, ...] = ()
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    lookback_minutes: int = DEFAULT_LOOKBACK_MINUTES
    segment_columns: tuple[str, ...] = ()
    max_segment_values: int = 10
    webhook: Webhook | None = None

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise ConfigError(f"no alert rule {name!r} (rules: {', '.join(r.name for r in self.rules)})")


# --------------------------------------------------------------------------- values
def parse_duration(value: Any, where: str) -> int:
    """Minutes in ``"<N>m"``, ``"<N>h"`` or ``"<N>d"``, a multiple of 5 minutes.

    >>> parse_duration("6h", "window")
    360
    """
    match = re.fullmatch(r"\s*([0-9]+)\s*([mhd])\s*", value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected a duration like \"5m\", \"6h\" or \"3d\", "
                          f"got {value!r}")
    minutes = int(match[1]) * {"m": 1, "h": 60, "d": 1440}[match[2]]
    if minutes <= 0 or minutes % STEP_MINUTES:
        raise ConfigError(f"{where}: {value!r} must be a positive multiple of {STEP_MINUTES} "
                          "minutes (alerts are evaluated on a 5-minute grid)")
    return minutes


def format_minutes(minutes: int) -> str:
    """``90 -> "90m"``, ``360 -> "6h"``, ``4320 -> "3d"``: the label of a window."""
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def parse_time(value: Any, where: str) -> datetime:
    """A TOML datetime or an ISO-8601 string; naive means UTC (the Filter's own rule)."""
    from lossboard.dashboard.analysis.filters import Filter

    try:
        parsed = Filter(start=value).start
    except QueryError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if parsed is None:
        raise ConfigError(f"{where}: expected a time like 2026-10-01T00:00:00Z, got {value!r}")
    return parsed


def _number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf, *,
            open_lo: bool = False, open_hi: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value < lo or value > hi or (open_lo and value == lo) or (open_hi and value == hi):
        raise ConfigError(f"{where}: must be in {'(' if open_lo else '['}{lo:g}, {hi:g}"
                          f"{')' if open_hi else ']'}, got {value!r}")
    return float(value)


def _int(value: Any, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{where}: expected a whole number >= {lo}, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: "
                          f"{', '.join(sorted(allowed))})")


# --------------------------------------------------------------------------- sections
_SLO_KEYS = {"name", "model", "sli", "objective", "period", "versions", "segment",
             "max_row_loss", "target_log_loss", "max_relative_increase", "baseline_version",
             "reference_from", "reference_to", "window", "min_samples", "time_axis"}


def parse_slo(raw: Any, where: str) -> Slo:
    """One ``[[slo]]`` table (see :class:`Slo`)."""
    raw = _table(raw, where)
    _check_keys(raw, _SLO_KEYS, where)
    for key in ("name", "model"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    name = _str(raw["name"], f"{where} name")
    where = f"{where} ({name})"
    kw: dict[str, Any] = {"name": name, "model": _str(raw["model"], f"{where} model")}
    kw["sli"] = _choice(raw.get("sli", "predictions"), f"{where} sli", SLI_KINDS)
    kw["objective"] = _number(raw.get("objective", 0.99), f"{where} objective", 0, 1,
                              open_lo=True, open_hi=True)
    kw["period_days"] = parse_duration(raw.get("period", "30d"), f"{where} period") / 1440
    if "versions" in raw:
        kw["versions"] = _strings(raw["versions"], f"{where} versions")
    if "segment" in raw:
        seg = _table(raw["segment"], f"{where} segment")
        kw["segments"] = tuple(sorted((str(c), _str(v, f"{where} segment.{c}"))
                                      for c, v in seg.items()))
    kw["window_minutes"] = parse_duration(raw.get("window", "1h"), f"{where} window")
    kw["min_samples"] = _int(raw.get("min_samples", 100), f"{where} min_samples", 1)
    kw["time_axis"] = _choice(raw.get("time_axis", "label"), f"{where} time_axis", TIME_AXES)
    if kw["sli"] == "predictions":
        if "max_row_loss" not in raw:
            raise ConfigError(f"{where}: sli = \"predictions\" needs max_row_loss (the per-row "
                              "log loss above which a prediction is bad, e.g. 2.3026 = -ln 0.1)")
        extra = sorted({"target_log_loss", "max_relative_increase", "baseline_version",
                        "reference_from", "reference_to"} & set(raw))
        if extra:
            raise ConfigError(f"{where}: key {extra[0]!r} applies to sli = \"windows\" only")
        kw["max_row_loss"] = _number(raw["max_row_loss"], f"{where} max_row_loss", 0,
                                     open_lo=True)
    else:
        if "max_row_loss" in raw:
            raise ConfigError(f"{where}: key 'max_row_loss' applies to sli = \"predictions\" only")
        absolute = "target_log_loss" in raw
        relative = "max_relative_increase" in raw
        if absolute == relative:
            raise ConfigError(f"{where}: sli = \"windows\" needs exactly one of target_log_loss "
                              "(absolute) or max_relative_increase (with baseline_version or "
                              "reference_from/reference_to)")
        if absolute:
            kw["target_log_loss"] = _number(raw["target_log_loss"], f"{where} target_log_loss",
                                            0, open_lo=True)
        else:
            kw["max_relative_increase"] = _number(raw["max_relative_increase"],
                                                  f"{where} max_relative_increase", 0)
            has_version = "baseline_version" in raw
            has_window = "reference_from" in raw or "reference_to" in raw
            if has_version == has_window:
                raise ConfigError(f"{where}: max_relative_increase needs a baseline: either "
                                  "baseline_version or reference_from and reference_to")
            if has_version:
                kw["baseline_version"] = _str(raw["baseline_version"],
                                              f"{where} baseline_version")
            else:
                for key, out in (("reference_from", "reference_start"),
                                 ("reference_to", "reference_end")):
                    if key not in raw:
                        raise ConfigError(f"{where}: missing key {key!r}")
                    kw[out] = parse_time(raw[key], f"{where} {key}")
                if kw["reference_start"] >= kw["reference_end"]:
                    raise ConfigError(f"{where}: reference_from must be before reference_to")
    return Slo(**kw)


def parse_rule(name: str, raw: Any, where: str) -> Rule:
    """One ``[alerts.<name>]`` table over :data:`DEFAULT_RULES` ``[name]``."""
    raw = _table(raw, where)
    _check_keys(raw, RULE_KEYS[name], where)
    kw: dict[str, Any] = {}
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise ConfigError(f"{where} enabled: expected true or false, got {raw['enabled']!r}")
        kw["enabled"] = raw["enabled"]
    if "severity" in raw:
        kw["severity"] = _choice(raw["severity"], f"{where} severity", SEVERITIES)
    if "threshold" in raw:
        hi = math.inf if name in ("drift", "canary") else 1.0
        kw["threshold"] = _number(raw["threshold"], f"{where} threshold", 0, hi)
    if "min_samples" in raw:
        kw["min_samples"] = _int(raw["min_samples"], f"{where} min_samples",
                                 2 if name == "canary" else 0)
    if "window" in raw:
        kw["window_minutes"] = parse_duration(raw["window"], f"{where} window")
    if "for" in raw:
        kw["for_minutes"] = (0 if raw["for"] in ("0", "0m", "0h")
                             else parse_duration(raw["for"], f"{where} for"))
    for key in ("low", "high", "activation_threshold"):
        if key in raw:
            kw[key] = _number(raw[key], f"{where} {key}", 0, 1 if key != "activation_threshold"
                              else math.inf)
    if "baseline" in raw:
        kw["baseline_minutes"] = parse_duration(raw["baseline"], f"{where} baseline")
    if "alpha" in raw:
        kw["alpha"] = _number(raw["alpha"], f"{where} alpha", 0, 1, open_lo=True, open_hi=True)
    if ("reference_from" in raw) != ("reference_to" in raw):
        raise ConfigError(f"{where}: set both reference_from and reference_to, or neither")
    if "reference_from" in raw:
        kw["reference_start"] = parse_time(raw["reference_from"], f"{where} reference_from")
        kw["reference_end"] = parse_time(raw["reference_to"], f"{where} reference_to")
        if kw["reference_start"] >= kw["reference_end"]:
            raise ConfigError(f"{where}: reference_from must be before reference_to")
    if "features" in raw:
        kw["features"] = _strings(raw["features"], f"{where} features")
    rule = replace(DEFAULT_RULES[name], **kw)
    if rule.low >= rule.high:
        raise ConfigError(f"{where}: low must be below high, got {rule.low} and {rule.high}")
    return rule


def parse_burn_policy(raw: Any, where: str) -> BurnPolicy:
    raw = _table(raw, where)
    _check_keys(raw, {"severity", "long_window", "short_window", "factor"}, where)
    for key in ("severity", "long_window", "short_window", "factor"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    policy = BurnPolicy(_choice(raw["severity"], f"{where} severity", SEVERITIES),
                        parse_duration(raw["long_window"], f"{where} long_window"),
                        parse_duration(raw["short_window"], f"{where} short_window"),
                        _number(raw["factor"], f"{where} factor", 0, open_lo=True))
    if policy.short_minutes > policy.long_minutes:
        raise ConfigError(f"{where}: short_window must not be longer than long_window")
    return policy


_ALERTS_KEYS = {"dashboard_url", "lookback", "segments", "max_segment_values", "webhook",
                "burn_rate", *DEFAULT_RULES}


def parse_alerts(raw: Any, where: str) -> dict[str, Any]:
    """The ``[alerts]`` table as :class:`MonitoringConfig` keyword arguments."""
    raw = _table(raw, where)
    _check_keys(raw, _ALERTS_KEYS, where)
    kw: dict[str, Any] = {}
    if "dashboard_url" in raw:
        url = _str(raw["dashboard_url"], f"{where} dashboard_url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where} dashboard_url: expected an http(s) URL, got {url!r}")
        kw["dashboard_url"] = url
    if "lookback" in raw:
        kw["lookback_minutes"] = parse_duration(raw["lookback"], f"{where} lookback")
    if "segments" in raw:
        kw["segment_columns"] = _strings(raw["segments"], f"{where} segments")
    if "max_segment_values" in raw:
        kw["max_segment_values"] = _int(raw["max_segment_values"],
                                        f"{where} max_segment_values", 1)
    if "webhook" in raw:
        hook = _table(raw["webhook"], f"{where}.webhook")
        _check_keys(hook, {"url", "timeout_s", "retries"}, f"{where}.webhook")
        if "url" not in hook:
            raise ConfigError(f"{where}.webhook: missing key 'url'")
        kw["webhook"] = Webhook(
            url=_str(hook["url"], f"{where}.webhook url"),
            timeout_s=_number(hook.get("timeout_s", 5.0), f"{where}.webhook timeout_s", 0,
                              open_lo=True),
            retries=_int(hook.get("retries", 3), f"{where}.webhook retries"))
    if "burn_rate" in raw:
        policies = raw["burn_rate"]
        if not isinstance(policies, list) or not policies:
            raise ConfigError(f"{where}: burn_rate must be [[alerts.burn_rate]] tables")
        kw["burn_policies"] = tuple(parse_burn_policy(p, f"{where} [[alerts.burn_rate]] "
                                                         f"#{i + 1}")
                                    for i, p in enumerate(policies))
    kw["rules"] = tuple(parse_rule(name, raw[name], f"{where}.{name}") if name in raw else rule
                        for name, rule in DEFAULT_RULES.items())
    return kw


def parse_maintenance(raw: Any, where: str) -> Maintenance:
    raw = _table(raw, where)
    _check_keys(raw, {"start", "end", "model", "reason"}, where)
    for key in ("start", "end"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    window = Maintenance(start=parse_time(raw["start"], f"{where} start"),
                         end=parse_time(raw["end"], f"{where} end"),
                         model=_str(raw["model"], f"{where} model") if "model" in raw else None,
                         reason=_str(raw.get("reason", "maintenance"), f"{where} reason"))
    if window.start >= window.end:
        raise ConfigError(f"{where}: start must be before end")
    return window


def parse(data: dict[str, Any], path: str | None = None) -> MonitoringConfig:
    """The monitoring config from a parsed TOML document (other top-level keys ignored: they
    belong to the ingest, lossboard.ingest.mapping)."""
    name = path or "config"
    kw: dict[str, Any] = {"path": path}
    slos = data.get("slo", [])
    if not isinstance(slos, list):
        raise ConfigError(f"{name}: slo must be [[slo]] tables")
    kw["slos"] = tuple(parse_slo(s, f"{name} [[slo]] #{i + 1}") for i, s in enumerate(slos))
    names = [s.name for s in kw["slos"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{name}: two [[slo]] tables are named {dup[0]!r}; names must differ")
    if "alerts" in data:
        kw.update(parse_alerts(data["alerts"], f"{name} [alerts]"))
    windows = data.get("maintenance", [])
    if not isinstance(windows, list):
        raise ConfigError(f"{name}: maintenance must be [[maintenance]] tables")
    kw["maintenance"] = tuple(parse_maintenance(m, f"{name} [[maintenance]] #{i + 1}")
                              for i, m in enumerate(windows))
    return MonitoringConfig(**kw)


def load(path: str | Path | None = None) -> MonitoringConfig:
    """Read the monitoring config.

    ``path`` given: that file (it must exist). Else the file named by the ``LOSSBOARD_CONFIG``
    environment variable, else ``./lossboard.toml`` if it exists, else the defaults (no SLOs,
    the default rules).
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if env:
            path = env
        elif Path("lossboard.toml").exists():
            path = "lossboard.toml"
        else:
            return MonitoringConfig()
    path = Path(path)
    data = read_toml(path)
    return parse(data, str(path))


def loads(text: str) -> MonitoringConfig:
    """:func:`parse` of a TOML string (tests, examples)."""
    try:
        return parse(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc


__all__ = ["BurnPolicy", "DEFAULT_BURN_POLICIES", "DEFAULT_RULES", "Maintenance",
           "MonitoringConfig", "Rule", "Slo", "Webhook", "format_minutes", "load", "loads",
           "parse", "parse_duration", "parse_time"]
