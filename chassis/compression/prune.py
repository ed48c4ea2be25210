"""Structured pruning of any traceable PyTorch classifier: the pruned model is physically smaller.

Masking weights to zero leaves an ONNX file of the same size and speed. Removing a neuron
(or a convolution filter) deletes one row of its layer and the matching input column of
the layer that reads it, so the exported graph has smaller matrices.

Which layers can lose outputs is read from the model's graph (torch.fx), not from its
class: a Linear or Conv layer whose output reaches exactly one other Linear or Conv layer
through channel-wise operations only (activations, dropout, pooling, batch norm, a flatten
into a Linear). The last layer, a layer feeding a residual sum or a concatenation, and
layers shared between call sites keep their width; pruning them would change the model's
output shape or break the sum.
"""

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from chassis import progress
from chassis.errors import CompressionError

PrunableLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# Operations that act on each channel independently, so a removed channel changes nothing
# for the others. Their extra arguments may only be constants (a slope, a kernel size).
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_CHANNELWISE_FUNCTIONS: frozenset[Callable[..., object]] = frozenset(
    {
        torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu,
        F.mish, torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh, F.hardswish,
        F.hardsigmoid, F.softplus, torch.clamp, F.dropout, F.dropout1d, F.dropout2d,
        F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
        operator.add, operator.sub, operator.mul, operator.truediv,  # with a constant only
    }
)  # fmt: skip
_CHANNELWISE_METHODS = frozenset({"relu", "sigmoid", "tanh", "clamp", "contiguous"})
_FLATTENS = frozenset({"flatten", "view", "reshape"})


@dataclass(frozen=True)
class PruningGroup:
    """One layer that loses outputs, the layer that reads them, and what lies between."""

    producer: str  # qualified module name
    consumer: str
    # Batch norms on the way, each with its inputs per producer output (1 before a flatten).
    norms: tuple[tuple[str, int], ...]
    flattened: int  # consumer inputs per producer output (1 unless a flatten lies between)


@dataclass(frozen=True)
class PrunedModel:
    module: nn.Module
    widths_before: dict[str, int] = field(default_factory=dict)  # pruned layer -> outputs
    widths_after: dict[str, int] = field(default_factory=dict)


def prune_structured(module: nn.Module, fraction: float, example: torch.Tensor) -> PrunedModel:
    """A smaller copy of `module` with `fraction` of each prunable layer's outputs removed.

    The outputs kept are those with the largest L1 norm of incoming weights; at least one
    survives per layer. `example` is a small float32 batch of raw features, used to learn
    the tensor shapes inside the model (needed where a flatten feeds a Linear layer). The
    copy has the same class and forward code; only its layers are narrower.
    """
    if not 0.0 <= fraction < 1.0 or np.isnan(fraction):
        raise CompressionError(f"prune fraction must be in [0, 1), got {fraction}")
    model = copy.deepcopy(module).eval()
    groups = prunable_groups(model, example)
    if not groups:
        raise CompressionError(
            f"{type(module).__name__} has no layer that structured pruning can narrow: it "
            "needs a Linear or Conv layer whose output feeds exactly one other Linear or Conv "
            "layer through channel-wise operations only"
        )
    with torch.no_grad():
        expected = model(example)
    keep_out: dict[str, torch.Tensor] = {}
    keep_in: dict[str, torch.Tensor] = {}
    keep_norm: dict[str, torch.Tensor] = {}
    for group in groups:
        kept = strongest_outputs(model.get_submodule(group.producer), fraction)
        keep_out[group.producer] = kept
        for norm, per_output in group.norms:
            keep_norm[norm] = _expand(kept, per_output)
        keep_in[group.consumer] = _expand(kept, group.flattened)
    widths_before = {name: len(_output_rows(model.get_submodule(name))) for name in keep_out}
    for name in keep_out.keys() | keep_in.keys():
        layer = model.get_submodule(name)
        model.set_submodule(name, _narrowed_layer(layer, keep_out.get(name), keep_in.get(name)))
    for name, kept in keep_norm.items():
        model.set_submodule(name, _narrowed_norm(model.get_submodule(name), kept))
    with torch.no_grad():
        produced = model(example)
    if produced.shape != expected.shape:  # a graph this module misread; never ship it
        raise CompressionError(
            f"pruning changed the output shape from {tuple(expected.shape)} to "
            f"{tuple(produced.shape)}; {type(module).__name__} is left unpruned"
        )
    widths_after = {name: len(kept) for name, kept in keep_out.items()}
    return PrunedModel(model.eval(), widths_before, widths_after)


