"""The stage-2 network: a multi-scale 3D U-Net whose skip connections pass through MAFU attention units.

Architecture (paper section 1.3):

* Encoder of 4 resolution levels. Each level is two blocks of 3x3x3 conv + BatchNorm + ReLU; a 2x2x2 max-pool
  with stride 2 goes between levels. Widths are ``base, 2*base, 4*base, 8*base``.
* Decoder, for each of the 3 upper levels: 2x2x2 transposed conv with stride 2, concatenation with MAFU(skip),
  then two 3x3x3 conv + BatchNorm + ReLU blocks.
* A 1x1x1 conv to 4 output classes: 0 background, 1 top (the vertebra above the centre one), 2 centre,
  3 bottom. The network returns logits; softmax is applied by :class:`~spineinstanceseg.stage2.model.Stage2Model`.

MAFU (multi-scale attention fusion unit) on a feature map ``f``::

    a = ReLU(concat(BN(conv1x1x1(f)), BN(conv3x3x3(f)), BN(conv3x3x3_dilation2(f))))
    MAFU(f) = f * sigmoid(conv1x1x1(a)) + f

Tensors are ``(batch, channels, X, Y, Z)``. Any spatial size works: inputs whose sizes are not multiples of 8
(three poolings) are zero-padded at the high end internally and the output is cropped back, so the output
always has the input's spatial size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAFU", "MultiScaleUNet3D", "NUM_CLASSES", "CLASS_NAMES", "count_parameters"]

NUM_CLASSES = 4
CLASS_NAMES: tuple[str, ...] = ("background", "top", "centre", "bottom")
_LEVELS = 4
_DIVISOR = 2 ** (_LEVELS - 1)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    # bias is redundant before BatchNorm
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


def _double_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv_block(cin, cout), _conv_block(cout, cout))


class MAFU(nn.Module):
    """Multi-scale attention fusion unit; output has the shape of its input ``(B, C, X, Y, Z)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch1 = nn.Conv3d(channels, channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.branch3 = nn.Conv3d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(channels)
        self.branch_dilated = nn.Conv3d(channels, channels, kernel_size=3, padding=2, dilation=2, bias=False)
        self.bn_dilated = nn.BatchNorm3d(channels)
        self.fuse = nn.Conv3d(3 * channels, channels, kernel_size=1, bias=True)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        a = torch.cat(
            (self.bn1(self.branch1(f)), self.bn3(self.branch3(f)), self.bn_dilated(self.branch_dilated(f))), dim=1
        )
        gate = torch.sigmoid(self.fuse(F.relu(a)))
        return f * gate + f


class _UpLevel(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2)
        self.attention = MAFU(cout)
        self.convs = _double_block(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat((self.up(x), self.attention(skip)), dim=1))


class MultiScaleUNet3D(nn.Module):
    """4-level 3D U-Net with MAFU skips.

    Args:
        in_channels: Input channels (one per mask class, plus one for the optional image).
        base_width: Feature channels of the first level (doubled at each of the 3 lower levels).
        num_classes: Output classes (4: background, top, centre, bottom).

    ``forward(x)`` takes ``(B, in_channels, X, Y, Z)`` and returns logits ``(B, num_classes, X, Y, Z)``.
    """

    def __init__(self, in_channels: int, *, base_width: int = 16, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if in_channels < 1 or base_width < 1 or num_classes < 2:
            raise ValueError("in_channels and base_width must be >= 1 and num_classes >= 2")
        widths = [base_width * 2**level for level in range(_LEVELS)]
        self.in_channels = in_channels
        self.base_width = base_width
        self.num_classes = num_classes
        self.encoders = nn.ModuleList(
            _double_block(cin, cout) for cin, cout in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.decoders = nn.ModuleList(_UpLevel(widths[i + 1], widths[i]) for i in reversed(range(_LEVELS - 1)))
        self.head = nn.Conv3d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-3:]
        pad = [(-s) % _DIVISOR for s in size]
        if any(pad):
            # F.pad takes (last-axis low, last-axis high, ...): pad only the high ends so cropping is a slice
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = decoder(x, skip)
        out = self.head(x)
        return out[..., : size[0], : size[1], : size[2]]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
