"""Exact t quantiles and mean confidence intervals against table values and hand computation."""

from __future__ import annotations

import pytest

from medguna.analysis.stats import mean_ci, t_central_probability, t_quantile_two_sided
from medguna.errors import ConfigError


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, 12.706205),
        (2, 4.302653),
        (3, 3.182446),
        (4, 2.776445),
        (5, 2.570582),
        (10, 2.228139),
        (29, 2.045230),
        (100, 1.983972),
    ],
)
def test_t_quantile_matches_printed_tables(df, expected):
    assert t_quantile_two_sided(0.95, df) == pytest.approx(expected, abs=1e-6)


def test_t_probability_closed_forms():
    # df = 1 is the Cauchy distribution: P(|T| <= 1) = 1/2; df = 2: t / sqrt(2 + t^2).
    assert t_central_probability(1.0, 1) == pytest.approx(0.5)
    assert t_central_probability(2.0, 2) == pytest.approx(2.0 / 6.0**0.5)


def test_t_quantiles_match_scipy():
    from scipy import stats  # the dev extra's reference implementation

    for df in (1, 2, 7, 30, 250):
        for confidence in (0.8, 0.95, 0.99):
            expected = stats.t.ppf(0.5 + confidence / 2, df)
            assert t_quantile_two_sided(confidence, df) == pytest.approx(expected, rel=1e-9)


def test_mean_ci_by_hand():
    # Test balanced accuracy 0.74, 0.70, 0.78: mean 0.74, sd 0.04, half = 4.302653 * 0.04 / sqrt 3.
    ci = mean_ci([0.74, 0.70, 0.78])
    assert ci.n == 3 and ci.mean == pytest.approx(0.74) and ci.sd == pytest.approx(0.04)
    assert ci.low == pytest.approx(0.6406345, abs=1e-7)
    assert ci.high == pytest.approx(0.8393655, abs=1e-7)
    single = mean_ci([0.5])
    assert single.low is None and single.sd is None


def test_bad_inputs():
    with pytest.raises(ConfigError, match="confidence must be in"):
        t_quantile_two_sided(1.5, 3)
    with pytest.raises(ConfigError, match="degrees of freedom"):
        t_quantile_two_sided(0.95, 0)
    with pytest.raises(ConfigError, match="at least one finite value"):
        mean_ci([])
