"""What the On-call and Debug pages share: the page header that resolves the view, and the
wording of times and empty states. Not a page itself (app.py does not register it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from lossboard.dashboard.analysis import views
from lossboard.dashboard.sidebar import current_filter
from lossboard.dashboard.state import query
from lossboard.errors import LossboardError


#: The anchor of On-call's Labels section, and the link a label finding has instead of one
#: to Debug (Debug has no label view).
LABELS_ANCHOR = "labels"
LABELS_LINK = f"[See Labels below](#{LABELS_ANCHOR})"


def fmt_time(value: Any) -> str:
    """A UTC time as the pages show it; None is an open end."""
    return "open" if value is None else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def no_labels_text(lag: Any) -> str:
    """The empty state of a label-dependent view, with the model's label lag p90."""
    p90 = ("unknown (no label at all for this model yet)" if lag.p90_hours is None
           else f"{lag.p90_hours:.0f} h")
    return f"No labels yet for this window: label lag p90 is {p90}."


def header(title: str) -> Any | None:
    """Title, the resolved view (``views.resolve_view`` of the sidebar's Filter) and a line
    saying which model, range, versions and segments it shows; None (with the reason shown)
    when there is nothing to show."""
    st.title(title)
    asked = current_filter()
    try:
        view = query(views.resolve_view, flt=asked)
    except LossboardError as exc:
        st.info(f"Nothing to show: {exc}")
        return None
    if view.start is None:
        st.info(f"No predictions of model {view.model} yet; ingest some with `lossboard ingest`.")
        return None
    if asked.has_reference and (asked.reference_start, asked.reference_end) != (
            view.reference_start, view.reference_end):
        st.info(f"The chosen reference window {fmt_time(asked.reference_start)} – "
                f"{fmt_time(asked.reference_end)} holds no prediction; comparing with "
                f"{fmt_time(view.reference_start)} – {fmt_time(view.reference_end)} instead.")
    st.caption(f"Model **{view.model}** · {fmt_time(view.start)} – {fmt_time(view.end)}"
               + (f" · versions {', '.join(view.versions)}" if view.versions else "")
               + (" · " + ", ".join(f"{c}={v}" for c, v in view.segments) if view.segments else ""))
    return view


@contextmanager
def section(what: str) -> Iterator[None]:
    """Run one section of a page; an analysis error ends that section with a message saying
    what could not be computed and why, and the rest of the page still renders."""
    try:
        yield
    except LossboardError as exc:
        st.error(f"{what} could not be computed: {exc}")
