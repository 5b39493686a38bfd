"""The lossboard dashboard: `lossboard serve` runs this with Streamlit.

Pages lay out analysis results; they never build SQL. With no database, or an empty one, the
only page is onboarding, which says how to ingest data.
"""

from __future__ import annotations

import streamlit as st

from lossboard.dashboard.state import db_path, query

st.set_page_config(page_title="lossboard", page_icon=":material/monitoring:", layout="wide")


def _database_ready() -> bool:
    from lossboard.dashboard.analysis.health import table_counts
    from lossboard.errors import LossboardError

    if not db_path().exists():
        return False
    try:
        return not query(table_counts).empty
    except LossboardError:
        return False


if _database_ready():
    pages = [st.Page("pages/data_health.py", title="Data health", icon=":material/fact_check:",
                     default=True)]
else:
    pages = [st.Page("pages/onboarding.py", title="Get started", icon=":material/upload:",
                     default=True)]
st.navigation(pages).run()
