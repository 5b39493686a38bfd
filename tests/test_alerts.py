"""Alert rules on the bundled sample: each planted incident fires at the right time, and not
before it starts; grouping, suppression, exit codes, the CLI (CliRunner and a subprocess).

Incident times: sample_data/_manifest.json (README, "Sample data").
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from lossboard.dashboard.analysis import alerts
from lossboard.dashboard.cli import app, ensure_sample_database
from lossboard.dashboard.monitoring_config import Maintenance, load

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CONFIG = ROOT / "sample_data" / "lossboard.toml"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sample") / "lossboard.duckdb"
    ensure_sample_database(db)
    return db


@pytest.fixture(scope="module")
def con(sample_db: Path):
    con = duckdb.connect(str(sample_db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


@pytest.fixture(scope="module")
def config():
    return load(SAMPLE_CONFIG)


def fired(con, config, as_of: str, rule: str) -> list[alerts.Alert]:
    name = "slo" if rule.startswith("slo_burn_rate") else rule
    found = alerts.evaluate(con, config, as_of=as_of, model="fraud", rules=(name,))
    return [a for a in found if a.rule == rule]


# (rule, key fields, as-of just before the incident, as-of inside it, earliest / latest since)
INCIDENTS = [
    ("nonfinite_scores", {"version": "v1"}, "2026-10-13T08:00Z", "2026-10-13T09:00Z",
     "2026-10-13T08:00Z", "2026-10-13T08:10Z"),
    ("extreme_scores", {"version": "v1"}, "2026-10-15T13:00Z", "2026-10-15T14:30Z",
     "2026-10-15T13:00Z", "2026-10-15T14:00Z"),
    ("drift", {"segment": "region=eu"}, "2026-10-19T00:00Z", "2026-10-20T00:00Z",
     "2026-10-19T00:00Z", "2026-10-19T00:00Z"),
    ("slo_burn_rate:fraud-eu-log-loss", {"segment": "region=eu"}, "2026-10-19T00:00Z",
     "2026-10-20T00:00Z", "2026-10-19T00:00Z", "2026-10-19T18:00Z"),
    ("canary", {"version": "v2"}, "2026-10-21T00:00Z", "2026-10-22T00:00Z",
     "2026-10-21T00:00Z", "2026-10-22T00:00Z"),
    ("slo_burn_rate:fraud-v2-vs-v1", {"version": "v2"}, "2026-10-21T00:00Z",
     "2026-10-22T00:00Z", "2026-10-21T00:00Z", "2026-10-21T18:00Z"),
    ("activation_tail", {}, "2026-10-23T00:00Z", "2026-10-23T02:00Z",
     "2026-10-23T00:00Z", "2026-10-23T00:30Z"),
    ("label_stall", {}, "2026-10-28T12:00Z", "2026-10-28T16:00Z",
     "2026-10-28T12:00Z", "2026-10-28T15:00Z"),
]


@pytest.mark.parametrize("rule, key, before, inside, earliest, latest", INCIDENTS,
                         ids=[i[0] for i in INCIDENTS])
def test_incident_fires_inside_and_not_before(con, config, rule, key, before, inside,
                                              earliest, latest) -> None:
    assert fired(con, config, before, rule) == [], f"{rule} fired before the incident started"
    found = [a for a in fired(con, config, inside, rule)
             if all(getattr(a, k) == v for k, v in key.items())]
    assert len(found) == 1, fired(con, config, inside, rule)
    alert = found[0]
    assert utc(earliest) <= alert.since <= utc(latest), alert.since
    assert alert.as_of == utc(inside)
    assert alert.url.startswith("http://localhost:8501/?")
    assert "model=fraud" in alert.url


def test_nonfinite_alert_says_what_and_links_the_view(con, config) -> None:
    (alert,) = fired(con, config, "2026-10-13T09:00Z", "nonfinite_scores")
    assert alert.severity == "page" and alert.comparison == ">"
    assert alert.since == utc("2026-10-13T08:05Z")  # the first step whose hour holds NaNs
    assert alert.threshold == 0.01 and 0.2 < alert.value < 0.4  # ~30% of traffic is NaN
    assert "version=v1" in alert.url and "from=2026-10-12T08%3A05%3A00Z" in alert.url
    # The value is the NaN share of the hour before as-of, counted directly.
    n, bad = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT isfinite(p)) FROM predictions "
        "WHERE model = 'fraud' AND model_version = 'v1' AND ts >= ? AND ts < ?",
        [utc("2026-10-13T08:00Z"), utc("2026-10-13T09:00Z")]).fetchone()
    assert (alert.n, alert.value) == (n, pytest.approx(bad / n))


def test_activation_waits_for_its_duration(con, config) -> None:
    # Saturated from 00:00; `for = 1h` (default): not yet at 00:30, firing from 01:05.
    assert fired(con, config, "2026-10-23T00:30Z", "activation_tail") == []
    (alert,) = fired(con, config, "2026-10-23T01:10Z", "activation_tail")
    assert alert.since == utc("2026-10-23T00:05Z")


@pytest.mark.parametrize("as_of, since, at_limit", [
    # At 23:55 the 7-day window [10-23 23:55, 10-30 23:55) starts with a v2 row: the pair
    # used to flip (v1 the candidate, verdict pass) and the page was missed. Failing from
    # the first hour the 7-day look-back judges: it began then or earlier.
    ("2026-10-30T23:55Z", "2026-10-24T00:00Z", True),
    ("2026-10-31T00:00Z", "2026-10-24T00:00Z", True),
    # Within a week of the rollout: the first failing hour itself (docs/slo-alerts.md).
    ("2026-10-27T07:00Z", "2026-10-21T16:00Z", False),
])
def test_canary_fires_whatever_the_as_of_minute(con, config, as_of: str, since: str,
                                                at_limit: bool) -> None:
    (alert,) = fired(con, config, as_of, "canary")
    details = dict(alert.details)
    assert (alert.severity, alert.version) == ("page", "v2")
    assert (details["baseline"], details["candidate"]) == ("v1", "v2")
    assert alert.value > 0.3  # v2's log loss is ~60% above v1's
    assert alert.since == utc(since)
    assert ("since_is_lookback_limit" in details) == at_limit


def test_a_version_rolled_out_inside_the_look_back_began_there(con, config) -> None:
    # v2 serves from 10-21; at 10-22 12:00 the 7-day look-back starts 10-15. Its steps before
    # 10-21 have no v2 row (unknown, not "not firing"), which read as "firing all along" and
    # said "since 10-21 ... or earlier (the look-back's start)".
    (alert,) = [a for a in fired(con, config, "2026-10-22T12:00Z", "extreme_scores")
                if a.version == "v2"]
    assert alert.since >= utc("2026-10-21T00:00Z")
    assert "since_is_lookback_limit" not in dict(alert.details)
    assert "or earlier" not in alert.message
    # At 10-31 v2 has served all along the look-back, its first steps too few rows at night
    # (unknown, not absent): that is "or earlier", not a start at the first judged step.
    (later,) = [a for a in fired(con, config, "2026-10-31T00:00Z", "extreme_scores")
                if a.version == "v2"]
    assert dict(later.details)["since_is_lookback_limit"] == "true"
    assert "or earlier" in later.message


@pytest.mark.parametrize("as_of", ["2026-10-28T16:00Z", "2026-10-29T12:00Z",
                                   "2026-10-30T23:55Z", "2026-10-31T00:00Z"])
def test_label_stall_since_is_the_hour_arrivals_dropped(con, config, as_of: str) -> None:
    # sample_data/README.md: fraud label arrivals drop from ~241/h to ~5/h at 10-28 12:00.
    # The 3 h window's rate falls below half the usual one only at 13:20, which the alert
    # used to give as its start.
    (alert,) = fired(con, config, as_of, "label_stall")
    assert alert.since == utc("2026-10-28T12:00Z")
    assert "since 2026-10-28T12:00:00Z" in alert.message


def test_quiet_hour_does_not_reset_an_ongoing_alert(con, config) -> None:
    # h1_tanh saturates from 10-23 00:00 on. The hour before 10-25 04:55 held fewer than
    # min_samples (100) activations: not a recovery, so the start stays 10-23 00:05 (it was
    # reported as 10-25 04:55).
    (alert,) = fired(con, config, "2026-10-25T12:00Z", "activation_tail")
    assert alert.since == utc("2026-10-23T00:05Z")
    # Over the next days too, as long as the look-back reaches back to it.
    (later,) = fired(con, config, "2026-10-29T12:00Z", "activation_tail")
    assert later.since == utc("2026-10-23T00:05Z")


def test_drift_alert_names_the_score_as_users_know_it(con, config) -> None:
    (alert,) = [a for a in fired(con, config, "2026-10-30T23:55Z", "drift")
                if a.segment == "region=eu"]
    assert "__score__" not in alert.message and "the score 0.30" in alert.message
    assert "psi[score]" in dict(alert.details) and "psi[__score__]" not in dict(alert.details)
    # 10-19 is more than the 7-day look-back ago: the alert says it began then or earlier.
    assert dict(alert.details)["since_is_lookback_limit"] == "true"
    assert "or earlier" in alert.message


def test_nothing_fires_over_the_clean_days(con, config) -> None:
    for as_of in ("2026-10-08T00:00Z", "2026-10-12T00:00Z"):
        assert alerts.evaluate(con, config, as_of=as_of) == [], as_of


def test_maintenance_suppresses_only_inside_its_window(con, config) -> None:
    inside = alerts.evaluate(con, config, as_of="2026-10-26T03:00Z", include_suppressed=True)
    fraud = [a for a in inside if a.model == "fraud"]
    assert fraud and all(a.suppressed_by == "retraining fraud v3" for a in fraud)
    assert alerts.evaluate(con, config, as_of="2026-10-26T03:00Z") == [
        a for a in inside if not a.suppressed]
    assert alerts.exit_code(inside) == alerts.exit_code([a for a in inside if not a.suppressed])
    after = alerts.evaluate(con, config, as_of="2026-10-26T04:00Z")
    assert {a.key for a in after} >= {a.key for a in fraud}


# --------------------------------------------------------------------------- grouping
def alert(rule: str = "r", severity: str = "ticket", since: str = "2026-10-01T10:00Z",
          version: str | None = "v1", segment: str | None = None, value: float = 1.0,
          details: tuple = (), model: str = "m") -> alerts.Alert:
    return alerts.Alert(rule=rule, severity=severity, model=model, version=version,
                        segment=segment, since=utc(since), as_of=utc("2026-10-02T00:00Z"),
                        value=value, threshold=0.5, comparison=">", n=10, message="x",
                        url="http://x", details=details)


def test_group_keeps_one_alert_per_key() -> None:
    grouped = alerts.group([
        alert(severity="ticket", since="2026-10-01T10:00Z", details=(("a", "1"),)),
        alert(severity="page", since="2026-10-01T12:00Z", value=3.0, details=(("b", "2"),)),
        alert(version="v2"),
        alert(segment="region=eu"),
        alert(rule="other"),
    ])
    assert len(grouped) == 4
    top = grouped[0]
    # The page wins, with the group's earliest start and both details.
    assert (top.severity, top.value, top.since) == ("page", 3.0, utc("2026-10-01T10:00Z"))
    assert dict(top.details) == {"a": "1", "b": "2"}
    assert len({a.fingerprint for a in grouped}) == 4


def test_suppress_matches_model_and_half_open_window() -> None:
    window = Maintenance(start=utc("2026-10-01T00:00Z"), end=utc("2026-10-02T00:00Z"),
                         model="m", reason="retrain")
    other = Maintenance(start=utc("2026-10-01T00:00Z"), end=utc("2026-10-03T00:00Z"),
                        model="n", reason="other model")
    # as_of is 2026-10-02T00:00Z: the end of `window` is not in it (half-open).
    assert [a.suppressed for a in alerts.suppress([alert()], (window, other))] == [False]
    later = replace_as_of(alert(), "2026-10-01T23:55Z")
    assert alerts.suppress([later], (window,))[0].suppressed_by == "retrain"
    assert not alerts.suppress([alert(model="x")], (window,))[0].suppressed


def replace_as_of(a: alerts.Alert, as_of: str) -> alerts.Alert:
    from dataclasses import replace
    return replace(a, as_of=utc(as_of))


@pytest.mark.parametrize("severities, code", [
    ((), 0), (("ticket",), 1), (("ticket", "page"), 2), (("page",), 2)])
def test_exit_code(severities: tuple[str, ...], code: int) -> None:
    assert alerts.exit_code([alert(severity=s, rule=str(i))
                             for i, s in enumerate(severities)]) == code


def test_suppressed_alerts_do_not_count_for_the_exit_code() -> None:
    from dataclasses import replace
    assert alerts.exit_code([replace(alert(severity="page"), suppressed_by="retrain")]) == 0


def test_unknown_rule_and_slo_model_are_errors(con, config) -> None:
    from dataclasses import replace

    from lossboard.errors import QueryError
    with pytest.raises(QueryError, match="unknown rule"):
        alerts.evaluate(con, config, rules=("nope",))
    bad = replace(config, slos=(replace(config.slos[0], model="nope"),))
    with pytest.raises(QueryError, match="no model 'nope'"):
        alerts.evaluate(con, bad)


# --------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("as_of, code", [
    ("2026-10-12T00:00Z", 0),    # clean
    ("2026-10-15T14:30Z", 1),    # scores of exactly 0 / 1: a ticket
    ("2026-10-13T09:00Z", 2),    # NaN scores: a page
])
def test_alerts_exit_codes(sample_db: Path, as_of: str, code: int) -> None:
    result = CliRunner().invoke(app, ["alerts", "--db", str(sample_db), "--config",
                                      str(SAMPLE_CONFIG), "--as-of", as_of, "--json"])
    assert result.exit_code == code, result.output
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == code
    assert payload["as_of"] == utc(as_of).isoformat().replace("+00:00", "Z")
    assert (len(payload["alerts"]) > 0) == (code > 0)


def test_alerts_in_a_real_process(sample_db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lossboard.dashboard.cli", "alerts", "--db", str(sample_db),
         "--config", str(SAMPLE_CONFIG), "--as-of", "2026-10-13T09:00Z"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "PAGE nonfinite_scores [fraud, v1]" in proc.stdout
    assert "http://localhost:8501/?" in proc.stdout


def test_alerts_bad_config_is_one_line(sample_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[alerts.drift]\nthreshhold = 0.3\n")
    result = CliRunner().invoke(app, ["alerts", "--db", str(sample_db), "--config", str(path)])
    assert result.exit_code == 1
    assert "unknown key 'threshhold'" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- by hand
@pytest.fixture(scope="module")
def burst_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prediction a minute from 10:00 to 11:59; the ten from 11:00 to 11:09 are NaN."""
    import math

    import pandas as pd
    from test_slo import build_db

    start = utc("2026-01-01T10:00Z")
    ts = [start + timedelta(minutes=i) for i in range(120)]
    p = [math.nan if 60 <= i < 70 else 0.3 for i in range(120)]
    preds = pd.DataFrame({"request_id": [f"r{i}" for i in range(120)], "ts": ts, "model": "m",
                          "model_version": "v1", "p": p, "region": "eu"})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": "0",
                           "label_ts": [t + timedelta(minutes=1) for t in ts]})
    return build_db(tmp_path_factory.mktemp("burst"), preds, labels)


