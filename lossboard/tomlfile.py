"""Reading lossboard.toml: one place for the file errors both of its readers report.

``lossboard.ingest.mapping`` reads the ``[[source]]`` tables, ``lossboard.dashboard.
monitoring_config`` the ``[[slo]]``, ``[alerts]`` and ``[[maintenance]]`` ones, from the same
file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from lossboard.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; a missing or malformed file is one :class:`ConfigError` naming it."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
