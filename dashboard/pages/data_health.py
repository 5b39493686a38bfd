"""Data health: what was ingested, what was quarantined and why, which columns exist.

The counts of the sidebar's model (in the Filter) sit under the totals; ingest runs, quarantine
and the column registry are per file and per row, so the Filter does not apply to them. No page
query parameters.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lossboard.dashboard.analysis import executive, health, rollup
from lossboard.dashboard.pages import _tables
from lossboard.dashboard.sidebar import current_filter
from lossboard.dashboard.state import query

st.title("Data health")
counts = query(health.table_counts)
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Predictions", f"{counts.n_predictions:,}")
c2.metric("Labels", f"{counts.n_labels:,}")
c3.metric("Labelled predictions", f"{counts.n_labelled_predictions:,}")
c4.metric("Quarantined rows", f"{counts.n_quarantined:,}")
c5.metric("Files ingested", f"{counts.n_files:,}")
st.caption(f"Models: {', '.join(counts.models) or 'none'} · "
           f"{counts.n_unmatched_labels:,} labels have no prediction yet · "
           f"{counts.n_kpi_points:,} KPI points")
flt = current_filter()
if flt.model is not None:
    mine = query(executive.model_counts, flt=flt)
    st.caption(f"Model `{mine.model}` in the sidebar's filter: {mine.n_predictions:,} predictions, "
               f"{mine.n_labelled:,} of them labelled. The tables below are about files and "
               "rows, whatever their model.")

st.subheader("Ingest runs")
runs, runs_config, folders = _tables.ingest_runs_table(query(health.ingest_runs, limit=200))
st.caption("One row per file per ingest run; read = accepted + duplicate + quarantined. "
           + folders)
st.dataframe(runs, hide_index=True, **runs_config)

st.subheader("Quarantine by reason")
by_reason = query(health.quarantine_by_reason)
if by_reason.empty:
    st.caption("Nothing quarantined: every row read was accepted or an exact duplicate.")
else:
    st.dataframe(by_reason, hide_index=True)
    reason = st.selectbox("Examples of", by_reason["reason"].unique().tolist(), key="reason")
    examples, examples_config = _tables.quarantine_examples_table(
        query(health.quarantined_rows, reason=reason, limit=20))
    st.dataframe(examples, hide_index=True, **examples_config)

st.subheader("Labels without a prediction yet")
# The count is cheap; the examples are an anti-join (seconds at 10M rows): only when needed.
if counts.n_unmatched_labels == 0:
    st.caption("Every label matches a prediction.")
else:
    st.dataframe(query(health.unmatched_labels, limit=20), hide_index=True)

st.subheader("Columns")
st.caption("Your columns and the role lossboard gave them; change one with "
           "`lossboard columns --set COLUMN=ROLE`.")
st.dataframe(query(health.registered_columns), hide_index=True)

st.subheader("Hourly rollup")
st.caption("Per model: whether the pages read whole hours from the hourly rollup (in use) or "
           "scan every row (a rollup that an ingest left to refresh; `lossboard rollup` does "
           "it). The figures are the same either way; only the speed differs.")
st.dataframe(pd.DataFrame(query(rollup.status)), hide_index=True)