def nan_rule(**kw: object):
    from dataclasses import replace

    from lossboard.dashboard.monitoring_config import DEFAULT_RULES, MonitoringConfig
    rule = replace(DEFAULT_RULES["nonfinite_scores"],
                   **{"threshold": 0.05, "min_samples": 30, "window_minutes": 30, **kw})
    return MonitoringConfig(rules=(rule,))


@pytest.mark.parametrize("as_of, config_kw, since, value", [
    # [10:40, 11:10): 30 rows, 10 NaN. The first firing step is 11:05 ([10:35, 11:05): 5 NaN).
    ("2026-01-01T11:10Z", {}, "2026-01-01T11:05Z", 10 / 30),
    ("2026-01-01T11:07Z", {}, "2026-01-01T11:05Z", 5 / 30),      # rounded down to 11:05
    ("2026-01-01T11:00Z", {}, None, None),                      # the NaNs start at 11:00
    ("2026-01-01T11:45Z", {}, None, None),                      # [11:15, 11:45) is clean
    ("2026-01-01T11:10Z", {"min_samples": 31}, None, None),     # 30 rows per window only
    ("2026-01-01T11:10Z", {"for_minutes": 10}, None, None),     # held 5 minutes, not 10
    ("2026-01-01T11:15Z", {"for_minutes": 10}, "2026-01-01T11:05Z", 10 / 30),
])
def test_threshold_rule_by_hand(burst_db: Path, as_of: str, config_kw: dict,
                                since: str | None, value: float | None) -> None:
    with duckdb.connect(str(burst_db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        found = alerts.evaluate(con, nan_rule(**config_kw), as_of=as_of)
    if since is None:
        assert found == []
        return
    (alert,) = found
    assert (alert.rule, alert.version, alert.n) == ("nonfinite_scores", "v1", 30)
    assert alert.since == utc(since)
    assert alert.value == pytest.approx(value)


@pytest.fixture(scope="module")
def sparse_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prediction a minute from 10:00 to 12:29, NaN from 11:00 on, except from 11:20 to
    11:49 where only one prediction in ten minutes was made (a quiet spell inside the
    incident)."""
    import math

    import pandas as pd
    from test_slo import build_db

    start = utc("2026-01-01T10:00Z")
    minutes = [m for m in range(150) if not (80 <= m < 110) or m % 10 == 0]
    ts = [start + timedelta(minutes=m) for m in minutes]
    preds = pd.DataFrame({"request_id": [f"r{m}" for m in minutes], "ts": ts, "model": "m",
                          "model_version": "v1", "p": [math.nan if m >= 60 else 0.3 for m in minutes],
                          "region": "eu"})
    labels = pd.DataFrame({"request_id": preds["request_id"], "label": "0",
                           "label_ts": [t + timedelta(minutes=1) for t in ts]})
    return build_db(tmp_path_factory.mktemp("sparse"), preds, labels)


def test_steps_below_min_samples_do_not_reset_since(sparse_db: Path) -> None:
    # Window 30 min, at least 20 rows. The first firing step is 11:05 ([10:35, 11:05): 5 NaN
    # of 30). From 11:45 to 12:15 the windows hold fewer than 20 rows: unknown, not "fine".
    # The run then goes on from 12:20: since stays 11:05 (it was 12:20).
    with duckdb.connect(str(sparse_db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        (alert,) = alerts.evaluate(con, nan_rule(min_samples=20), as_of="2026-01-01T12:30Z")
    assert alert.since == utc("2026-01-01T11:05Z")
    assert alert.n == 30 and alert.value == pytest.approx(1.0)


@pytest.mark.parametrize("as_of, fires", [
    # Events at label time (ts + 1 min); bad = the NaN rows (11:00..11:09), objective 0.9.
    # 11:05: long [10:35, 11:05) holds 4 NaN of 30: 1.33x < 2x (short 4 of 5: 8x): quiet.
    ("2026-01-01T11:05Z", False),
    # 11:10: long 9 of 30 = 3x, short [11:05, 11:10) 5 of 5 = 10x: both above 2x.
    ("2026-01-01T11:10Z", True),
    # 11:20: long 10 of 30 = 3.3x but short [11:15, 11:20) is clean: the alert stops.
    ("2026-01-01T11:20Z", False),
])
def test_multiwindow_burn_rate_needs_both_windows(burst_db: Path, as_of: str, fires: bool) -> None:
    from lossboard.dashboard.monitoring_config import BurnPolicy, MonitoringConfig, Slo

    objective = Slo(name="s", model="m", sli="predictions", objective=0.9, max_row_loss=1.0)
    config = MonitoringConfig(slos=(objective,), rules=(),
                              burn_policies=(BurnPolicy("page", 30, 5, 2.0),))
    with duckdb.connect(str(burst_db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        found = alerts.evaluate(con, config, as_of=as_of)
    assert [a.rule for a in found] == (["slo_burn_rate:s"] if fires else [])
    if fires:
        (alert,) = found
        assert alert.since == utc("2026-01-01T11:10Z") and alert.severity == "page"
        assert alert.value == pytest.approx(3.0) and alert.threshold == 2.0
        assert dict(alert.details)["burn_5m"] == "10.000"
