"""The sidebar Filter, mirrored in ``st.query_params`` so every view is a shareable URL.

``app.py`` calls :func:`render` once per run, before the page runs; pages read the result
with :func:`current_filter` and never look at ``st.query_params`` for the filter.

URL keys
--------
The Filter's own keys, written by :meth:`Filter.to_query` and read by
:meth:`Filter.from_query` (the same keys as the ``filter`` field of ``lossboard report --json``):
``model``, ``version`` (repeated), ``segment`` (repeated ``COLUMN=VALUE``), ``from``, ``to``
(ISO-8601 UTC, half-open ``[from, to)``), ``maturity_h``, ``ref_from``, ``ref_to``,
``ref_version``. Two more say which sidebar choice produced them:

``range``
    ``1h``, ``6h``, ``24h``, ``7d``, ``30d`` (the last N hours/days up to the hour after the
    model's newest prediction: the data may be historical, so presets follow the data, not the
    wall clock), ``all`` (no time range) or ``custom``.
``ref``
    ``previous`` (the period of equal length just before the selected one), ``start`` (no
    reference window: the report's default, the first 7 days), ``custom`` or ``version``.

A URL is reproduced exactly: a preset whose ``from``/``to`` no longer match it (newer data
arrived since the link was made) opens as ``custom`` with the link's times. A URL with only
``from``/``to`` (an alert's link) opens as ``custom``. Values that do not fit the database
(unknown model, version, segment, unreadable time) are dropped with an ``st.error`` saying
which and why.

Pages keep their own widgets in the URL with :func:`page_param` / :func:`set_page_param`;
each page lists its keys in its docstring (executive: ``slo_target``).

Back / forward: every change of the view is one ``st.query_params`` write, which the browser
keeps as one history entry; going back reruns the app with the older URL, which this module
loads into the widgets (a URL that differs from the one it last wrote is an outside change).
Switching pages clears the URL; the session's filter is then kept and written again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import streamlit as st

from lossboard.dashboard.analysis import executive
from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.state import query
from lossboard.errors import QueryError

T = TypeVar("T")

_KEY = "lossboard_filter"
_WRITTEN = "_lb_written_query"
_ERRORS = "_lb_filter_errors"
_ERRORS_URL = "_lb_filter_errors_url"
_LAST_WINDOW = "_lb_last_window"
_EXACT = "_lb_exact_times"

FILTER_KEYS = ("model", "version", "segment", "from", "to", "maturity_h", "ref_from", "ref_to",
               "ref_version")
RANGE_KEY, REF_KEY = "range", "ref"
URL_KEYS = FILTER_KEYS + (RANGE_KEY, REF_KEY)

#: Time presets and their length (``all`` and ``custom`` have none).
PRESETS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
    "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None, "custom": None,
}
DEFAULT_RANGE = "7d"
REF_MODES = {"previous": "Previous period of equal length", "start": "First 7 days (report default)",
             "custom": "Custom window", "version": "A model version"}
DEFAULT_REF = "previous"

# Widget keys (st.session_state).
W_MODEL, W_VERSIONS, W_RANGE, W_FROM, W_TO = "lb_model", "lb_versions", "lb_range", "lb_from", "lb_to"
W_MATURITY, W_REF, W_REF_FROM, W_REF_TO, W_REF_VERSION = (
    "lb_maturity_h", "lb_ref", "lb_ref_from", "lb_ref_to", "lb_ref_version")
W_SEGMENT_PREFIX = "lb_seg_"


# --------------------------------------------------------------------------- time helpers
def _naive(value: datetime | None) -> datetime | None:
    """UTC wall time without tzinfo: what st.datetime_input shows and returns."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else (value.replace(tzinfo=UTC) if value.tzinfo is None
                                       else value.astimezone(UTC))


def _minute(value: datetime | None) -> datetime | None:
    """st.datetime_input keeps minutes only: the value a link's time shows as."""
    return None if value is None else _naive(value).replace(second=0, microsecond=0)


def _time_input(label: str, key: str) -> datetime | None:
    """A UTC time widget that keeps a link's exact time (seconds, microseconds) until edited."""
    shown = st.sidebar.datetime_input(label, key=key, step=timedelta(hours=1))
    exact = st.session_state.get(_EXACT, {}).get(key)
    return exact if exact is not None and _minute(exact) == shown else _aware(shown)


