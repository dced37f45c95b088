"""ResNet18 trunk shared by the audio and visual extractors (no torchvision: its weights cannot be fetched here).

He et al. 2016, BasicBlock layout [2, 2, 2, 2]. `width` scales every stage so the same network runs
at paper size (64) or small enough for a shared 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ResNetConfig:
    in_channels: int = 3
    """1 for a mel-spectrogram, 3 for RGB."""
    width: int = 64
    """Channels of the first stage; stages use width x (1, 2, 4, 8). 64 is torchvision's ResNet18."""
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    """BasicBlocks per stage; (2, 2, 2, 2) is ResNet18."""
    stem_stride: int = 2
    """Stride of the 7x7 stem conv; the max-pool after it halves again."""

    @property
    def out_channels(self) -> int:
        return self.width * 8


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """Stem + four stages; returns the last feature map (B, 8 * width, H / 32, W / 32) without pooling,
    so each extractor chooses how to pool (the audio one keeps frequency, the visual one does not)."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 7, config.stem_stride, 3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages = []
        in_ch = w
        for index, count in enumerate(config.blocks):
            out_ch = w * 2**index
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(in_ch, out_ch, stride)] + [
                BasicBlock(out_ch, out_ch, 1) for _ in range(count - 1)
            ]
            stages.append(nn.Sequential(*layers))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each block so every block starts as identity (Goyal et al. 2017):
        # trains faster from scratch, which is all we can do without pretrained weights.
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))
