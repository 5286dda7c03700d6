"""Stage-2 network: output shapes (odd window sizes included) and MAFU against its written formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from spineinstanceseg.stage2.network import MAFU, NUM_CLASSES, MultiScaleUNet3D, count_parameters


@pytest.mark.parametrize("size", [(17, 23, 9), (16, 16, 16), (31, 8, 13)])
def test_unet_output_has_input_size_and_four_classes(size):
    torch.manual_seed(0)
    net = MultiScaleUNet3D(4, base_width=2).eval()
    x = torch.rand(2, 4, *size)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (2, NUM_CLASSES, *size)
    assert torch.isfinite(y).all()


def test_unet_output_depends_on_input_and_gradients_reach_first_layer():
    torch.manual_seed(0)
    net = MultiScaleUNet3D(2, base_width=2)
    x = torch.zeros(1, 2, 12, 12, 12)
    x[:, 0, 3:9, 3:9, 3:9] = 1
    y = net(x)
    y[:, 2].mean().backward()
    first = net.encoders[0][0][0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    with torch.no_grad():
        net.eval()
        assert not torch.allclose(net(x), net(torch.zeros_like(x)))


def test_parameter_count_grows_with_base_width():
    small, large = (count_parameters(MultiScaleUNet3D(4, base_width=w)) for w in (4, 8))
    assert 3 * small < large < 5 * small  # convolutions scale with width squared


def test_unet_has_four_levels_and_one_mafu_per_skip():
    net = MultiScaleUNet3D(4, base_width=3)
    assert len(net.encoders) == 4
    assert [m.attention.fuse.out_channels for m in net.decoders] == [12, 6, 3]
    assert sum(isinstance(m, MAFU) for m in net.modules()) == 3


def _bn_eval(x: np.ndarray, bn: torch.nn.BatchNorm3d) -> np.ndarray:
    mean = bn.running_mean.numpy()[:, None, None, None]
    var = bn.running_var.numpy()[:, None, None, None]
    gamma = bn.weight.detach().numpy()[:, None, None, None]
    beta = bn.bias.detach().numpy()[:, None, None, None]
    return (x - mean) / np.sqrt(var + bn.eps) * gamma + beta


def _conv(x: np.ndarray, weight: np.ndarray, dilation: int = 1) -> np.ndarray:
    """Zero-padded 'same' correlation of (Cin, X, Y, Z) with (Cout, Cin, k, k, k), optional dilation."""
    cout, cin, k = weight.shape[:3]
    if dilation > 1:
        n = dilation * (k - 1) + 1
        big = np.zeros((cout, cin, n, n, n))
        big[:, :, ::dilation, ::dilation, ::dilation] = weight
        weight = big
    out = np.zeros((cout, *x.shape[1:]))
    for o in range(cout):
        for i in range(cin):
            out[o] += ndimage.correlate(x[i], weight[o, i], mode="constant", cval=0.0)
    return out


def test_mafu_equals_its_formula_on_a_hand_built_input():
    rng = np.random.default_rng(3)
    channels = 2
    mafu = MAFU(channels)
    with torch.no_grad():
        for conv in (mafu.branch1, mafu.branch3, mafu.branch_dilated, mafu.fuse):
            conv.weight.copy_(torch.from_numpy(rng.normal(0, 0.5, conv.weight.shape)))
        mafu.fuse.bias.copy_(torch.tensor([0.3, -0.2]))
        for bn in (mafu.bn1, mafu.bn3, mafu.bn_dilated):
            bn.running_mean.copy_(torch.tensor(rng.normal(0, 0.2, channels)))
            bn.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, channels)))
            bn.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, channels)))
            bn.bias.copy_(torch.tensor(rng.normal(0, 0.2, channels)))
    mafu.eval()
    f = np.zeros((channels, 7, 6, 5))
    f[0, 1:5, 2:4, 1:4] = 1.0  # a block in channel 0
    f[1, 3, 3, 2] = -2.0  # a single negative voxel in channel 1
    f[1, 5, 0, 4] = 1.5
    with torch.no_grad():
        got = mafu(torch.from_numpy(f[None]).float())[0].double().numpy()

    w = lambda conv: conv.weight.detach().double().numpy()  # noqa: E731
    a = np.concatenate(
        [
            _bn_eval(_conv(f, w(mafu.branch1)), mafu.bn1),
            _bn_eval(_conv(f, w(mafu.branch3)), mafu.bn3),
            _bn_eval(_conv(f, w(mafu.branch_dilated), dilation=2), mafu.bn_dilated),
        ]
    )
    a = np.maximum(a, 0)
    z = _conv(a, w(mafu.fuse)) + mafu.fuse.bias.detach().numpy()[:, None, None, None]
    expected = f / (1 + np.exp(-z)) + f
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the residual form: where f is 0 the output is 0, and the gate keeps |out| between |f| and 2|f|
    assert np.all(got[f == 0] == 0)
    assert np.all(np.abs(got) >= np.abs(f) - 1e-6) and np.all(np.abs(got) <= 2 * np.abs(f) + 1e-6)
