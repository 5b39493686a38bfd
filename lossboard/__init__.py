"""lossboard: model observability for probabilistic classifiers.

The write path lives in :mod:`lossboard.ingest`, the read path (analysis, dashboard, CLI)
in :mod:`lossboard.dashboard`. This package holds what both share: the exception family
and the one audited helper that lets user-named identifiers reach SQL.
"""

from __future__ import annotations

__version__ = "0.1.0"
