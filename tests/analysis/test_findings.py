"""Tests for lossboard.dashboard.analysis.findings: the run rule behind every finding's
"since", the look-back before a window, and the wording of a start before the window.

The sample's findings, end to end, are in test_report.py."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from lossboard.dashboard.analysis.filters import Filter
from lossboard.dashboard.analysis.findings import (
    Run,
    last_run,
    lookback_range,
    since_phrase,
)

T, F, U = True, False, None  # bad, good, unknown (too few samples)


@pytest.mark.parametrize("flags, run", [
    ([], None),
    ([F, F], None),
    ([F, T], Run(1, 1, True, False)),                 # one bad bucket, ongoing: a run
    ([T, F], None),                                   # one bad bucket, over: not a run
    ([T, T, F], Run(0, 1, False, True)),              # two bad buckets, over
    ([F, T, U, T, U], Run(1, 3, True, False)),        # the docstring's example
    # A quiet (unknown) bucket neither ends nor starts a run: the start stays at index 1.
    ([F, T, T, U, U, T], Run(1, 5, True, False)),
    ([U, U, T, T], Run(2, 3, True, True)),            # unknown before: may have begun earlier
    ([T, T, F, T], Run(3, 3, True, False)),           # the last run counts, even if shorter
    ([T, T, F, T, F], Run(0, 1, False, True)),        # ... unless it is one bucket and over
    ([U, U], None),
])
def test_last_run(flags: list[bool | None], run: Run | None) -> None:
    assert last_run(flags) == run


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("reference, start, expected", [
    # No reference time range (a reference version): the whole look-back.
    ((None, None), "2026-10-24", ("2026-10-17", "2026-10-24")),
    # A reference long before: the whole look-back.
    (("2026-10-01", "2026-10-08"), "2026-10-24", ("2026-10-17", "2026-10-24")),
    # A reference inside the look-back: only after it (its days are the baseline).
    (("2026-10-01", "2026-10-20"), "2026-10-24", ("2026-10-20", "2026-10-24")),
    # The previous period as reference: nothing to look back at.
    (("2026-10-17", "2026-10-24"), "2026-10-24", None),
    # A reference at the window's start (the report's default): the look-back is before it.
    (("2026-10-24", "2026-10-31"), "2026-10-24", ("2026-10-17", "2026-10-24")),
])
def test_lookback_range(reference: tuple[str | None, str | None], start: str,
                        expected: tuple[str, str] | None) -> None:
    flt = Filter(model="m", start=start, end="2026-11-01",
                 reference_start=reference[0], reference_end=reference[1],
                 reference_version="v1" if reference == (None, None) else None)
    got = lookback_range(flt, utc(start))
    assert got == (None if expected is None else (utc(expected[0]), utc(expected[1])))


def test_since_phrase_says_when_it_began_before_the_window() -> None:
    since, start = utc("2026-10-23"), utc("2026-10-24")
    assert since_phrase(since, False, False, start) == "since 2026-10-23"
    assert since_phrase(since, True, False, start) == (
        "since 2026-10-23 (before this window, which starts 2026-10-24 00:00)")
    assert since_phrase(since, True, True, start).startswith("since before 2026-10-23")
