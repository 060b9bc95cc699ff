"""The adapter: the reference linear form, the bottleneck, and bad widths."""

import pytest
import torch

from medguna.errors import ConfigError
from medguna.models.adapter import Adapter


def test_width_zero_is_the_reference_bias_free_linear():
    adapter = Adapter(512, 5)
    linears = [m for m in adapter.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1
    assert linears[0].weight.shape == (5, 512)
    assert linears[0].bias is None
    assert sum(p.numel() for p in adapter.parameters()) == 512 * 5
    assert adapter(torch.randn(7, 512)).shape == (7, 5)


def test_bottleneck_shapes_and_parameter_count():
    adapter = Adapter(512, 7, width=64)
    # 512*64 (in) + 2*64 (LayerNorm) + 64*7 (out, no bias)
    assert sum(p.numel() for p in adapter.parameters()) == 512 * 64 + 128 + 64 * 7
    assert adapter(torch.randn(3, 512)).shape == (3, 7)


def test_bottleneck_logits_do_not_depend_on_input_norm():
    # The hidden LayerNorm makes raw and unit-norm features give the same logits.
    torch.manual_seed(0)
    adapter = Adapter(16, 3, width=8)
    features = torch.randn(4, 16)
    torch.testing.assert_close(adapter(features * 25.0), adapter(features), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("width", "message"),
    [
        (-1, "adapter_width must be 0"),
        (100_000, "adapter_width=100000 is larger than"),
        (2.5, "adapter_width must be an integer"),
        (True, "adapter_width must be an integer"),
    ],
)
def test_bad_widths_raise_config_error(width, message):
    with pytest.raises(ConfigError, match=message):
        Adapter(512, 2, width=width)


def test_bad_dimensions_raise_config_error():
    with pytest.raises(ConfigError, match="num_classes must be >= 2"):
        Adapter(512, 1)
    with pytest.raises(ConfigError, match="embed_dim must be >= 1"):
        Adapter(0, 3)
