"""Shown when the database is missing or holds no data: how to get data in."""

from __future__ import annotations

import shlex

import streamlit as st

from lossboard.dashboard.state import database_problem, database_ready, db_path

db = db_path()
# Quoted for the shell: the commands below are meant to be pasted as they are.
db_arg = shlex.quote(str(db))
st.title("Welcome to lossboard")
problem = database_problem()
if problem:
    st.error(f"{problem}. Point `--db` at a lossboard database, or at a new path to create one.")
elif db.exists():
    st.info(f"The database `{db}` exists but holds no predictions, labels or KPIs yet.")
else:
    st.info(f"There is no database at `{db}` yet.")
st.markdown("Ingest your prediction logs and (later) your label logs:")
st.code(
    f"lossboard ingest --db {db_arg} predictions.csv --map p=YOUR_SCORE_COLUMN "
    "--model fraud --model-version v1\n"
    f"lossboard ingest --db {db_arg} labels.csv --map label=YOUR_LABEL_COLUMN",
    language="bash",
)
st.markdown("Or try lossboard on the bundled sample data:")
st.code(f"lossboard serve --db {db_arg} --sample", language="bash")
st.caption("This page refreshes by itself once an ingest lands; reload the browser tab if not.")


# app.py picks the pages on each full run, so rerun it once an ingest has committed. Cheap: a
# stat() of the file, and a query only when the file changed (state.query's cache key).
@st.fragment(run_every="2s")
def _rerun_when_data_lands() -> None:
    if database_ready():
        st.rerun(scope="app")


_rerun_when_data_lands()
