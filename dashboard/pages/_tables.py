"""How the pages word their tables: frames of analysis results in, the frame and the column
configuration a page shows out. Not a page itself (app.py does not register it).

Tables must fit the main area of a 1440 px wide window next to the sidebar (about 980 px):
the pages show fewer, shorter columns (an interval in one column, a file's name without its
folder) with their long names and units in the column help, and long text in ``st.table``,
which wraps, rather than ``st.dataframe``, which cuts it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from lossboard.dashboard.analysis import loss
from lossboard.dashboard.monitoring_config import Slo, format_minutes

def _time(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- SLO status
def slo_covers(spec: Slo, model: str | None, versions: Iterable[str],
               segments: Iterable[tuple[str, str]]) -> bool:
    """True when the SLO is about exactly the view's model, versions and segments, so that
    its target can be drawn on the view's trend."""
    return (spec.model == model and set(spec.versions) == set(versions)
            and set(spec.segments) == set(segments))


def slo_target_lines(specs: Sequence[Slo], statuses: Sequence[Any | None], model: str | None,
                     versions: Iterable[str], segments: Iterable[tuple[str, str]]
                     ) -> list[tuple[str, float]]:
    """``(label, log loss)`` of each SLO with a log loss target that covers the view
    (:func:`slo_covers`), for the trend chart."""
    versions, segments = tuple(versions), tuple(segments)
    lines = []
    for spec, status in zip(specs, statuses):
        target = (status.target_log_loss if status is not None
                  and status.target_log_loss is not None else spec.target_log_loss)
        if target is None or not slo_covers(spec, model, versions, segments):
            continue
        lines.append((f"SLO {spec.name}: {target:.3g} nats "
                      f"({format_minutes(spec.window_minutes)} windows)", float(target)))
    return lines


