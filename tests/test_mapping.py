"""lossboard.ingest.mapping: which user column plays which contract field, and every other
column's role. Mostly through ``resolve`` (no I/O); the config file also end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import TS, ingest_one, query, run_ingest, only_file, write_csv, write_text
from lossboard.errors import ConfigError, IngestError
from lossboard.ingest.mapping import (
    SEGMENT_MAX_DISTINCT, Config, MappingOptions, SourceColumn, infer_role, load_config,
    parse_list, parse_pairs, resolve,
)

NO_CONFIG = Config(path=None)


def cols(*specs: str) -> list[SourceColumn]:
    """``"name:TYPE"`` or ``"name:TYPE:n_distinct"``; TYPE defaults to VARCHAR."""
    out = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        sql_type, _, n = rest.partition(":")
        out.append(SourceColumn(name, sql_type or "VARCHAR", int(n) if n else None))
    return out


def resolve_cols(columns: list[SourceColumn], config: Config = NO_CONFIG, file: str = "logs/f.csv",
                 registered: dict[str, str] | None = None, **flags: object):
    return resolve(file, columns, MappingOptions(**flags), config, registered)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- auto-detection
@pytest.mark.parametrize(("columns", "kind", "fields"), [
    # README's list of common names, one family per case.
    (cols("event_id", "scored_at", "score:DOUBLE", "model", "model_version"), "predictions",
     {"request_id": "event_id", "ts": "scored_at", "p": "score", "model": "model",
      "model_version": "model_version"}),
    (cols("id", "timestamp", "probability:DOUBLE", "model_name", "version"), "predictions",
     {"request_id": "id", "ts": "timestamp", "p": "probability", "model": "model_name",
      "model_version": "version"}),
    # Names are compared without case and punctuation: Event-ID is event_id.
    (cols("Event-ID", "Scored At", "PROB:DOUBLE", "Model", "Model Version"), "predictions",
     {"request_id": "Event-ID", "ts": "Scored At", "p": "PROB", "model": "Model",
      "model_version": "Model Version"}),
    (cols("request_id", "time", "raw_score:DOUBLE", "model", "model_version", "sample_weight:DOUBLE"),
     "predictions", {"request_id": "request_id", "ts": "time", "logit": "raw_score", "model": "model",
                     "model_version": "model_version", "weight": "sample_weight"}),
    (cols("uuid", "created_at", "probabilities:DOUBLE[]", "model", "model_version"), "predictions",
     {"request_id": "uuid", "ts": "created_at", "probs": "probabilities", "model": "model",
      "model_version": "model_version"}),
    (cols("event_id", "outcome", "labelled_at"), "labels",
     {"request_id": "event_id", "label": "outcome", "label_ts": "labelled_at"}),
    (cols("request_id", "target", "resolved_at", "model"), "labels",
     {"request_id": "request_id", "label": "target", "label_ts": "resolved_at", "model": "model"}),
    # A label file with a plain timestamp: that is its label time.
    (cols("id", "y", "timestamp"), "labels", {"request_id": "id", "label": "y", "label_ts": "timestamp"}),
    (cols("day", "metric", "value:DOUBLE"), "kpi", {"ts": "day", "kpi": "metric", "value": "value"}),
])
def test_auto_detect_common_names(columns: list[SourceColumn], kind: str, fields: dict[str, str]) -> None:
    m = resolve_cols(columns)
    assert m.kind == kind
    assert m.fields == fields
    assert set(m.field_sources.values()) == {"auto"}


def test_text_prediction_column_is_not_the_probability() -> None:
    # "prediction" is a score name, but this one holds class names (VARCHAR): score wins.
    m = resolve_cols(cols("id", "ts", "prediction:VARCHAR:2", "score:DOUBLE"), model="m",
                     model_version="v")
    assert m.fields["p"] == "score"
    assert m.roles == {"prediction": "segment"}


def test_only_a_text_prediction_column_means_no_score() -> None:
    with pytest.raises(IngestError, match="cannot tell whether this is a predictions"):
        resolve_cols(cols("id", "ts", "prediction:VARCHAR:2"))


def test_numeric_prediction_column_is_the_probability() -> None:
    m = resolve_cols(cols("id", "ts", "prediction:DOUBLE"), model="m", model_version="v")
    assert (m.kind, m.fields["p"]) == ("predictions", "prediction")


@pytest.mark.parametrize(("columns", "kind"), [
    (cols("id", "ts", "p:DOUBLE"), "predictions"),
    (cols("id", "ts", "logit:FLOAT"), "predictions"),
    (cols("id", "ts", "probs:DOUBLE[]"), "predictions"),
    (cols("id", "label"), "labels"),
    (cols("id", "is_fraud", "outcome:BOOLEAN"), "labels"),
    (cols("ts", "kpi", "value:DOUBLE"), "kpi"),
])
def test_kind_detection(columns: list[SourceColumn], kind: str) -> None:
    assert resolve_cols(columns, model="m", model_version="v").kind == kind


@pytest.mark.parametrize(("flags", "kind"), [
    # What the user mapped implies the kind: a score means predictions, a label labels.
    ({"map": {"p": "fraud_score"}}, "predictions"),
    ({"map": {"label": "fraud_score"}}, "labels"),
    ({"kind": "labels", "map": {"label": "fraud_score"}}, "labels"),
])
def test_kind_from_what_the_user_mapped(flags: dict, kind: str) -> None:
    m = resolve_cols(cols("id", "ts", "fraud_score:DOUBLE"), model="m", model_version="v", **flags)
    assert m.kind == kind


def test_kind_undecidable_error_names_file_and_columns() -> None:
    # kpi needs both kpi and value; nothing here is a score or a label.
    with pytest.raises(IngestError) as info:
        resolve_cols(cols("id", "ts", "kpi"), file="logs/odd.csv")
    message = str(info.value)
    assert message.startswith("logs/odd.csv: cannot tell")
    assert "columns found: id, ts, kpi" in message
    assert "--kind" in message


# --------------------------------------------------------------------------- required fields
@pytest.mark.parametrize(("columns", "flags", "missing"), [
    (cols("ts", "p:DOUBLE"), {"model": "m", "model_version": "v"}, "request_id"),
    (cols("id", "p:DOUBLE"), {"model": "m", "model_version": "v"}, "ts"),
    (cols("id", "ts", "p:DOUBLE"), {"model_version": "v"}, "model"),
    (cols("id", "ts", "p:DOUBLE"), {"model": "m"}, "model_version"),
    (cols("id", "ts", "x:DOUBLE"), {"kind": "predictions", "model": "m", "model_version": "v"},
     "score (p, logit, or per-class probabilities)"),
    (cols("id", "ts", "x"), {"kind": "labels"}, "label"),
    (cols("ts", "kpi", "amount:DOUBLE"), {"kind": "kpi"}, "value"),
])
def test_missing_required_field_names_file_field_and_columns(
        columns: list[SourceColumn], flags: dict, missing: str) -> None:
    with pytest.raises(IngestError) as info:
        resolve_cols(columns, file="logs/preds.csv", **flags)
    message = str(info.value)
    assert message.startswith("logs/preds.csv: required field(s) missing")
    assert f": {missing} (" in message
    assert "columns found: " + ", ".join(c.name for c in columns) in message


def test_model_constants_fill_missing_model_fields() -> None:
    m = resolve_cols(cols("id", "ts", "p:DOUBLE"), model="fraud", model_version="v3")
    assert m.constants == {"model": "fraud", "model_version": "v3"}
    assert "model" not in m.fields


def test_map_to_a_missing_column_errors() -> None:
    with pytest.raises(IngestError) as info:
        resolve_cols(cols("id", "ts", "score:DOUBLE"), file="f.csv", map={"p": "fraud_score"},
                     model="m", model_version="v")
    assert str(info.value) == ("f.csv: --map maps p to column 'fraud_score', which the file does "
                               "not have (columns found: id, ts, score)")


@pytest.mark.parametrize("bad_field", ["probability", "P", "label_time", ""])
def test_unknown_field_in_map_errors(bad_field: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown field '{bad_field}' in a mapping"):
        MappingOptions(map={bad_field: "score"})


def test_field_of_another_kind_errors() -> None:
    with pytest.raises(IngestError, match="field 'p' \\(flag\\) does not apply to a labels file"):
        resolve_cols(cols("id", "label", "score:DOUBLE"), kind="labels", map={"p": "score"})


def test_unknown_kind_errors() -> None:
    with pytest.raises(ConfigError, match="kind must be one of predictions, labels, kpi; got 'preds'"):
        MappingOptions(kind="preds")


# --------------------------------------------------------------------------- precedence
TOML_FRAUD = """
    timezone = "Europe/Berlin"

    [[source]]
    match = "fraud_*"
    kind = "predictions"
    map = { request_id = "alt_id", p = "score2" }
    segments = ["region"]
    model = "fraud_from_config"

    [[source]]
    match = "*.csv"
    map = { p = "score3" }
    """

FRAUD_COLUMNS = cols("event_id", "alt_id", "scored_at", "score:DOUBLE", "score2:DOUBLE",
                     "score3:DOUBLE", "region:VARCHAR:3", "model_version")


def test_precedence_flags_then_config_then_auto(tmp_path: Path) -> None:
    config = load_config(write_text(tmp_path, "lossboard.toml", TOML_FRAUD))
    m = resolve_cols(FRAUD_COLUMNS, config=config, file="in/fraud_2026.csv",
                     map={"p": "score3"}, model="fraud_from_flag")
    # p: the flag beats the config's score2 and the auto-detected score.
    # request_id: the config beats the auto-detected event_id. ts: nobody said, auto.
    assert m.fields["p"] == "score3"
    assert m.fields["request_id"] == "alt_id"
    assert m.fields["ts"] == "scored_at"
    assert m.field_sources == {"p": "flag", "request_id": "config", "ts": "auto",
                               "model_version": "auto"}
    assert m.constants == {"model": "fraud_from_flag"}
    assert (m.roles["region"], m.role_sources["region"]) == ("segment", "config")
    assert m.timezone == "Europe/Berlin"


def test_config_source_applies_by_file_name_glob(tmp_path: Path) -> None:
    config = load_config(write_text(tmp_path, "lossboard.toml", TOML_FRAUD))
    fraud = resolve_cols(FRAUD_COLUMNS, config=config, file="deep/dir/fraud_1.csv")
    other = resolve_cols(FRAUD_COLUMNS, config=config, file="churn_1.csv", model="churn")
    other_ext = resolve_cols(FRAUD_COLUMNS, config=config, file="churn_1.parquet", model="churn")
    # The first matching source wins: fraud_* before *.csv.
    assert (fraud.fields["p"], fraud.constants["model"]) == ("score2", "fraud_from_config")
    assert other.fields["p"] == "score3"
    # No source matches a .parquet called churn_*: auto-detection picks "score".
    assert other_ext.fields["p"] == "score"


def test_flag_timezone_beats_config() -> None:
    config = Config(path=None, timezone="Asia/Tokyo")
    assert resolve_cols(cols("id", "ts", "p:DOUBLE"), config=config, model="m",
                        model_version="v").timezone == "Asia/Tokyo"
    assert resolve_cols(cols("id", "ts", "p:DOUBLE"), config=config, model="m", model_version="v",
                        timezone="UTC").timezone == "UTC"


# --------------------------------------------------------------------------- roles
@pytest.mark.parametrize(("column", "role"), [
    # PII by name (README: email, phone, ip without asking), whatever the type.
    (SourceColumn("email", "VARCHAR", 1000), "pii"),
    (SourceColumn("customer_email", "VARCHAR", 3), "pii"),
    (SourceColumn("phone", "BIGINT"), "pii"),
    (SourceColumn("ip", "VARCHAR", 10), "pii"),
    # Activations by name, when numeric.
    (SourceColumn("h1_tanh", "DOUBLE"), "activation"),
    (SourceColumn("layer2_tanh", "FLOAT"), "activation"),
    (SourceColumn("h3_unit7", "DOUBLE"), "activation"),
    (SourceColumn("hidden_4", "DOUBLE"), "activation"),
    (SourceColumn("h1_tanh", "VARCHAR", 2), "segment"),
    (SourceColumn("amount", "DOUBLE"), "feature"),
    (SourceColumn("n_items", "BIGINT"), "feature"),
    (SourceColumn("price", "DECIMAL(10,2)"), "feature"),
    # Text: at most SEGMENT_MAX_DISTINCT (50) distinct values -> segment, more -> feature.
    (SourceColumn("region", "VARCHAR", 3), "segment"),
    (SourceColumn("region", "VARCHAR", SEGMENT_MAX_DISTINCT), "segment"),
    (SourceColumn("merchant", "VARCHAR", SEGMENT_MAX_DISTINCT + 1), "feature"),
    (SourceColumn("is_new", "BOOLEAN", 2), "segment"),
    (SourceColumn("signup_day", "DATE"), "attribute"),
])
def test_infer_role(column: SourceColumn, role: str) -> None:
    assert infer_role(column) == role


def test_explicit_roles_beat_inference() -> None:
    m = resolve_cols(cols("id", "ts", "p:DOUBLE", "amount:DOUBLE", "h1_tanh:DOUBLE", "note:VARCHAR:2",
                          "card:VARCHAR:900"),
                     model="m", model_version="v", segments=("amount",), features=("h1_tanh",),
                     activations=("note",), pii=("card",))
    assert m.roles == {"amount": "segment", "h1_tanh": "feature", "note": "activation", "card": "pii"}
    assert set(m.role_sources.values()) == {"flag"}
    assert m.pii_columns == ("card",)


def test_registered_role_beats_inference() -> None:
    m = resolve_cols(cols("id", "ts", "p:DOUBLE", "amount:DOUBLE"), model="m", model_version="v",
                     registered={"amount": "segment"})
    assert (m.roles["amount"], m.role_sources["amount"]) == ("segment", "registry")


def test_role_for_a_missing_column_errors() -> None:
    with pytest.raises(IngestError, match="segment column 'channel' \\(flag\\) is not in the file"):
        resolve_cols(cols("id", "ts", "p:DOUBLE"), model="m", model_version="v", segments=("channel",))


def test_role_for_a_mapped_column_errors() -> None:
    with pytest.raises(IngestError, match="column 'ts' is mapped to a field and cannot also be a segment"):
        resolve_cols(cols("id", "ts", "p:DOUBLE"), model="m", model_version="v", segments=("ts",))


def test_roles_end_to_end(tmp_path: Path, db_path: Path) -> None:
    # 60 distinct merchants (> 50) -> feature; 2 regions -> segment.
    rows = "\n".join(f"r{i},{TS},0.5,u{i}@example.com,{i % 2},{(i % 7) / 10},m{i % 60},"
                     f"{'eu' if i % 2 else 'us'}" for i in range(120))
    path = write_csv(tmp_path, "p.csv", "request_id,ts,p,email,h1_tanh,amount,merchant,region\n" + rows)
    ingest_one(db_path, path, model="m", model_version="v1")
    roles = dict(query(db_path, "SELECT name, role FROM columns WHERE kind = 'predictions'"))
    assert roles == {"email": "pii", "h1_tanh": "activation", "amount": "feature",
                     "merchant": "feature", "region": "segment"}


# --------------------------------------------------------------------------- config file
@pytest.mark.parametrize(("text", "message"), [
    ("[[source]\nmatch = 'x'", "is not valid TOML"),
    ("colour = 'blue'", "unknown top-level keys ['colour']"),
    ("[[source]]\nmatch = 'x'\nsegmentz = ['a']", "[[source]] #1: unknown keys ['segmentz']"),
    ("[[source]]\nkind = 'preds'", "kind must be one of predictions, labels, kpi"),
    ("[[source]]\nmap = { probability = 'score' }", "unknown field 'probability'"),
    ("[[source]]\nmap = 'p=score'", "map must be a table"),
    ("[[source]]\nsegments = [1, 2]", "expected a list of column names"),
    ("[[source]]\nclass_probs = ['a']", "class_probs must be a table"),
])
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write_text(tmp_path, "lossboard.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_config_missing_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_config_default_is_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None).sources == ()
    write_text(tmp_path, "lossboard.toml", "[[source]]\nmatch = 'a*'\nsegments = 'x, y'\n")
    config = load_config(None)
    assert config.path == Path("lossboard.toml")
    # A comma-separated string is accepted where a list is expected.
    assert config.sources[0].options.segments == ("x", "y")


def test_config_drives_an_ingest(tmp_path: Path, db_path: Path) -> None:
    config = write_text(tmp_path, "lossboard.toml", """
        timezone = "Europe/Berlin"
        [[source]]
        match = "fraud_predictions*"
        kind = "predictions"
        map = { request_id = "event_uuid", ts = "scored_at", p = "fraud_score" }
        segments = ["amount"]
        pii = ["card"]
        model = "fraud"
        model_version = "v3"
        """)
    path = write_csv(tmp_path, "fraud_predictions_1.csv", """
        event_uuid,scored_at,fraud_score,amount,card
        e1,2026-01-15 10:00:00,0.25,10,4111-1111
        """)
    result = ingest_one(db_path, path, config=config)
    assert result.kind == "predictions"
    row = query(db_path, "SELECT request_id, ts, model, model_version, p, card FROM predictions")[0]
    # 10:00 in Berlin in January (UTC+1) is 09:00 UTC.
    assert row[:5] == ("e1", datetime(2026, 1, 15, 9, tzinfo=UTC), "fraud", "v3", 0.25)
    assert row[5] != "4111-1111" and len(row[5]) == 20
    roles = dict(query(db_path, "SELECT name, role_source FROM columns"))
    assert roles == {"amount": "config", "card": "config"}


def test_config_map_to_missing_column_names_the_config(tmp_path: Path, db_path: Path) -> None:
    config = write_text(tmp_path, "cfg.toml", "[[source]]\nmap = { p = 'fraud_score' }\n")
    path = write_csv(tmp_path, "p.csv", f"id,ts,score\na,{TS},0.5\n")
    result = only_file(run_ingest(db_path, path, config=config, model="m", model_version="v"))
    assert result.status == "rejected"
    assert f"{config} maps p to column 'fraud_score'" in result.message


# --------------------------------------------------------------------------- flag parsing
@pytest.mark.parametrize(("items", "pairs"), [
    (["request_id=event_uuid"], (("request_id", "event_uuid"),)),
    (["a=b,c=d", " e = f "], (("a", "b"), ("c", "d"), ("e", "f"))),
    (["low=p_low,,high=p_high,"], (("low", "p_low"), ("high", "p_high"))),
    ([], ()),
])
def test_parse_pairs(items: list[str], pairs: tuple) -> None:
    assert parse_pairs(items, "--map") == pairs


@pytest.mark.parametrize("bad", ["p", "=score", "p=", "p:score"])
def test_parse_pairs_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"--map: expected KEY=VALUE, got '{bad}'"):
        parse_pairs([bad], "--map")


@pytest.mark.parametrize(("text", "items"), [
    (None, ()), ("", ()), ("a", ("a",)), (" a, b ,,c ", ("a", "b", "c")),
])
def test_parse_list(text: str | None, items: tuple) -> None:
    assert parse_list(text) == items
