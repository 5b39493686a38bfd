"""Fixtures' helpers for the On-call and Debug page tests (tests/test_pages_*.py).

Databases are built with the real ingest; the app runs headless with AppTest, pointed at the
database through $LOSSBOARD_DB (dashboard/state.py). The URL carries the Filter (sidebar.py)
on the first run; a page switch keeps the session's Filter and the page's own URL keys.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.views import resolve_view
from lossboard.db import read_connection
from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

APP_PATH = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
#: A cold run imports pandas, duckdb and the pages and computes every section; the sample's
#: On-call page takes ~10 s cold on this 2-core machine.
TIMEOUT_S = 120


def ingest_frame(db: Path, frame: pd.DataFrame, name: str, **flags: object) -> None:
    path = db.parent / name
    frame.to_csv(path, index=False)
    report = ingest([path], IngestOptions(db_path=db, flags=MappingOptions(**flags)))
    problems = [f"{f.path}: {f.message}" for f in report.files if f.status != "ok"]
    assert not problems, f"the test data did not go in: {problems}"


def small_db(tmp_path: Path, *, labels: str = "both", rows: int = 480, seed: int = 3) -> Path:
    """``rows`` predictions over 2 days (one every 6 minutes) of model fraud v1, with segment
    region (eu / us) and features amount and device; labels ``both`` (0 and 1), ``ones``
    (every label 1) or ``none``."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=rows, freq="6min", tz="UTC")
    p = rng.uniform(0.02, 0.98, rows)
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(rows)],
                          "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "score": p.round(4),
                          "region": np.where(np.arange(rows) % 3 == 0, "eu", "us"),
                          "amount": rng.gamma(2.0, 30.0, rows).round(2),
                          "device": rng.choice(["ios", "android", "web"], rows)})
    db = tmp_path / "small.duckdb"
    ingest_frame(db, preds, "predictions.csv", model="fraud", model_version="v1",
                 segments=("region",), features=("amount", "device"))
    if labels != "none":
        y = (rng.uniform(size=rows) < p).astype(int) if labels == "both" else np.ones(rows, int)
        lab = pd.DataFrame({"request_id": preds["request_id"], "label": y,
                            "label_ts": (ts + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")})
        ingest_frame(db, lab, "labels.csv", kind="labels")
    return db


def run_app(db: Path, monkeypatch: pytest.MonkeyPatch, query: dict[str, str | list[str]],
            page: str | None = None) -> AppTest:
    """Run the app once with ``query`` as the URL (On-call opens), then switch to ``page``."""
    monkeypatch.setenv("LOSSBOARD_DB", str(db))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page is not None:
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def view_of(db: Path, query: dict[str, str | list[str]]) -> Filter:
    """The view the pages show for the URL ``query`` (views.resolve_view of its Filter)."""
    with read_connection(str(db)) as con:
        return resolve_view(con, Filter.from_query({k: v for k, v in query.items()
                                                    if k not in ("range", "ref")}))


def texts(elements: object) -> list[str]:
    return [e.value for e in elements]


def links(at: AppTest) -> list[tuple[str, dict[str, list[str]]]]:
    """(label, query params) of every st.page_link on the page."""
    return [(link.proto.label, parse_qs(link.proto.query_string)) for link in at.get("page_link")]