def prunable_groups(module: nn.Module, example: torch.Tensor) -> list[PruningGroup]:
    """Every Linear/Conv layer of `module` that can lose outputs, in graph order."""
    try:
        graph = torch.fx.symbolic_trace(module)
    except Exception as error:  # fx raises many kinds for untraceable Python
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise CompressionError(
            f"structured pruning reads the model's graph with torch.fx, which cannot trace "
            f"{type(module).__name__}: {type(error).__name__}: {first_line}"
        ) from None
    try:
        ShapeProp(graph).propagate(example)
    except Exception as error:
        raise CompressionError(
            f"{type(module).__name__} failed on an example batch of shape "
            f"{tuple(example.shape)}: {type(error).__name__}: {error}"
        ) from None
    calls = _module_call_counts(graph)
    groups: list[PruningGroup] = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        if _is_prunable_layer(graph.get_submodule(node.target)):
            group = _follow_outputs(graph, node, calls)
            if group is not None:
                groups.append(group)
    return groups


def strongest_outputs(layer: nn.Module, fraction: float) -> torch.Tensor:
    """Indices (sorted) of the outputs with the largest L1 norm of incoming weights."""
    rows = _output_rows(layer)
    keep = max(1, round(len(rows) * (1.0 - fraction)))
    norms = rows.detach().abs().flatten(1).sum(dim=1)
    return torch.sort(torch.topk(norms, keep).indices).values


