"""Structured pruning on models Chassis did not define: the graph decides what can shrink.

The exactness tests zero the weakest outputs of each prunable layer by hand (weights, bias
and the batch norm's scale and shift), so removing exactly those must leave every
prediction unchanged: any misplaced index (a wrong column after a flatten, a batch norm
sliced out of step) shows up as a different output.
"""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from chassis.compression.measure import onnx_parameter_count
from chassis.compression.prune import PrunedModel, prunable_groups, prune_structured
from chassis.errors import CompressionError
from chassis.models import Standardized
from chassis.onnx_export import export_onnx
from chassis.runtime import create_session

N_FEATURES = 64


def raw_features(rows: int = 16) -> torch.Tensor:
    return torch.rand(rows, N_FEATURES, generator=torch.Generator().manual_seed(0)) * 16


class PixelCNN(nn.Module):
    """64 raw features seen as an 8x8 image: conv, batch norm, pool, flatten, two Linears."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.head = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        x = self.pool(torch.relu(self.norm(self.conv(x))))
        return self.head(torch.relu(self.fc(self.flatten(x))))


class SignalCNN(nn.Module):
    """Conv1d twice, then the `x.view(x.size(0), -1)` idiom into a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv1d(1, 6, kernel_size=5, padding=2)
        self.second = nn.Conv1d(6, 4, kernel_size=3, stride=2, padding=1)
        self.head = nn.Linear(4 * 32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.first(x.unsqueeze(1)))
        x = nn.functional.relu(self.second(x))
        return self.head(x.view(x.size(0), -1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(N_FEATURES, 32)
        self.inner = nn.Linear(32, 24)
        self.outer = nn.Linear(24, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.outer(torch.relu(self.inner(h)))  # stem and outer feed the sum
        return self.head(h)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(N_FEATURES, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # Python control flow on values: torch.fx cannot trace it
            x = x * 2
        return self.b(torch.relu(self.a(x)))


def silence_weakest(layer: Any, count: int, norm: Any = None) -> None:
    """Zero the first `count` outputs of `layer` so they carry nothing and weigh least."""
    with torch.no_grad():
        layer.weight[:count] = 0
        if layer.bias is not None:
            layer.bias[:count] = 0
        if norm is not None:
            norm.weight[:count] = 0
            norm.bias[:count] = 0


def trained_statistics(model: nn.Module) -> nn.Module:
    """Give batch norms non-trivial running statistics, then freeze them."""
    model.train()
    with torch.no_grad():
        model(raw_features(64))
    return model.eval()


def prune_half_exactly(model: nn.Module) -> PrunedModel:
    """Prune half of every prunable layer; its outputs must not move (see the module doc)."""
    x = raw_features()
    with torch.no_grad():
        expected = model(x)
    result = prune_structured(model, 0.5, x)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), expected, rtol=1e-5, atol=1e-5)
    return result


def test_a_plain_sequential_like_the_readme_example_is_pruned_and_shrinks(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)
    ).eval()
    wrapped = Standardized(model, torch.full((N_FEATURES,), 8.0), torch.full((N_FEATURES,), 4.0))
    result = prune_structured(wrapped, 0.5, raw_features())
    assert result.widths_before == {"model.0": 32}
    assert result.widths_after == {"model.0": 16}
    assert isinstance(result.module, Standardized)  # the user's classes survive
    wrapped_model: Any = result.module.model  # layers reached by index and name
    assert wrapped_model[3].in_features == 16
    before = export_onnx(wrapped, N_FEATURES, tmp_path / "before.onnx")
    after = export_onnx(result.module, N_FEATURES, tmp_path / "after.onnx")
    assert after.stat().st_size < before.stat().st_size
    # 64*16+16 + 16*10+10 weights instead of 64*32+32 + 32*10+10 (plus the scaler's 128)
    assert onnx_parameter_count(after) == 1210 + 128
    assert onnx_parameter_count(before) == 2410 + 128
    session = create_session(after)
    (logits,) = session.run(None, {"features": raw_features(3).numpy()})
    assert isinstance(logits, np.ndarray) and logits.shape == (3, 10)


def test_a_cnn_with_batch_norm_pool_and_flatten_loses_exactly_its_silent_channels():
    torch.manual_seed(1)
    model: Any = trained_statistics(PixelCNN())
    silence_weakest(model.conv, 4, model.norm)
    silence_weakest(model.fc, 8)
    result = prune_half_exactly(model)
    assert result.widths_after == {"conv": 4, "fc": 8}
    pruned: Any = result.module
    assert pruned.norm.num_features == 4
    assert pruned.fc.in_features == 4 * 16  # four channels of 4x4 after the pool
    assert model.conv.out_channels == 8  # the original is untouched


def test_conv1d_through_a_size_view_idiom_keeps_the_right_columns():
    torch.manual_seed(2)
    model: Any = SignalCNN().eval()
    silence_weakest(model.first, 3)
    silence_weakest(model.second, 2)
    result = prune_half_exactly(model)
    assert result.widths_after == {"first": 3, "second": 2}
    pruned: Any = result.module
    assert pruned.head.in_features == 2 * 32


def test_layers_feeding_a_residual_sum_keep_their_width():
    model = Residual().eval()
    groups = prunable_groups(model, raw_features())
    assert [(g.producer, g.consumer) for g in groups] == [("inner", "outer")]
    result = prune_structured(model, 0.25, raw_features())
    assert result.widths_after == {"inner": 18}
    pruned: Any = result.module
    assert pruned.stem.out_features == 32 and pruned.outer.out_features == 32
    assert result.module(raw_features(2)).shape == (2, 5)


def test_fraction_zero_changes_nothing():
    model = trained_statistics(PixelCNN())
    x = raw_features()
    result = prune_structured(model, 0.0, x)
    assert result.widths_after == result.widths_before
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), model(x))


def test_a_model_torch_fx_cannot_trace_is_refused_by_name():
    with pytest.raises(CompressionError, match=r"torch\.fx.*DataDependent"):
        prune_structured(DataDependent(), 0.5, raw_features())


def test_a_model_with_nothing_to_narrow_is_refused():
    with pytest.raises(CompressionError, match="Linear has no layer that structured pruning"):
        prune_structured(nn.Linear(N_FEATURES, 3), 0.5, raw_features())


def test_an_example_batch_the_model_cannot_take_is_named():
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(CompressionError, match=r"example batch of shape \(16, 64\)"):
        prune_structured(model, 0.5, raw_features())


def test_grouped_convolutions_are_left_alone():
    model = nn.Sequential(
        nn.Unflatten(1, (4, 16)),
        nn.Conv1d(4, 8, 3, groups=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3),
        nn.Flatten(),
        nn.Linear(8 * 12, 2),
    ).eval()
    groups = prunable_groups(model, raw_features())
    assert [(g.producer, g.consumer, g.flattened) for g in groups] == [("3", "5", 12)]
