"""SLO math: budget figures by hand, burn rates on hand-made logs, and a brute-force reference.

Every pinned number is computed in the comment next to it from the rows of :func:`tiny_db`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lossboard.dashboard.analysis import slo
from lossboard.dashboard.monitoring_config import Slo, loads
from lossboard.errors import ConfigError, QueryError
from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

DAY = datetime(2026, 1, 1, tzinfo=UTC)


def at(hh: int, mm: int) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Keep NaN scores as NaN (pandas' own conversion would make them nulls: missing_score)."""
    arrays = [pa.array(frame[c].to_numpy(), from_pandas=False) if frame[c].dtype.kind == "f"
              else pa.array(frame[c], from_pandas=True) for c in frame.columns]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(frame.columns)), path)


def build_db(folder: Path, preds: pd.DataFrame, labels: pd.DataFrame) -> Path:
    db = folder / "lossboard.duckdb"
    write_parquet(preds, folder / "p.parquet")
    write_parquet(labels, folder / "l.parquet")
    for name, kind, extra in (("p.parquet", "predictions", {"segments": ("region",)}),
                              ("l.parquet", "labels", {})):
        report = ingest([folder / name], IngestOptions(
            db_path=db, flags=MappingOptions(kind=kind, **extra)))
        assert report.files[0].status == "ok" and report.files[0].n_quarantined == 0
    return db


def connect(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


# Rows: (ts, p, label, label delay in minutes). Loss of p=0.9,y=1 is -ln 0.9 = 0.105 (good);
# p=0.2 -> 1.609 and p=0.1 -> 2.303 (bad at max_row_loss = ln 2 = 0.693); NaN is bad.
TINY = [
    (at(9, 30), math.nan, 1, 1),
    (at(10, 0), 0.9, 1, 1), (at(10, 5), 0.9, 1, 1), (at(10, 10), 0.2, 1, 1),
    (at(10, 15), 0.9, 1, 1), (at(10, 20), 0.2, 1, 1), (at(10, 25), 0.9, 1, 1),
    (at(10, 30), 0.9, 1, 1), (at(10, 35), 0.9, 1, 1),
    (at(10, 56), 0.9, 1, 1), (at(10, 57), 0.1, 1, 1),
]


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = TINY + [(at(11, 40), 0.2, 1, 25)]  # labelled at 12:05: a late label
    preds = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(len(rows))], "ts": [r[0] for r in rows],
        "model": "m", "model_version": "v1", "p": [r[1] for r in rows], "region": "eu"})
    labels = pd.DataFrame({"request_id": preds["request_id"],
                           "label": [str(r[2]) for r in rows],
                           "label_ts": [r[0] + timedelta(minutes=r[3]) for r in rows]})
    return build_db(tmp_path_factory.mktemp("slo"), preds, labels)


def rows_slo(**kw: object) -> Slo:
    base = dict(name="s", model="m", sli="predictions", objective=0.9, period_days=1.0,
                max_row_loss=math.log(2), time_axis="prediction")
    base.update(kw)
    return Slo(**base)


def windows_slo(**kw: object) -> Slo:
    base = dict(name="w", model="m", sli="windows", objective=0.9, period_days=1.0,
                target_log_loss=0.5, window_minutes=10, min_samples=1, time_axis="prediction")
    base.update(kw)
    return Slo(**base)


# --------------------------------------------------------------------------- budget math
@pytest.mark.parametrize("events, bad, objective, sli, burn, remaining", [
    (10_000, 50, 0.99, 0.995, 0.5, 0.5),         # 0.005 bad / 0.01 budget
    (10_000, 100, 0.99, 0.99, 1.0, 0.0),         # exactly on budget
    (1_000, 144, 0.99, 0.856, 14.4, -13.4),      # the SRE workbook's page rate
    (4, 1, 0.5, 0.75, 0.5, 0.5),                 # 1/4 bad of a 1/2 budget
    (3, 0, 0.999, 1.0, 0.0, 1.0),
])
def test_budget_by_hand(events: int, bad: int, objective: float, sli: float, burn: float,
                        remaining: float) -> None:
    b = slo.budget(events, bad, objective)
    assert b.sli == pytest.approx(sli)
    assert b.burn_rate == pytest.approx(burn)
    assert b.budget_consumed == pytest.approx(burn)
    assert b.budget_remaining == pytest.approx(remaining)
    assert b.allowed_bad_events == pytest.approx((1 - objective) * events)