def _output_rows(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _is_prunable_layer(layer: nn.Module) -> bool:
    return isinstance(layer, PrunableLayer) and getattr(layer, "groups", 1) == 1


def _module_call_counts(graph: torch.fx.GraphModule) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _is_shape_read(node: object) -> bool:
    """`x.size(0)`, `x.shape[0]`, `x.dim()`: reads of a tensor's shape, not of its values."""
    if not isinstance(node, torch.fx.Node):
        return False
    if node.op == "call_method" and node.target in {"size", "dim"}:
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "shape"
    if node.op == "call_function" and node.target is operator.getitem:
        return _is_shape_read(node.args[0])
    return False


def _value_users(node: torch.fx.Node) -> list[torch.fx.Node]:
    return [user for user in node.users if not _is_shape_read(user)]


def _only_input_is(node: torch.fx.Node, source: torch.fx.Node) -> bool:
    """`node` reads `source` as its first argument and no other tensor values."""
    if not node.args or node.args[0] is not source:
        return False
    others = [*node.args[1:], *node.kwargs.values()]
    flat = [
        item for value in others for item in (value if isinstance(value, tuple | list) else [value])
    ]
    return not any(isinstance(value, torch.fx.Node) and not _is_shape_read(value) for value in flat)


def _module_name(node: torch.fx.Node) -> str:
    """The qualified module name a `call_module` node calls (fx types targets as str or
    callable: only call_function nodes hold a callable)."""
    assert isinstance(node.target, str), node
    return node.target


def _step_kind(graph: torch.fx.GraphModule, step: torch.fx.Node) -> str | None:
    """ "layer", "norm", "flatten" or "channelwise" for a node on a producer's path, else None."""
    if step.op == "call_module":
        layer = graph.get_submodule(_module_name(step))
        if _is_prunable_layer(layer):
            return "layer"
        if isinstance(layer, _NORMS):
            return "norm"
        if isinstance(layer, nn.Flatten):
            return "flatten"
        if isinstance(layer, nn.PReLU) and layer.num_parameters != 1:
            return None  # one slope per channel would need narrowing too
        return "channelwise" if isinstance(layer, _CHANNELWISE_MODULES) else None
    if step.op == "call_function":
        if step.target is torch.flatten:
            return "flatten"
        return "channelwise" if step.target in _CHANNELWISE_FUNCTIONS else None
    if step.op == "call_method":
        if step.target in _FLATTENS:
            return "flatten"
        return "channelwise" if step.target in _CHANNELWISE_METHODS else None
    return None


def _follow_outputs(
    graph: torch.fx.GraphModule, producer: torch.fx.Node, calls: dict[str, int]
) -> PruningGroup | None:
    """Walk from `producer` to the one layer that reads its outputs, or None if there is none."""
    produced = _shape(producer)
    if produced is None:
        return None
    linear = isinstance(graph.get_submodule(_module_name(producer)), nn.Linear)
    # Where the producer's outputs sit in the tensor: last dimension for Linear, 1 for Conv.
    channel_dim = len(produced) - 1 if linear else 1
    norms: list[tuple[str, int]] = []
    flattened = 1
    current = producer
    while True:
        users = _value_users(current)
        if len(users) != 1 or not _only_input_is(users[0], current):
            return None  # read twice (a residual, a concat) or combined with another tensor
        step = users[0]
        shape_in, shape_out = _shape(current), _shape(step)
        kind = _step_kind(graph, step)
        if shape_in is None or shape_out is None or kind is None:
            return None
        if kind == "layer":
            if calls[_module_name(step)] != 1:
                return None
            reads_channels_last = isinstance(graph.get_submodule(_module_name(step)), nn.Linear)
            expected_dim = len(shape_in) - 1 if reads_channels_last else 1
            if channel_dim != expected_dim or (flattened > 1 and not reads_channels_last):
                return None
            return PruningGroup(_module_name(producer), _module_name(step), tuple(norms), flattened)
        if kind == "norm":
            if calls[_module_name(step)] != 1 or channel_dim != 1:
                return None
            norms.append((_module_name(step), flattened))

        elif kind == "flatten" and shape_in != shape_out:  # an unchanged view is a no-op
            flat = _flatten_step(shape_in, shape_out, channel_dim, flattened)
            if flat is None:
                return None
            flattened, channel_dim = flat
        elif shape_in != shape_out and step.target in {operator.add, operator.sub}:
            return None  # a constant broadcast into new dimensions
        if len(shape_out) <= channel_dim:
            return None
        current = step


def _flatten_step(
    shape_in: tuple[int, ...], shape_out: tuple[int, ...], channel_dim: int, flattened: int
) -> tuple[int, int] | None:
    """(inputs per channel, new channel dim) for a (N, C, *S) -> (N, C * prod(S)) flatten."""
    if flattened > 1 or channel_dim != 1 or len(shape_out) != 2 or shape_out[0] != shape_in[0]:
        return None
    per_channel = math.prod(shape_in[2:])
    if shape_out[1] != shape_in[1] * per_channel:
        return None
    return per_channel, 1


def _expand(kept: torch.Tensor, per_channel: int) -> torch.Tensor:
    """Indices of the flattened inputs that belong to the kept channels (channel-major)."""
    if per_channel == 1:
        return kept
    offsets = torch.arange(per_channel)
    return (kept[:, None] * per_channel + offsets[None, :]).flatten()


def _narrowed_layer(
    layer: nn.Module, rows: torch.Tensor | None, columns: torch.Tensor | None
) -> nn.Module:
    weight = _output_rows(layer).detach()
    layer_bias = getattr(layer, "bias", None)
    bias = layer_bias.detach() if isinstance(layer_bias, torch.Tensor) else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if columns is not None:
        weight = weight[:, columns]
    out_width, in_width = weight.shape[0], weight.shape[1]
    kind: dict[str, Any] = dict(device=weight.device, dtype=weight.dtype)
    if isinstance(layer, nn.Linear):
        narrowed: nn.Module = nn.Linear(in_width, out_width, bias=bias is not None, **kind)
    else:
        assert isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        # The layer's own sizes: torch types them tuple[int, ...] on every Conv, while each
        # constructor wants a tuple of its own length.
        sizes: dict[str, Any] = dict(
            kernel_size=layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
        )
        narrowed = type(layer)(
            in_width,
            out_width,
            groups=1,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
            **sizes,
            **kind,
        )

    with torch.no_grad():
        narrowed.weight.copy_(weight)
        if bias is not None:
            cast(torch.Tensor, narrowed.bias).copy_(bias)  # built with bias=True above

    return narrowed.train(layer.training)


def _narrowed_norm(norm: nn.Module, kept: torch.Tensor) -> nn.Module:
    assert isinstance(norm, _NORMS)
    narrowed = type(norm)(
        len(kept),
        eps=norm.eps,
        momentum=norm.momentum,
        affine=norm.affine,
        track_running_stats=norm.track_running_stats,
        device=kept.device,
    )
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source = getattr(norm, name, None)
            if isinstance(source, torch.Tensor):
                getattr(narrowed, name).copy_(source[kept])
        if norm.num_batches_tracked is not None and narrowed.num_batches_tracked is not None:
            narrowed.num_batches_tracked.copy_(norm.num_batches_tracked)
    return narrowed.train(norm.training)


def fine_tune(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """A few epochs on the training split to recover what pruning cost: cross-entropy on
    class labels unless `loss_fn` (outputs, targets -> loss) says otherwise."""
    if epochs <= 0:
        return module.eval()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    with progress.track("fine-tuning the pruned model", total=epochs, unit="epochs") as bar:
        for _ in range(epochs):
            module.train()
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                if len(batch) < 2:  # batch norm cannot train on one row
                    continue
                optimizer.zero_grad()
                loss_fn(module(inputs[batch]), targets[batch]).backward()
                optimizer.step()
            bar.advance()
    return module.eval()
