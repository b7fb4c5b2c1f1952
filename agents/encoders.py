"""Observation encoders and the config fields every agent shares.

The encoder follows the observation (:func:`make_encoder`): a ResNet for grid windows
``(C, H, W)``, an MLP for vectors ``(F,)`` such as T-Maze's.

The grid encoder is the Follower / SRMT ResNet (reference/srmt.md §3):

    Conv3x3(C -> F) -> n x ResBlock(ReLU, Conv3x3, ReLU, Conv3x3, + identity) -> ReLU
        -> flatten -> Linear(F*m*m -> D) -> ReLU

Bottleneck: C=3, m=5, F=8, n=1, D=16 (4,608 parameters); LMAPF: m=11, F=64, n=8, D=512.

The vector encoder is ``Linear(F -> D) -> ReLU -> Linear(D -> D) -> ReLU`` (``filters`` and
``res_blocks`` do not apply to it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import torch
from torch import nn

from memarl.configs import Range, validate_fields
from memarl.errors import MemarlError


@dataclasses.dataclass
class EncoderConfig:
    """Encoder fields shared by every agent config (subclasses add their core's fields)."""

    d_model: Annotated[int, Range(1, 65_536)] = 16
    """model width D: size of the encoder output and of everything the core works with"""
    filters: Annotated[int, Range(1, 4096)] = 8
    """convolution filters F of the ResNet encoder (grid observations only)"""
    res_blocks: Annotated[int, Range(0, 256)] = 1
    """number of residual blocks of the ResNet encoder, 0 = the first convolution only (grid
    observations only)"""

    def __post_init__(self) -> None:
        validate_fields(self, label=lambda name: f"agent option {name}")


def require(condition: bool, message: str) -> None:
    """Raise a one-line :class:`MemarlError` when ``condition`` is false."""
    if not condition:
        raise MemarlError(message)


def orthogonal_init(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Orthogonal weights with ``gain`` and zero biases (Conv2d / Linear)."""
    nn.init.orthogonal_(module.weight, gain=gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


class ResBlock(nn.Module):
    """ReLU -> Conv3x3 -> ReLU -> Conv3x3, plus the identity (pre-activation residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        gain = math.sqrt(2.0)
        self.conv1 = orthogonal_init(nn.Conv2d(channels, channels, 3, padding=1), gain)
        self.conv2 = orthogonal_init(nn.Conv2d(channels, channels, 3, padding=1), gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, F, m, m]
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class ResNetEncoder(nn.Module):
    """Encode one agent's observation ``[B, C, H, W]`` to a vector ``[B, out_dim]``.

    Orthogonal initialisation with gain sqrt(2) (ReLU), zero biases. Any observation dtype is
    accepted and cast to the parameters' dtype.
    """

    def __init__(self, obs_shape: tuple[int, int, int], filters: int, res_blocks: int,
                 out_dim: int):
        super().__init__()
        require(len(obs_shape) == 3, f"obs_shape must be (C, H, W), got {tuple(obs_shape)}")
        channels, height, width = (int(s) for s in obs_shape)
        self.obs_shape = (channels, height, width)
        gain = math.sqrt(2.0)
        self.conv = orthogonal_init(nn.Conv2d(channels, filters, 3, padding=1), gain)
        self.blocks = nn.Sequential(*[ResBlock(filters) for _ in range(res_blocks)])
        self.fc = orthogonal_init(nn.Linear(filters * height * width, out_dim), gain)
        self.out_dim = out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.fc.weight.dtype)                     # [B, C, H, W]
        x = torch.relu(self.blocks(self.conv(x)))            # [B, F, H, W]
        return torch.relu(self.fc(x.flatten(1)))             # [B, D]


class MLPEncoder(nn.Module):
    """Encode a vector observation ``[B, F]`` to ``[B, out_dim]``: two ReLU layers,
    orthogonal weights with gain sqrt(2), zero biases."""

    def __init__(self, obs_shape: tuple[int], out_dim: int):
        super().__init__()
        require(len(obs_shape) == 1, f"obs_shape must be (F,), got {tuple(obs_shape)}")
        self.obs_shape = (int(obs_shape[0]),)
        gain = math.sqrt(2.0)
        self.fc1 = orthogonal_init(nn.Linear(self.obs_shape[0], out_dim), gain)
        self.fc2 = orthogonal_init(nn.Linear(out_dim, out_dim), gain)
        self.out_dim = out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.fc1.weight.dtype)                    # [B, F]
        return torch.relu(self.fc2(torch.relu(self.fc1(x))))  # [B, D]


def make_encoder(obs_shape: tuple[int, ...], config: EncoderConfig) -> nn.Module:
    """The encoder for observations of ``obs_shape``: ResNet for ``(C, H, W)``, MLP for ``(F,)``."""
    if len(obs_shape) == 3:
        return ResNetEncoder(tuple(obs_shape), config.filters, config.res_blocks, config.d_model)
    if len(obs_shape) == 1:
        return MLPEncoder(tuple(obs_shape), config.d_model)
    raise MemarlError(f"no encoder for observations of shape {tuple(obs_shape)}: "
                      f"expected (C, H, W) grid windows or (F,) vectors")