def test_budget_without_events_is_no_data() -> None:
    b = slo.budget(0, 0, 0.99)
    assert (b.sli, b.burn_rate, b.budget_remaining) == (None, None, None)


@pytest.mark.parametrize("events, bad, objective", [(5, 6, 0.9), (-1, 0, 0.9), (5, 1, 1.0),
                                                    (5, 1, 0.0)])
def test_budget_rejects_impossible_input(events: int, bad: int, objective: float) -> None:
    with pytest.raises(QueryError):
        slo.budget(events, bad, objective)


# --------------------------------------------------------------------------- burn rates
def test_predictions_sli_burn_rates_by_hand(tiny_db: Path) -> None:
    with connect(tiny_db) as con:
        frame = slo.burn_series(con, rows_slo(), (5, 60, 1440), start=at(10, 55), as_of=at(11, 0))
    last = frame.iloc[-1]
    assert last["step_end"] == pd.Timestamp(at(11, 0))
    # [10:55, 11:00): 10:56 good, 10:57 bad -> (1/2) / 0.1 = 5.
    assert (last["events_5m"], last["bad_5m"]) == (2, 1)
    assert last["burn_5m"] == pytest.approx(5.0)
    # [10:00, 11:00): 10 rows, bad at 10:10, 10:20, 10:57 -> (3/10) / 0.1 = 3.
    assert (last["events_1h"], last["bad_1h"]) == (10, 3)
    assert last["burn_1h"] == pytest.approx(3.0)
    # The day also holds the NaN row at 09:30 (bad): (4/11) / 0.1.
    assert (last["events_1d"], last["bad_1d"]) == (11, 4)
    assert last["burn_1d"] == pytest.approx(4 / 11 / 0.1)


def test_status_gives_budget_over_the_period(tiny_db: Path) -> None:
    with connect(tiny_db) as con:
        st = slo.status(con, rows_slo(), as_of="2026-01-01T11:02:00Z")  # rounded down to 11:00
    assert st.as_of == at(11, 0)
    assert st.period_start == at(11, 0) - timedelta(days=1)
    assert (st.events, st.bad_events) == (11, 4)
    assert st.sli == pytest.approx(7 / 11)
    assert st.budget_consumed == pytest.approx(4 / 11 / 0.1)
    assert st.budget_remaining == pytest.approx(1 - 4 / 11 / 0.1)
    assert st.state == "budget_exhausted" and st.met is False
    burn = {b.window_minutes: b.burn_rate for b in st.burn_rates}
    assert burn[60] == pytest.approx(3.0)
    # The SLO's own 1 h window: finite rows 10:00..10:57, weighted mean of their losses.
    losses = [-math.log(p) for ts, p, _, _ in TINY if not math.isnan(p)]
    assert st.current_n == 10
    assert st.current_log_loss == pytest.approx(sum(losses) / 10)


def test_burn_rate_over_any_window(tiny_db: Path) -> None:
    with connect(tiny_db) as con:
        # [10:30, 10:40): rows 10:30, 10:35, both good.
        assert slo.burn_rate(con, rows_slo(), 10, as_of=at(10, 40)).burn_rate == 0.0
        # [10:05, 10:25): 10:05, 10:10 (bad), 10:15, 10:20 (bad): (2/4) / 0.1.
        r = slo.burn_rate(con, rows_slo(), 20, as_of=at(10, 25))
    assert (r.events, r.bad_events) == (4, 2)
    assert r.burn_rate == pytest.approx(5.0)


def test_windows_sli_by_hand(tiny_db: Path) -> None:
    with connect(tiny_db) as con:
        frame = slo.burn_series(con, windows_slo(), (60,), start=at(10, 0), as_of=at(11, 0))
    # 10-minute windows ending 10:05 .. 11:00. Bad (mean loss > 0.5): those holding 10:10 or
    # 10:20 with one good row (mean (0.105 + 1.609) / 2 = 0.857): ending 10:15, 10:20, 10:25,
    # 10:30; and 11:00 (10:56, 10:57: (0.105 + 2.303) / 2 = 1.204). Windows ending 10:50 and
    # 10:55 hold no row: not events. So 10 events, 5 bad: (5/10) / 0.1 = 5.
    last = frame.iloc[-1]
    assert (last["events_1h"], last["bad_1h"]) == (10, 5)
    assert last["burn_1h"] == pytest.approx(5.0)
    by_end = frame.set_index("step_end")
    assert by_end.loc[pd.Timestamp(at(10, 15)), "log_loss"] == pytest.approx(
        (-math.log(0.9) - math.log(0.2)) / 2)
    assert pd.isna(by_end.loc[pd.Timestamp(at(10, 55)), "log_loss"])


