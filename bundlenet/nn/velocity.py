"""The velocity field of a flow-matching model and its adapter for ``flow_matching``'s solver."""

from __future__ import annotations

from typing import Any

import torch
from flow_matching.utils import ModelWrapper
from torch import Tensor, nn

from bundlenet.errors import InputError


class VelocityField(nn.Module):
    """``v(x_t, t, c)``: a SiLU MLP on ``[x_t, c, t]`` → ``[N, d]`` (``depth`` hidden layers of
    width ``hidden_features``)."""

    def __init__(self, dim: int, context_features: int, hidden_features: int, depth: int) -> None:
        super().__init__()
        if int(depth) < 1:
            raise InputError(
                f"the velocity MLP needs at least 1 hidden layer (model.depth of cfm, model.velocity_depth of bundlenet), got {depth}"
            )
        layers: list[nn.Module] = [nn.Linear(dim + context_features + 1, hidden_features), nn.SiLU()]
        for _ in range(int(depth) - 1):
            layers += [nn.Linear(hidden_features, hidden_features), nn.SiLU()]
        layers.append(nn.Linear(hidden_features, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
        t = t.reshape(-1, 1).to(x).expand(x.shape[0], 1)
        return self.net(torch.cat([x, context, t], dim=1))


class Conditioned(ModelWrapper):
    """The velocity field as the ``flow_matching`` solver calls it: ``(x, t, **extras)``."""

    def forward(self, x: Tensor, t: Tensor, **extras: Any) -> Tensor:
        return self.model(x, t, extras["context"])
