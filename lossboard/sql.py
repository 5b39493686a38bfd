"""The one audited way for user-named identifiers (column names) to reach SQL.

Values never reach SQL as text: they are bound parameters. Column and table names cannot be
bound, so every user-supplied name goes through :func:`quote_ident`, and nowhere else builds
an identifier from user input. tests/test_sql.py tries to break out of the quotes.
"""

from __future__ import annotations

from lossboard.errors import ConfigError


def quote_ident(name: str) -> str:
    """Return ``name`` as a DuckDB quoted identifier.

    Double quotes inside the name are doubled (the SQL standard escape), so no name can end
    the identifier early. NUL bytes and empty names are refused because DuckDB cannot store them.

    >>> quote_ident('fraud score')
    '"fraud score"'
    >>> quote_ident('a"b')
    '"a""b"'
    """
    if not isinstance(name, str):
        raise ConfigError(f"column name must be a string, got {type(name).__name__}: {name!r}")
    if name == "" or "\x00" in name:
        raise ConfigError(f"invalid column name {name!r}: empty or contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote ``text`` as a SQL string literal (single quotes doubled).

    Only where DuckDB accepts no bound parameter: ``ATTACH`` paths, and column names that a
    generated message must mention inside a CASE. Values from logs are always bound instead.
    """
    if "\x00" in text:
        raise ConfigError(f"invalid text {text!r}: contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"