def test_min_samples_keeps_thin_windows_out(tiny_db: Path) -> None:
    with connect(tiny_db) as con:
        frame = slo.burn_series(con, windows_slo(min_samples=3), (60,), start=at(10, 55),
                                as_of=at(11, 0))
    # No 10-minute window holds 3 rows: no event at all, burn rate unknown (not 0).
    assert frame.iloc[-1]["events_1h"] == 0
    assert pd.isna(frame.iloc[-1]["burn_1h"])


def test_relative_target_from_a_reference_window(tiny_db: Path) -> None:
    objective = windows_slo(target_log_loss=None, max_relative_increase=0.5,
                            reference_start=at(10, 0), reference_end=at(10, 10))
    with connect(tiny_db) as con:
        target = slo.target_log_loss(con, objective, at(11, 0))
        st = slo.status(con, objective, as_of=at(11, 0))
    # Reference [10:00, 10:10): two rows of -ln 0.9; target = 1.5 x 0.10536.
    assert target == pytest.approx(1.5 * -math.log(0.9))
    assert st.baseline_log_loss == pytest.approx(-math.log(0.9))
    assert st.target_log_loss == pytest.approx(target)


def test_relative_target_without_baseline_counts_no_event(tiny_db: Path) -> None:
    objective = windows_slo(target_log_loss=None, max_relative_increase=0.05,
                            baseline_version="v0", min_samples=1)
    with connect(tiny_db) as con:
        st = slo.status(con, objective, as_of=at(11, 0))
    assert st.state == "no_baseline" and st.events == 0 and st.target_log_loss is None


def test_only_labels_known_at_as_of_count_and_label_axis_moves_events(tiny_db: Path) -> None:
    # The 11:40 prediction is labelled at 12:05.
    with connect(tiny_db) as con:
        before = slo.burn_rate(con, rows_slo(), 60, as_of=at(12, 0))
        by_prediction = slo.burn_rate(con, rows_slo(), 60, as_of=at(12, 10))
        by_label = slo.burn_rate(con, rows_slo(time_axis="label"), 15, as_of=at(12, 10))
        by_label_early = slo.burn_rate(con, rows_slo(time_axis="label"), 15, as_of=at(12, 5))
    assert before.events == 0                       # its label was not known at 12:00
    assert (by_prediction.events, by_prediction.bad_events) == (1, 1)  # [11:10, 12:10)
    assert (by_label.events, by_label.bad_events) == (1, 1)   # arrives at 12:05 in [11:55, 12:10)
    assert by_label_early.events == 0                # [11:50, 12:05): not yet arrived


