"""Shown when the database is missing or holds no data: how to get data in."""

from __future__ import annotations

import streamlit as st

from lossboard.dashboard.state import db_path

db = db_path()
st.title("Welcome to lossboard")
if db.exists():
    st.info(f"The database `{db}` exists but holds no predictions, labels or KPIs yet.")
else:
    st.info(f"There is no database at `{db}` yet.")
st.markdown("Ingest your prediction logs and (later) your label logs:")
st.code(
    f"lossboard ingest --db {db} predictions.csv --map p=YOUR_SCORE_COLUMN "
    "--model fraud --model-version v1\n"
    f"lossboard ingest --db {db} labels.csv --map label=YOUR_LABEL_COLUMN",
    language="bash",
)
st.markdown("Or try lossboard on the bundled sample data:")
st.code(f"lossboard serve --db {db} --sample", language="bash")
st.caption("This page refreshes by itself once an ingest lands; reload the browser tab if not.")
