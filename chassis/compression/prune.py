"""Structured pruning of MLP hidden neurons: the pruned model is physically smaller.

Masking weights to zero leaves an ONNX file of the same size and speed; removing a neuron
deletes one row of its layer and the matching column of the next layer, so the exported
graph has smaller matrices.
"""

import numpy as np
import torch
from torch import nn

from chassis.errors import CompressionError
from chassis.models import MLP, Standardized


def _mlp_of(module: nn.Module) -> tuple[MLP, Standardized | None]:
    if isinstance(module, Standardized) and isinstance(module.model, MLP):
        return module.model, module
    if isinstance(module, MLP):
        return module, None
    raise CompressionError(
        f"structured pruning supports chassis.models.MLP (optionally inside Standardized); "
        f"got {type(module).__name__}"
    )


def neurons_to_keep(layer: nn.Linear, fraction: float) -> torch.Tensor:
    """Indices (sorted) of the neurons with the largest L1 norm of incoming weights."""
    count = layer.out_features
    keep = max(1, round(count * (1.0 - fraction)))
    norms = layer.weight.detach().abs().sum(dim=1)
    return torch.sort(torch.topk(norms, keep).indices).values


def prune_mlp(module: nn.Module, fraction: float) -> nn.Module:
    """A new, smaller copy of `module` with `fraction` of each hidden layer's neurons removed.

    The scaler of a `Standardized` wrapper is kept, so the pruned model still takes raw
    features. At least one neuron per layer survives.
    """
    if not 0.0 <= fraction < 1.0 or np.isnan(fraction):
        raise CompressionError(f"prune fraction must be in [0, 1), got {fraction}")
    mlp, wrapper = _mlp_of(module)
    if len(mlp.hidden) == 0:
        raise CompressionError("the MLP has no hidden layer to prune")
    kept = [neurons_to_keep(layer, fraction) for layer in mlp.hidden]
    n_features = mlp.hidden[0].in_features
    pruned = MLP(n_features, mlp.head.out_features, [len(k) for k in kept], mlp.dropout.p)
    previous = torch.arange(n_features)
    with torch.no_grad():
        for source, target, rows in zip(mlp.hidden, pruned.hidden, kept, strict=True):
            target.weight.copy_(source.weight[rows][:, previous])
            target.bias.copy_(source.bias[rows])
            previous = rows
        pruned.head.weight.copy_(mlp.head.weight[:, previous])
        pruned.head.bias.copy_(mlp.head.bias)
    if wrapper is None:
        return pruned.eval()
    return Standardized(pruned, wrapper.mean.clone(), wrapper.std.clone()).eval()


def hidden_sizes(module: nn.Module) -> list[int]:
    mlp, _ = _mlp_of(module)
    return [layer.out_features for layer in mlp.hidden]


def fine_tune(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """A few epochs of cross-entropy on the training split to recover what pruning cost."""
    if epochs <= 0:
        return module.eval()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        module.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(module(inputs[batch]), targets[batch]).backward()
            optimizer.step()
    return module.eval()
