"""On-call page."""

from __future__ import annotations

import streamlit as st

st.title("On-call")
