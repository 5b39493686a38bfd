"""The sidebar Filter, mirrored in ``st.query_params`` so every view is a shareable URL.

``app.py`` calls :func:`render` once per run, before the page runs; pages read the result
with :func:`current_filter` and never look at ``st.query_params`` themselves.
"""

from __future__ import annotations

import streamlit as st

from lossboard.dashboard.analysis.filters import Filter

_KEY = "lossboard_filter"


def _query_dict() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params}


def render() -> Filter:
    """Draw the sidebar and return the Filter it describes (also stored for the pages)."""
    flt = Filter.from_query(_query_dict())
    st.session_state[_KEY] = flt
    return flt


def current_filter() -> Filter:
    """The Filter for this run, as built by :func:`render`."""
    flt = st.session_state.get(_KEY)
    return flt if flt is not None else Filter.from_query(_query_dict())