def preset_window(preset: str, last_ts: datetime | None) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` of a preset: N hours/days up to the hour after the newest prediction."""
    length = PRESETS.get(preset)
    if length is None or last_ts is None:
        return None, None
    end = _aware(last_ts).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return end - length, end


def previous_window(start: datetime | None, end: datetime | None
                    ) -> tuple[datetime | None, datetime | None]:
    """The period of equal length just before ``[start, end)``."""
    if start is None or end is None:
        return None, None
    return start - (end - start), start


# --------------------------------------------------------------------------- URL -> widgets
@dataclass
class _Loaded:
    values: dict[str, Any]
    errors: list[str]


def _url_query() -> dict[str, list[str]]:
    return {k: st.query_params.get_all(k) for k in URL_KEYS if st.query_params.get_all(k)}


def _parse_part(url: dict[str, list[str]], keys: tuple[str, ...], errors: list[str]) -> Filter:
    """The Filter of some URL keys only; a bad value is reported and left out."""
    try:
        return Filter.from_query({k: url[k] for k in keys if k in url})
    except QueryError as exc:
        errors.append(f"Ignored a bad link value: {exc}.")
        return Filter()


def _options(model: str | None) -> executive.FilterOptions:
    return query(executive.filter_options, model=model)


def _load_url(url: dict[str, list[str]]) -> _Loaded:
    """Widget values for ``url``; what does not fit the database is dropped and explained."""
    errors: list[str] = []
    part = _parse_part(url, ("model",), errors)
    try:
        opts = _options(part.model)
    except QueryError as exc:
        errors.append(f"{exc}; showing {_options(None).model!r} instead.")
        opts = _options(None)
    values: dict[str, Any] = {W_MODEL: opts.model}

    versions = _parse_part(url, ("version",), errors).versions
    unknown = [v for v in versions if v not in opts.versions]
    if unknown:
        errors.append(f"Model {opts.model!r} has no version {', '.join(map(repr, unknown))} "
                      f"(versions: {', '.join(opts.versions)}); left out of the filter.")
    values[W_VERSIONS] = [v for v in opts.versions if v in versions]

    segments: dict[str, list[str]] = {}
    for col, value in _parse_part(url, ("segment",), errors).segments:
        if value in opts.segments.get(col, ()):
            segments.setdefault(col, []).append(value)
        elif col in opts.segments:
            errors.append(f"No predictions of {opts.model!r} with {col}={value!r}; left out of "
                          "the filter.")
        else:
            errors.append(f"{col!r} is not a segment column of {opts.model!r} (segment columns: "
                          f"{', '.join(opts.segments) or 'none'}); left out of the filter.")
    for col, choices in opts.segments.items():
        values[W_SEGMENT_PREFIX + col] = [v for v in choices if v in segments.get(col, [])]

    times = _parse_part(url, ("from", "to"), errors)
    preset = (url.get(RANGE_KEY) or [None])[-1]
    if preset is not None and preset not in PRESETS:
        errors.append(f"Unknown time range {preset!r} (choices: {', '.join(PRESETS)}); "
                      f"showing {DEFAULT_RANGE}.")
        preset = None
    has_times = times.start is not None or times.end is not None
    if preset is None:
        preset = "custom" if has_times else DEFAULT_RANGE
    elif has_times and (times.start, times.end) != preset_window(preset, opts.last_ts):
        preset = "custom"  # an old link: reproduce its window, not the preset's current one
    values[W_RANGE] = preset
    start, end = (times.start, times.end) if preset == "custom" else preset_window(preset, opts.last_ts)
    values[W_FROM] = _minute(start or opts.first_ts)
    values[W_TO] = _minute(end or (preset_window("1h", opts.last_ts)[1]))

    values[W_MATURITY] = _parse_part(url, ("maturity_h",), errors).maturity_hours or 0.0

    ref = _parse_part(url, ("ref_from", "ref_to", "ref_version"), errors)
    mode = (url.get(REF_KEY) or [None])[-1]
    if mode is not None and mode not in REF_MODES:
        errors.append(f"Unknown reference choice {mode!r} (choices: {', '.join(REF_MODES)}).")
        mode = None
    if ref.reference_version is not None and ref.reference_version not in opts.versions:
        errors.append(f"Model {opts.model!r} has no version {ref.reference_version!r} to compare "
                      "with; using the previous period.")
        ref = Filter(reference_start=ref.reference_start, reference_end=ref.reference_end)
        mode = None if mode == "version" else mode
    has_ref_times = ref.reference_start is not None or ref.reference_end is not None
    if ref.reference_version is not None:
        mode = "version"
    elif mode is None:
        mode = "custom" if has_ref_times else DEFAULT_REF
    elif mode == "previous" and has_ref_times and (
            (ref.reference_start, ref.reference_end) != previous_window(start, end)):
        mode = "custom"
    values[W_REF] = mode
    values[W_REF_FROM] = _minute(ref.reference_start) if has_ref_times else values[W_FROM]
    values[W_REF_TO] = _minute(ref.reference_end) if has_ref_times else values[W_TO]
    values[_EXACT] = {W_FROM: start, W_TO: end, W_REF_FROM: ref.reference_start,
                      W_REF_TO: ref.reference_end}
    values[W_REF_VERSION] = ref.reference_version or (opts.versions[0] if opts.versions else None)
    return _Loaded(values, errors)


# --------------------------------------------------------------------------- widgets -> Filter
def _draw(errors: list[str]) -> tuple[Filter, dict[str, list[str]]]:
    """The sidebar's widgets; returns the Filter and the sidebar's own URL keys."""
    st.sidebar.header("Filter")
    models = _options(None).models
    model = st.sidebar.selectbox("Model", models, key=W_MODEL)
    opts = _options(model)
    # A model switch leaves values of the old model behind: keep only what the new one has.
    state = st.session_state
    state[W_VERSIONS] = [v for v in state.get(W_VERSIONS, []) if v in opts.versions]
    versions = st.sidebar.multiselect("Model versions", opts.versions, key=W_VERSIONS,
                                      placeholder="all versions")
    segments: list[tuple[str, str]] = []
    for col, choices in opts.segments.items():
        key = W_SEGMENT_PREFIX + col
        state[key] = [v for v in state.get(key, []) if v in choices]
        segments += [(col, v) for v in st.sidebar.multiselect(col, choices, key=key,
                                                              placeholder=f"all {col} values")]

    preset = st.sidebar.selectbox(
        "Time range", list(PRESETS), key=W_RANGE,
        format_func=lambda p: {"all": "whole history", "custom": "custom"}.get(p, f"last {p}"),
        help="Presets end at the hour after the model's newest prediction, not at the wall "
             "clock. UTC, half-open [from, to).")
    if preset == "custom":
        # Unrendered widgets lose their state: a switch to custom starts from the last window.
        last_start, last_end = st.session_state.get(_LAST_WINDOW, (opts.first_ts, opts.last_ts))
        state.setdefault(W_FROM, _minute(last_start or opts.first_ts))
        state.setdefault(W_TO, _minute(last_end or opts.last_ts))
        start = _time_input("From (UTC)", W_FROM)
        end = _time_input("To (UTC, exclusive)", W_TO)
    else:
        start, end = preset_window(preset, opts.last_ts)
        if opts.last_ts is not None and end is not None:
            st.sidebar.caption(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")

    st.session_state[_LAST_WINDOW] = (start, end)
    maturity = st.sidebar.number_input(
        "Label maturity (hours)", min_value=0.0, step=1.0, key=W_MATURITY,
        help="Keep predictions made at least this many hours before the end of the range, so "
             "that their labels have had time to arrive. 0 = all.")

    mode = st.sidebar.selectbox("Reference window", list(REF_MODES), key=W_REF,
                                format_func=REF_MODES.get,
                                help="What drift and 'change vs previous period' compare with.")
    ref_start = ref_end = None
    ref_version = None
    if mode == "previous":
        ref_start, ref_end = previous_window(start, end)
        if ref_start is None:
            st.sidebar.caption("No time range selected: the reference is the first 7 days.")
    elif mode == "custom":
        state.setdefault(W_REF_FROM, _minute(previous_window(start, end)[0] or opts.first_ts))
        state.setdefault(W_REF_TO, _minute(previous_window(start, end)[1] or opts.last_ts))
        ref_start = _time_input("Reference from (UTC)", W_REF_FROM)
        ref_end = _time_input("Reference to (UTC, exclusive)", W_REF_TO)
    elif mode == "version" and opts.versions:
        if state.get(W_REF_VERSION) not in opts.versions:
            state[W_REF_VERSION] = opts.versions[0]  # a version of the model chosen before
        ref_version = st.sidebar.selectbox("Reference version", opts.versions, key=W_REF_VERSION)

    flt = _make_filter(errors, model=model, versions=tuple(versions), segments=tuple(segments),
                       start=start, end=end, maturity_hours=maturity or None,
                       reference_start=ref_start, reference_end=ref_end,
                       reference_version=ref_version)
    st.sidebar.caption("The URL holds this view: copy it to share it.")
    return flt, {RANGE_KEY: [preset], REF_KEY: [mode]}


def _make_filter(errors: list[str], **fields: Any) -> Filter:
    try:
        return Filter(**fields)
    except QueryError as exc:
        errors.append(f"{exc}; the time range and reference window are left out.")
        for name in ("start", "end", "reference_start", "reference_end"):
            fields[name] = None
        return Filter(**fields)


# --------------------------------------------------------------------------- public API
def render() -> Filter:
    """Draw the sidebar and return the Filter it describes (also stored for the pages).

    Loads the URL into the widgets when the URL is new (first run, a pasted link, back /
    forward), then writes the widgets' view back to the URL when it differs."""
    url = _url_query()
    written = st.session_state.get(_WRITTEN)
    # What a link held that the database could not show: said until the view changes.
    link_errors: list[str] = st.session_state.get(_ERRORS, [])
    # An empty URL after a first run is a page switch (Streamlit clears the query string):
    # keep the session's filter.
    if written is None or (url and url != written):
        loaded = _load_url(url)
        link_errors = loaded.errors
        for key in [k for k in st.session_state if str(k).startswith(W_SEGMENT_PREFIX)]:
            del st.session_state[key]
        st.session_state.update(loaded.values)
    elif url and url == written:
        link_errors = link_errors if url == st.session_state.get(_ERRORS_URL) else []
    errors: list[str] = []
    flt, own = _draw(errors)
    new = {**flt.to_query(), **own}
    if new != url:
        others = {k: st.query_params.get_all(k) for k in st.query_params if k not in URL_KEYS}
        st.query_params.from_dict({**others, **new})
    if written is not None and new != written and url == written:
        link_errors = []  # the user changed the view: the link's problems are behind them
    st.session_state[_WRITTEN] = new
    st.session_state[_KEY] = flt
    st.session_state[_ERRORS] = link_errors
    st.session_state[_ERRORS_URL] = new
    for message in link_errors + errors:
        st.error(message)
    return flt


def current_filter() -> Filter:
    """The Filter for this run, as built by :func:`render`."""
    flt = st.session_state.get(_KEY)
    return flt if flt is not None else Filter()


def page_param(name: str, widget_key: str, parse: Callable[[str], T], default: T) -> None:
    """Before a page draws the widget ``widget_key``: load it from the URL key ``name`` when
    the URL is new (first run, a pasted link, back / forward). A value ``parse`` rejects
    (ValueError) gives an st.error and ``default``."""
    raw = st.query_params.get(name)
    last = st.session_state.get(f"_lb_page_{name}")
    if widget_key in st.session_state and raw == last:
        return
    value = default
    if raw is not None:
        try:
            value = parse(raw)
        except ValueError as exc:
            st.error(f"Ignored a bad link value: {name}={raw!r} ({exc}); showing the "
                     f"default, {default}.")
    st.session_state[widget_key] = value
    st.session_state[f"_lb_page_{name}"] = raw


def set_page_param(name: str, value: str | None) -> None:
    """After the widget: write its value to the URL key ``name`` (None removes it)."""
    if st.query_params.get(name) != value:
        if value is None:
            del st.query_params[name]
        else:
            st.query_params[name] = value
    st.session_state[f"_lb_page_{name}"] = value
