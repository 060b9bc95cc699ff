"""Small statistics: Student-t quantiles and mean confidence intervals (no scipy needed), and the
summary of a measure over seeds that the seed and confirmed tables show.

The t quantile is found by bisection on the exact two-sided t probability for integer degrees of
freedom (Abramowitz & Stegun 26.7.3/26.7.4: a finite trigonometric sum), so it is exact to the
bisection tolerance for any confidence level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from medguna.errors import ConfigError


def t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` (integer >= 1) degrees of freedom, t >= 0."""
    theta = math.atan(t / math.sqrt(df))
    cos, sin = math.cos(theta), math.sin(theta)
    if df % 2 == 1:
        # Odd df: 2/pi * (theta + sin * cos * (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)).
        series, term = 0.0, cos
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= cos * cos * (2 * k) / (2 * k + 1)
        return 2.0 / math.pi * (theta + sin * series)
    # Even df: sin * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...).
    series, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):
        series += term
        term *= cos * cos * (2 * k - 1) / (2 * k)
    return sin * series


def t_quantile_two_sided(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = confidence; e.g. (0.95, 2) -> 4.3027."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if df < 1 or int(df) != df:
        raise ConfigError(f"degrees of freedom must be an integer >= 1, got {df!r}")
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < confidence:
        high *= 2.0
    for _ in range(200):  # bisection: halves the interval to far below float resolution
        mid = (low + high) / 2.0
        if t_central_probability(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with a two-sided t confidence interval (None bounds when n < 2)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean, sample standard deviation and t interval mean +- t * sd / sqrt(n)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(clean)
    if n == 0:
        raise ConfigError("mean_ci needs at least one finite value")
    mean = sum(clean) / n
    if n < 2:
        return MeanCI(n, mean, None, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = t_quantile_two_sided(confidence, n - 1) * sd / math.sqrt(n)
    return MeanCI(n, mean, sd, mean - half, mean + half)


# Below this many seeds the table shows the seeds' range: a percentile bootstrap over 3 or 4 values
# has a handful of distinct resample means and a t interval over 2 leaves the metric's range.
SEED_BOOTSTRAP_MIN = 5
SEED_RESAMPLES = 10_000
RANGE, BOOTSTRAP, ONE_SEED = "range", "percentile bootstrap", "one seed"


@dataclass(frozen=True)
class SeedSummary:
    """Mean of one measure over a configuration's seeds and what spread is shown.

    The seeds share one split and one test set, so the spread covers training randomness only,
    never test-image sampling nor another draw of the data."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    kind: str  # RANGE, BOOTSTRAP or ONE_SEED

    @property
    def zero_width(self) -> bool:
        return self.low is not None and self.low == self.high

    def text(self, digits: int = 3) -> str:
        """"0.780-0.800 (range of 2 seeds)", "0.781 [0.770, 0.795] (95% percentile bootstrap over
        5 seeds)", "0.780 (one seed: no spread)"; "seeds agree" marks a zero-width spread."""
        f = f"{{:.{digits}f}}"
        if self.kind == ONE_SEED:
            return f"{f.format(self.mean)} (one seed: no spread)"
        agree = "; seeds agree, zero width" if self.zero_width else ""
        if self.kind == RANGE:
            return f"{f.format(self.low)}-{f.format(self.high)} (range of {self.n} seeds{agree})"
        return (f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}] "
                f"(95% percentile bootstrap over {self.n} seeds{agree})")


def seed_summary(values: Sequence[float], confidence: float = 0.95, resamples: int = SEED_RESAMPLES,
                 seed: int = 0) -> SeedSummary:
    """Mean and sd over seeds with the seeds' range (n < SEED_BOOTSTRAP_MIN) or the percentile
    bootstrap interval of the mean over seeds; both lie inside [min, max] of the values, so inside
    the metric's range by construction."""
    import numpy as np

    clean = np.array([float(v) for v in values if v is not None and math.isfinite(v)])
    n = clean.size
    if n == 0:
        raise ConfigError("seed_summary needs at least one finite value")
    # A mean lies within its values; float summation can put it one ulp outside (0.8333...4 over
    # two 0.8333...3), which would read as a mean above the seeds' range.
    mean = float(np.clip(clean.mean(), clean.min(), clean.max()))
    if n == 1:
        return SeedSummary(1, mean, None, None, None, ONE_SEED)
    sd = float(clean.std(ddof=1))
    if n < SEED_BOOTSTRAP_MIN:
        return SeedSummary(n, mean, sd, float(clean.min()), float(clean.max()), RANGE)
    rng = np.random.default_rng(seed)
    means = clean[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return SeedSummary(n, mean, sd, float(low), float(high), BOOTSTRAP)
