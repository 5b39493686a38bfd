"""The lossboard dashboard: `lossboard serve` runs this with Streamlit.

Pages lay out analysis results; they never build SQL. With no database, or an empty one, the
only page is onboarding, which says how to ingest data.
"""

from __future__ import annotations

import streamlit as st

from lossboard.dashboard import sidebar
from lossboard.dashboard.state import database_ready
from lossboard.errors import LossboardError

# An emoji favicon is drawn in the browser; a :material/...: one is fetched from
# fonts.gstatic.com, and the dashboard makes no external requests.
st.set_page_config(page_title="lossboard", page_icon="📉", layout="wide")

if database_ready():
    pages = [
        st.Page("pages/oncall.py", title="On-call", icon=":material/notifications_active:",
                default=True, url_path="oncall"),
        st.Page("pages/executive.py", title="Executive", icon=":material/insights:",
                url_path="executive"),
        st.Page("pages/debug.py", title="Debug", icon=":material/troubleshoot:",
                url_path="debug"),
        st.Page("pages/data_health.py", title="Data health", icon=":material/fact_check:",
                url_path="data-health"),
    ]
    page = st.navigation(pages)
    try:
        sidebar.render()
    except LossboardError as exc:
        st.error(f"The filter could not be built from this database: {exc}")
        st.stop()
else:
    page = st.navigation([st.Page("pages/onboarding.py", title="Get started",
                                  icon=":material/upload:", default=True)])
page.run()