# --------------------------------------------------------------------------- versions
def version_table(versions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``loss.by_version`` as the Executive page shows it: times to the minute, the 95%
    interval in one column; the numeric columns keep their names (``log_loss``, ...)."""
    frame = versions.copy()
    for column in ("first_ts", "last_ts"):
        if column in frame:
            frame[column] = [_time(v) for v in frame[column]]
    frame["interval"] = [
        "—" if pd.isna(lo) or pd.isna(hi) else f"{lo:.4f} – {hi:.4f}"
        for lo, hi in zip(frame.get("log_loss_ci_low", pd.Series(dtype=float)),
                          frame.get("log_loss_ci_high", pd.Series(dtype=float)))]
    if "low_confidence" in frame:
        frame["confidence"] = ["low" if bool(v) else "ok" for v in frame["low_confidence"].fillna(True)]
    order = [c for c in ("model_version", "first_ts", "last_ts", "n_predictions", "n_labelled",
                         "log_loss", "interval", "brier", "accuracy", "confidence")
             if c in frame]
    config = {
        "model_version": st.column_config.TextColumn("version"),
        "first_ts": st.column_config.TextColumn("first (UTC)", help="first prediction in the window"),
        "last_ts": st.column_config.TextColumn("last (UTC)", help="last prediction in the window"),
        "n_predictions": st.column_config.NumberColumn("predictions", format="%d"),
        "n_labelled": st.column_config.NumberColumn("labelled", format="%d",
                                                    help="n: the labelled predictions behind the figures"),
        "log_loss": st.column_config.NumberColumn("log loss", format="%.4f", help="nats"),
        "interval": st.column_config.TextColumn("95% interval", help="of the log loss (nats)"),
        "brier": st.column_config.NumberColumn("Brier", format="%.4f"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="%.3f",
                                                  help="at the 0.5 threshold"),
        "confidence": st.column_config.TextColumn(
            "n", help="low: fewer labelled predictions than the minimum "
                      f"({loss.DEFAULT_MIN_SAMPLES:,})"),
    }
    return frame, {"column_order": order, "column_config": config}


# --------------------------------------------------------------------------- ingest runs
def ingest_runs_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """``health.ingest_runs`` as Data health shows it: each file by its name, the folders
    they came from said once (the third value, a sentence), counts under short names. The
    frame keeps every column of ``ingest_runs``."""
    frame = runs.copy()
    paths = [str(p) for p in frame["path"]] if "path" in frame else []
    frame["file"] = [posixpath.basename(p) or p for p in paths]
    folders = sorted({posixpath.dirname(p) for p in paths})
    where = ("" if not folders else f"Files from {folders[0]}." if len(folders) == 1
             else f"Files from {len(folders)} folders: {', '.join(folders)}.")
    if "finished_at" in frame:
        frame["finished_at"] = [_time(v) for v in frame["finished_at"]]
    order = ["file_id", "run_id", "file", "kind", "status", "n_read", "n_accepted", "n_duplicate",
             "n_quarantined", "n_unmatched_labels", "finished_at", "seconds_total"]
    if "message" in frame and frame["message"].notna().any():
        order.append("message")
    config = {
        "file_id": st.column_config.NumberColumn("#", format="%d", width=40),
        "run_id": st.column_config.TextColumn("run", width=100),
        "file": st.column_config.TextColumn("file", help="the file's name; its folder is above"),
        "n_read": st.column_config.NumberColumn("read", format="%d"),
        "n_accepted": st.column_config.NumberColumn("accepted", format="%d"),
        "n_duplicate": st.column_config.NumberColumn("dup.", format="%d", help="exact duplicates"),
        "n_quarantined": st.column_config.NumberColumn("quar.", format="%d", help="quarantined rows"),
        "n_unmatched_labels": st.column_config.NumberColumn(
            "no pred.", format="%d", help="labels without a prediction yet"),
        "finished_at": st.column_config.TextColumn("finished (UTC)"),
        "seconds_total": st.column_config.NumberColumn("s", format="%.1f", help="seconds"),
    }
    return (frame, {"column_order": [c for c in order if c in frame], "column_config": config,
                    "placeholder": "—"}, where)


def quarantine_examples_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``health.quarantined_rows`` as Data health shows them: the file by its name (the
    ingest-runs table above says where it came from), narrow id columns, and the detail and
    raw row in columns that wrap into the page's width; the whole raw row is in the cell's
    tooltip and in ``lossboard quarantine --json``."""
    frame = rows.copy()
    frame["file"] = [posixpath.basename(str(p)) or str(p) for p in frame["source_file"]]
    config = {
        "file_id": st.column_config.NumberColumn("#", format="%d", width=40,
                                                 help="the file's number in the ingest runs"),
        "file": st.column_config.TextColumn("file", width=120),
        "row_number": st.column_config.NumberColumn("row", format="%d", width=60,
                                                    help="the row's position in its file"),
        "reason": st.column_config.TextColumn("reason", width=140),
        "detail": st.column_config.TextColumn("detail", width=260),
        "raw": st.column_config.TextColumn("raw row (PII hashed)", width=320),
    }
    return frame, {"column_order": list(config), "column_config": config}


# --------------------------------------------------------------------------- drift
#: Scientific notation stops at double precision: a KS p-value reported as 0 underflowed.
P_FLOOR_TEXT = "< 1e-300"


def p_value_text(value: Any) -> str | None:
    """A KS p-value as text: ``3.1e-12``, ``< 1e-300`` for one that underflowed to 0, None when
    not defined (categorical features)."""
    if value is None or pd.isna(value):
        return None
    value = float(value)
    if value == 0.0 or (0 < value < 1e-300):
        return P_FLOOR_TEXT
    return f"{value:.3g}"


def drift_table(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``views.drift_table`` as Debug shows it: KS columns "—" for categorical features
    (undefined there), a p-value that underflowed as ``< 1e-300``."""
    frame = table[["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "status",
                   "missing_rate_reference", "missing_rate_current", "n_reference",
                   "n_current"]].copy()
    frame["ks_pvalue"] = [p_value_text(v) for v in frame["ks_pvalue"]]
    ks_help = "exact two-sample KS; — : not defined for categorical features"
    config = {
        "psi": st.column_config.NumberColumn("PSI", format="%.4f"),
        "ks_statistic": st.column_config.NumberColumn("KS D", format="%.4f", help=ks_help),
        "ks_pvalue": st.column_config.TextColumn("KS p-value", help=ks_help + "; < 1e-300: "
                                                 "smaller than a double can hold"),
        "missing_rate_reference": st.column_config.NumberColumn("missing (ref.)", format="%.4f"),
        "missing_rate_current": st.column_config.NumberColumn("missing (cur.)", format="%.4f"),
        "n_reference": st.column_config.NumberColumn("n (ref.)", format="%d"),
        "n_current": st.column_config.NumberColumn("n (cur.)", format="%d"),
    }
    return frame, {"column_config": config, "placeholder": "—"}
