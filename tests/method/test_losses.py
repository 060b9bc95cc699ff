"""Hand-computed checks of MedUnA's two loss terms and their weighted sum."""

import math

import pytest
import torch

from medguna.errors import ConfigError
from medguna.method.losses import (
    confident_marginal_entropy,
    confident_row_count,
    label_smoothing_cross_entropy,
    stage2_loss,
)

LN3, LN4, LN9 = math.log(3.0), math.log(4.0), math.log(9.0)

# Rows chosen so softmax is exact on paper: [ln3, 0] -> (.75, .25), [0, 0] -> (.5, .5),
# [0, ln9] -> (.1, .9), [ln4, 0] -> (.8, .2).
FOUR_ROWS = torch.tensor([[LN3, 0.0], [0.0, 0.0], [0.0, LN9], [LN4, 0.0]], dtype=torch.float64)


def test_lsce_matches_hand_computation_with_smoothing_spread_over_all_classes():
    logits = torch.tensor([[LN3, 0.0], [0.0, LN3]], dtype=torch.float64)
    targets = torch.tensor([0, 0])
    # target weights (1 - 0.1) + 0.1/2 = 0.95 and 0.1/2 = 0.05:
    # row 0: 0.95 ln(4/3) + 0.05 ln 4 = 0.3426127; row 1: 0.95 ln 4 + 0.05 ln(4/3) = 1.3313637
    loss = label_smoothing_cross_entropy(logits, targets, 0.1)
    assert loss.item() == pytest.approx((0.3426127 + 1.3313637) / 2, abs=1e-6)


def test_lsce_without_smoothing_is_plain_cross_entropy():
    logits = torch.tensor([[LN3, 0.0]], dtype=torch.float64)
    loss = label_smoothing_cross_entropy(logits, torch.tensor([0]), 0.0)
    assert loss.item() == pytest.approx(math.log(4 / 3), abs=1e-9)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_lsce_rejects_smoothing_outside_unit_interval(smoothing):
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        label_smoothing_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), smoothing)


def test_lsce_rejects_mismatched_targets_and_flat_logits():
    with pytest.raises(ConfigError, match=r"targets must have shape \(2,\)"):
        label_smoothing_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1, 2]), 0.1)
    with pytest.raises(ConfigError, match="logits must have shape"):
        label_smoothing_cross_entropy(torch.zeros(3), torch.tensor([0]), 0.1)


def test_marginal_entropy_uses_the_lowest_entropy_rows_only():
    # Row entropies: 0.562, 0.693, 0.325, 0.500 -> ratio 0.5 keeps rows 2 and 3.
    # Their mean distribution is (0.45, 0.55): H = -(0.45 ln 0.45 + 0.55 ln 0.55) = 0.6881388.
    value = confident_marginal_entropy(FOUR_ROWS, 0.5, safe=True)
    assert value.item() == pytest.approx(0.6881388, abs=1e-6)


def test_marginal_entropy_sign_rewards_agreement_between_confident_rows():
    # Two confident rows that disagree average to (.5, .5): H = ln 2, the maximum for K = 2.
    # Two that agree keep (.9, .1): H = 0.3250830. Minimising the loss (which ADDS this term)
    # therefore pushes confident rows onto one class, away from balance.
    disagree = torch.tensor([[LN9, 0.0], [0.0, LN9]], dtype=torch.float64)
    agree = torch.tensor([[LN9, 0.0], [LN9, 0.0]], dtype=torch.float64)
    assert confident_marginal_entropy(disagree, 1.0, safe=True).item() == pytest.approx(
        math.log(2), abs=1e-9
    )
    assert confident_marginal_entropy(agree, 1.0, safe=True).item() == pytest.approx(
        0.3250830, abs=1e-6
    )


def test_reference_entropy_is_nan_below_ten_images_and_safe_variant_keeps_one_row():
    logits = torch.zeros(9, 2, dtype=torch.float64)
    logits[4] = torch.tensor([LN9, 0.0])  # the one confident row: (.9, .1), H = 0.3250830
    assert math.isnan(confident_marginal_entropy(logits, 0.1, safe=False).item())
    safe_value = confident_marginal_entropy(logits, 0.1, safe=True)
    assert safe_value.item() == pytest.approx(0.3250830, abs=1e-6)


def test_confident_row_count_reference_and_safe():
    assert confident_row_count(9, 0.1, safe=False) == 0
    assert confident_row_count(9, 0.1, safe=True) == 1
    assert confident_row_count(50, 0.1, safe=False) == 5
    # 0.7 * 90 is 62.99999999999999 in floating point: the reference floors it to 62.
    assert confident_row_count(90, 0.7, safe=False) == 62
    assert confident_row_count(90, 0.7, safe=True) == 63


def test_marginal_entropy_gradient_is_finite_when_softmax_underflows():
    logits = torch.tensor([[0.0, -2000.0], [0.0, -2000.0]], requires_grad=True)
    confident_marginal_entropy(logits, 1.0, safe=True).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_marginal_entropy_rejects_bad_ratio(ratio):
    with pytest.raises(ConfigError, match="confident_ratio must be in"):
        confident_marginal_entropy(torch.zeros(4, 2), ratio, safe=True)


def test_stage2_loss_is_weighted_sum_of_hand_computed_terms():
    teacher = torch.tensor([0, 0, 1, 0])
    # LSCE rows: 0.3426127, ln 2 = 0.6931472, 0.95(-ln .9) + 0.05(-ln .1) = 0.2152218,
    # 0.95(-ln .8) + 0.05(-ln .2) = 0.2924583 -> mean 0.3858600.
    loss, terms = stage2_loss(
        FOUR_ROWS,
        teacher,
        ce_weight=0.7,
        entropy_weight=1.5,
        confident_ratio=0.5,
        label_smoothing=0.1,
        safe_entropy=True,
    )
    assert terms["loss_ce"].item() == pytest.approx(0.3858600, abs=1e-6)
    assert terms["loss_entropy"].item() == pytest.approx(0.6881388, abs=1e-6)
    assert loss.item() == pytest.approx(0.7 * 0.3858600 + 1.5 * 0.6881388, abs=1e-6)
    assert not terms["loss_ce"].requires_grad


@pytest.mark.parametrize("weight", [1.5, -1.5])
def test_entropy_term_sign_positive_makes_confident_rows_agree_negative_spreads_them(weight):
    """docs/method.md §4: +H(mean softmax) minimised rewards agreement (towards collapse); a
    negative weight maximises it, a diversity term as in SHOT."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)  # rows disagree, unevenly

    def marginal_entropy(z):
        mean = torch.softmax(z, dim=1).mean(dim=0)
        return float(-(mean * mean.log()).sum())

    before = marginal_entropy(logits.detach())
    loss, _ = stage2_loss(logits, torch.tensor([0, 1]), ce_weight=0.0, entropy_weight=weight,
                          confident_ratio=1.0, label_smoothing=0.1, safe_entropy=True)
    loss.backward()
    after = marginal_entropy(logits.detach() - 0.5 * logits.grad)
    if weight > 0:
        assert after < before  # the two rows move towards one class
    else:
        assert after > before  # towards balanced use of both classes
