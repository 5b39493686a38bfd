"""One exception family, so the CLI can print one line and exit non-zero for any of them."""

from __future__ import annotations


class LossboardError(Exception):
    """Base of every error lossboard raises on purpose; its message is meant for a person."""


class IngestError(LossboardError):
    """A file could not be ingested (unreadable, required field missing, bad mapping)."""


class SchemaError(LossboardError):
    """The database does not have the shape this version of lossboard expects."""


class ConfigError(LossboardError):
    """A flag or a lossboard.toml entry is invalid."""


class QueryError(LossboardError):
    """An analysis query failed or was asked something it cannot answer."""


class DatabaseBusyError(LossboardError):
    """Another process held the database lock for longer than we were willing to wait."""