def test_matches_a_brute_force_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 600
    ts = [DAY + timedelta(seconds=float(s)) for s in rng.uniform(0, 6 * 3600, n)]
    p = rng.uniform(0.01, 0.99, n)
    p[rng.uniform(size=n) < 0.03] = np.nan
    y = (rng.uniform(size=n) < 0.5).astype(int)
    delay = rng.uniform(0, 3600, n)
    w = rng.choice([0.5, 1.0, 2.0], n)
    preds = pd.DataFrame({"request_id": [f"q{i}" for i in range(n)], "ts": ts, "model": "m",
                          "model_version": "v1", "p": p, "weight": w, "region": "eu"})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": y.astype(str),
                           "label_ts": [t + timedelta(seconds=float(d)) for t, d in zip(ts, delay)]})
    db = build_db(tmp_path, preds, labels)
    as_of = at(5, 0)
    t_known = np.array([(t - DAY).total_seconds() + d for t, d in zip(ts, delay)])
    t_pred = np.array([(t - DAY).total_seconds() for t in ts])
    pc = np.clip(p, 1e-15, 1 - 1e-15)
    loss = np.where(y == 1, -np.log(pc), -np.log(1 - pc))
    ok = ~np.isnan(p)
    cut = 5 * 3600
    for axis, t_event in (("label", t_known), ("prediction", t_pred)):
        objective = rows_slo(max_row_loss=1.0, time_axis=axis, objective=0.8)
        with connect(db) as con:
            frame = slo.burn_series(con, objective, (30, 120), start=at(2, 0), as_of=as_of)
        for _, row in frame.iterrows():
            end = (row["step_end"] - pd.Timestamp(DAY)).total_seconds()
            for minutes in (30, 120):
                sel = (t_known < cut) & (t_event >= end - minutes * 60) & (t_event < end)
                bad = sel & (~ok | (np.where(ok, loss, 0) > 1.0))
                label = "30m" if minutes == 30 else "2h"
                assert row[f"events_{label}"] == sel.sum()
                assert row[f"bad_{label}"] == bad.sum()
    # The windows SLI's rolling loss: weighted mean over [end - 1h, end) of finite rows.
    objective = windows_slo(window_minutes=60, target_log_loss=0.7, min_samples=5,
                            time_axis="prediction")
    with connect(db) as con:
        frame = slo.burn_series(con, objective, (60,), start=at(2, 0), as_of=as_of)
    bad_steps = []
    for _, row in frame.iterrows():
        end = (row["step_end"] - pd.Timestamp(DAY)).total_seconds()
        sel = (t_known < cut) & ok & (t_pred >= end - 3600) & (t_pred < end)
        assert row["n"] == sel.sum()
        mean = (w[sel] * loss[sel]).sum() / w[sel].sum()
        assert row["log_loss"] == pytest.approx(mean, rel=1e-12)
        bad_steps.append(sel.sum() >= 5 and mean > 0.7)
    # burn over 1 h = the last 12 steps' bad share / 0.1 (every step here has >= 5 rows).
    assert frame["events_1h"].iloc[-1] == 12
    assert frame["bad_1h"].iloc[-1] == sum(bad_steps[-12:])


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="max_row_loss"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nsli = "predictions"\n')
    with pytest.raises(ConfigError, match="'objectiv'"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\nobjectiv = 0.9\n')
    with pytest.raises(ConfigError, match=r"objective: must be in \(0, 1\)"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\nobjective = 1\n')
    with pytest.raises(ConfigError, match="needs a baseline"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nsli = "windows"\nmax_relative_increase = 0.05\n')
    with pytest.raises(ConfigError, match="multiple of 5"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\nwindow = "7m"\n')
    with pytest.raises(ConfigError, match="named 'a'"):
        loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\n'
              '[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 2\n')


def test_config_is_hashable_and_has_the_sre_defaults() -> None:
    cfg = loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\n')
    assert hash(cfg) == hash(loads('[[slo]]\nname = "a"\nmodel = "m"\nmax_row_loss = 1\n'))
    assert [(p.severity, p.long_minutes, p.short_minutes, p.factor)
            for p in cfg.burn_policies] == [("page", 60, 5, 14.4), ("page", 360, 30, 6.0),
                                           ("ticket", 4320, 360, 1.0)]


def test_sample_config_parses() -> None:
    from lossboard.dashboard.monitoring_config import load
    cfg = load(Path(__file__).resolve().parents[1] / "sample_data" / "lossboard.toml")
    assert {s.name for s in cfg.slos} == {"fraud-eu-log-loss", "fraud-confident-mistakes",
                                          "fraud-v2-vs-v1"}
    assert cfg.segment_columns == ("region",)


def test_load_uses_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lossboard.dashboard.monitoring_config import load
    path = tmp_path / "mon.toml"
    path.write_text('[alerts]\ndashboard_url = "https://lb.example.com/oncall"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSSBOARD_CONFIG", str(path))
    assert load().dashboard_url == "https://lb.example.com/oncall"
    monkeypatch.delenv("LOSSBOARD_CONFIG")
    assert load().slos == () and load().path is None


def test_statuses_of_a_config_keep_its_order_and_model(tiny_db: Path) -> None:
    from dataclasses import replace

    from lossboard.dashboard.analysis.filters import Filter
    from lossboard.dashboard.monitoring_config import MonitoringConfig
    cfg = MonitoringConfig(slos=(rows_slo(name="a"), windows_slo(name="b"),
                                 replace(rows_slo(name="c"), model="other")))
    with connect(tiny_db) as con:
        found = slo.statuses(con, cfg, Filter(model="m", end=at(11, 0)))
    assert [s.name for s in found] == ["a", "b"]
    assert found[0].as_of == at(11, 0) and found[0].events == 11
