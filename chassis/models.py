"""Building blocks for bundled specs and for users who want a plain MLP classifier."""

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn


class MLP(nn.Module):
    """A feed-forward classifier: Linear -> ReLU (-> Dropout) blocks, then a Linear head.

    Hidden blocks are kept in `self.hidden` as Linear layers so structured pruning can remove
    whole neurons (rows of one layer and the matching columns of the next).
    """

    def __init__(
        self, n_features: int, n_classes: int, hidden: Sequence[int], dropout: float = 0.0
    ) -> None:
        super().__init__()
        sizes = [n_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.dropout(torch.relu(layer(x)))
        return self.head(x)


class Standardized(nn.Module):
    """Standardizes raw features with statistics frozen from the training split.

    Baking the scaler into the module means the exported ONNX graph takes raw features, so
    serving needs no preprocessing code that could drift from training.
    """

    # Buffers, declared for the checker: nn.Module serves them through __getattr__.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:

        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.to(torch.float32))
        # A constant column has std 0; dividing by 1 leaves it centred instead of infinite.
        self.register_buffer("std", torch.where(std > 0, std, torch.ones_like(std)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


class ScaledOutput(nn.Module):
    """Turns a regressor's standardized output back into target units, with the target's
    training mean and standard deviation frozen in.

    Training fits the standardized target (a unit-scale loss whatever the target's units);
    baking the inverse into the module means the exported ONNX graph outputs raw values.
    """

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("target_mean", mean.to(torch.float32).reshape(1))
        self.register_buffer(
            "target_std", torch.where(std > 0, std, torch.ones_like(std)).float().reshape(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.target_std + self.target_mean
