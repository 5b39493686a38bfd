"""Mergeable loss moments and the two-sample tests built on them.

A group of rows is summarised by five sums — ``n``, ``Σw``, ``Σw²``, ``Σw·x``, ``Σw·x²`` — which
add up across buckets, so segment, version and window figures come from one GROUP BY and the
same numbers could be merged on a bigger engine later (ARCHITECTURE.md, "Analysis conventions").

Weighted conventions (docs/metrics/segments.md): mean = Σw·x / Σw; population variance
``var_w = Σw·x²/Σw − mean²``; effective sample size ``n_eff = (Σw)² / Σw²`` (equals n when all
weights are 1); standard error of the mean ``se = sqrt(var_w / (n_eff − 1))``, which for unit
weights is the usual ``s / sqrt(n)`` with the ddof=1 sample standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps


def moments_sql(x: str, w: str = "weight", where: str = "score_ok") -> str:
    """Select items for the five sums of ``x`` over rows where ``where`` holds."""
    return (f"count(CASE WHEN {where} THEN 1 END) AS n, "
            f"coalesce(sum(CASE WHEN {where} THEN {w} END), 0) AS sum_w, "
            f"coalesce(sum(CASE WHEN {where} THEN {w} * {w} END), 0) AS sum_w2, "
            f"coalesce(sum(CASE WHEN {where} THEN {w} * {x} END), 0) AS sum_wx, "
            f"coalesce(sum(CASE WHEN {where} THEN {w} * {x} * {x} END), 0) AS sum_wx2")


@dataclass(frozen=True)
class Moments:
    """The five mergeable sums of one group."""

    n: int
    sum_w: float
    sum_w2: float
    sum_wx: float
    sum_wx2: float

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.sum_w + other.sum_w, self.sum_w2 + other.sum_w2,
                       self.sum_wx + other.sum_wx, self.sum_wx2 + other.sum_wx2)

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.sum_w - other.sum_w, self.sum_w2 - other.sum_w2,
                       self.sum_wx - other.sum_wx, self.sum_wx2 - other.sum_wx2)

    @property
    def mean(self) -> float | None:
        return self.sum_wx / self.sum_w if self.n > 0 and self.sum_w > 0 else None

    @property
    def n_eff(self) -> float:
        return self.sum_w ** 2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    @property
    def var(self) -> float | None:
        """Weighted population variance (clamped at 0 against rounding)."""
        m = self.mean
        if m is None:
            return None
        return max(self.sum_wx2 / self.sum_w - m * m, 0.0)

    @property
    def se(self) -> float | None:
        """Standard error of the weighted mean; None with fewer than two effective rows."""
        var = self.var
        if var is None or self.n_eff <= 1:
            return None
        return math.sqrt(var / (self.n_eff - 1))


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of mean(a) − mean(b)."""

    difference: float
    t_statistic: float | None
    dof: float | None
    p_value: float | None  # two-sided unless the function says otherwise


def welch(a: Moments, b: Moments, alternative: str = "two-sided") -> WelchResult | None:
    """Welch's t-test from moments; matches ``scipy.stats.ttest_ind(a, b, equal_var=False)``
    for unit weights. None when either side has no rows. ``alternative`` as in scipy:
    'two-sided', 'greater' (mean(a) > mean(b)) or 'less'."""
    ma, mb = a.mean, b.mean
    if ma is None or mb is None:
        return None
    diff = ma - mb
    sa, sb = a.se, b.se
    if sa is None or sb is None:
        return WelchResult(diff, None, None, None)
    va, vb = sa * sa, sb * sb
    denom = math.sqrt(va + vb)
    if denom == 0.0:
        # Both samples constant: the difference is certain (or exactly zero).
        p = 1.0 if diff == 0 else 0.0
        if alternative == "greater":
            p = 0.0 if diff > 0 else 1.0
        elif alternative == "less":
            p = 0.0 if diff < 0 else 1.0
        return WelchResult(diff, None, None, p)
    t = diff / denom
    dof_den = va * va / (a.n_eff - 1) + vb * vb / (b.n_eff - 1)
    # Variances near 1e-160 square to 0 in floating point; the Welch-Satterthwaite degrees of
    # freedom then fall back to their lower bound, the smaller sample's.
    dof = (va + vb) ** 2 / dof_den if dof_den > 0 else min(a.n_eff, b.n_eff) - 1
    if alternative == "two-sided":
        p = 2 * sps.t.sf(abs(t), dof)
    elif alternative == "greater":
        p = sps.t.sf(t, dof)
    elif alternative == "less":
        p = sps.t.cdf(t, dof)
    else:
        raise ValueError(f"alternative must be two-sided, greater or less; got {alternative!r}")
    return WelchResult(diff, t, dof, float(min(max(p, 0.0), 1.0)))
