"""lossboard.sql: the one audited way user-named identifiers reach SQL. Tries to break out."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from conftest import TS, ingest_one, query, write_csv, write_parquet
from lossboard.errors import ConfigError
from lossboard.sql import quote_ident, quote_literal

# Names that would end, comment out or extend a statement if pasted into SQL unquoted.
NASTY_NAMES = [
    'x"; DROP TABLE predictions; --',
    'a"b',
    '"',
    '""',
    "it's",
    "select",
    "fraud score",
    "-- comment",
    "/* c */",
    "line\nbreak",
    "ümlaut_ß",
    "a;b",
    "$salt",
]


@pytest.mark.parametrize(("name", "expected"), [
    # The SQL-standard escape, as in the function's doctest.
    ("fraud score", '"fraud score"'),
    ('a"b', '"a""b"'),
    ('"', '""""'),
    ('x"; DROP TABLE t; --', '"x""; DROP TABLE t; --"'),
    ("plain", '"plain"'),
])
def test_quote_ident_doubles_embedded_quotes(name: str, expected: str) -> None:
    assert quote_ident(name) == expected


@pytest.mark.parametrize("bad", ["", "a\x00b", "\x00"])
def test_quote_ident_refuses_empty_and_nul(bad: str) -> None:
    with pytest.raises(ConfigError, match="empty or contains a NUL"):
        quote_ident(bad)


@pytest.mark.parametrize("bad", [None, 3, b"col"])
def test_quote_ident_refuses_non_strings(bad: object) -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        quote_ident(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_quote_ident_round_trips_through_duckdb(name: str) -> None:
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE t (keep INTEGER)")
        con.execute(f"ALTER TABLE t ADD COLUMN {quote_ident(name)} VARCHAR")
        con.execute(f"INSERT INTO t (keep, {quote_ident(name)}) VALUES (1, 'v')")
        cols = [r[0] for r in con.execute("DESCRIBE t").fetchall()]
        value = con.execute(f"SELECT {quote_ident(name)} FROM t").fetchone()[0]
    finally:
        con.close()
    assert cols == ["keep", name]
    assert value == "v"


@pytest.mark.parametrize("text", ["plain", "it's", "''", "a'; DROP TABLE t; --", "x\ny"])
def test_quote_literal_round_trips(text: str) -> None:
    con = duckdb.connect()
    try:
        assert con.execute(f"SELECT {quote_literal(text)}").fetchone()[0] == text
    finally:
        con.close()


def test_quote_literal_refuses_nul() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        quote_literal("a\x00b")


INJECTION = 'x"; DROP TABLE predictions; --'


def test_injection_column_survives_an_ingest(tmp_path: Path, db_path: Path) -> None:
    # The header cell is CSV-quoted so the embedded quote is part of the name.
    path = write_csv(tmp_path, "preds.csv", f"""
        request_id,ts,p,"x""; DROP TABLE predictions; --"
        a,{TS},0.1,1.5
        b,{TS},0.2,2.5
        """)
    result = ingest_one(db_path, path, model="m", model_version="v1")

    assert result.n_accepted == 2
    assert INJECTION in result.new_columns
    # predictions still exists, holds both rows, and has a column with exactly that name.
    columns = [r[0] for r in query(db_path, "DESCRIBE predictions")]
    assert INJECTION in columns
    rows = query(db_path, f"SELECT request_id, {quote_ident(INJECTION)} FROM predictions "
                          "ORDER BY request_id")
    assert rows == [("a", 1.5), ("b", 2.5)]
    registry = query(db_path, "SELECT name, role, sql_type FROM columns WHERE kind = 'predictions'")
    # numeric and nameless otherwise -> feature (README, roles); DOUBLE as DuckDB sniffed it.
    assert registry == [(INJECTION, "feature", "DOUBLE")]


def test_nasty_column_name_in_a_bad_value_detail(tmp_path: Path, db_path: Path) -> None:
    # The detail message quotes the column name as a SQL literal (quote_literal): a name with a
    # single quote and a double quote must neither break the statement nor be mangled.
    name = "it's \"odd\""
    first = write_parquet(tmp_path, "a.parquet", {"request_id": ["a"], "ts": [TS], "p": [0.1],
                                                  name: [1.5]})
    second = write_parquet(tmp_path, "b.parquet", {"request_id": ["b"], "ts": [TS], "p": [0.2],
                                                   name: ["lots"]})
    ingest_one(db_path, first, model="m", model_version="v1")
    result = ingest_one(db_path, second, model="m", model_version="v1")

    assert result.reasons == {"bad_value": 1}
    (detail,) = query(db_path, "SELECT detail FROM quarantine")[0]
    assert detail == f"{name} = lots is not a DOUBLE"
