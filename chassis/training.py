"""Trains a spec's model with fixed seeds, keeping the weights of the best validation epoch."""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from chassis.data import class_count, features, labels
from chassis.errors import SpecError
from chassis.models import Standardized
from chassis.modelspec import Dataset, ModelBuilder, TrainingConfig

EpochCallback = Callable[[int, float, float], None]


@dataclass
class TrainedModel:
    """A trained classifier that takes raw features and returns logits."""

    module: nn.Module
    n_features: int
    n_classes: int
    best_epoch: int
    best_validation_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_module(builder: ModelBuilder, n_features: int, n_classes: int, what: str) -> nn.Module:
    try:
        module = builder(n_features, n_classes)
    except Exception as error:
        raise SpecError(f"{what}({n_features}, {n_classes}) failed: {error}") from error
    # Checked at run time too: the builder is the user's code.
    if not isinstance(module, nn.Module):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise SpecError(f"{what} must return a torch.nn.Module, got {type(module).__name__}")
    return module


def predict_logits(module: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    module.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outputs.append(module(torch.from_numpy(x[start : start + batch_size])).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def train_classifier(
    builder: ModelBuilder,
    dataset: Dataset,
    config: TrainingConfig,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Cross-entropy training with Adam; returns the best-validation-accuracy weights."""
    seed_everything(config.seed)
    x_train, y_train = features(dataset.train, dataset), labels(dataset.train, dataset)
    x_val, y_val = features(dataset.validation, dataset), labels(dataset.validation, dataset)
    n_features, n_classes = x_train.shape[1], class_count(dataset)

    base = build_module(builder, n_features, n_classes, "build_model")
    train_tensor = torch.from_numpy(x_train)
    module = Standardized(base, train_tensor.mean(dim=0), train_tensor.std(dim=0))
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    targets = torch.from_numpy(y_train)

    best_state, best_accuracy, best_epoch = copy.deepcopy(module.state_dict()), -1.0, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        module.train()
        order = torch.randperm(len(train_tensor), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(module(train_tensor[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
        train_loss = total_loss / len(order)
        val_accuracy = float((predict_logits(module, x_val).argmax(axis=1) == y_val).mean())
        history.append({"epoch": epoch, "train_loss": train_loss, "val_accuracy": val_accuracy})
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_accuracy)
        if val_accuracy > best_accuracy:
            best_state, best_accuracy, best_epoch = (
                copy.deepcopy(module.state_dict()),
                val_accuracy,
                epoch,
            )
    module.load_state_dict(best_state)
    module.eval()
    return TrainedModel(module, n_features, n_classes, best_epoch, best_accuracy, history)


def rebuild_classifier(
    builder: ModelBuilder, n_features: int, n_classes: int, state: dict[str, torch.Tensor]
) -> nn.Module:
    """The trained module again, from its builder and its saved state (scaler included)."""
    base = build_module(builder, n_features, n_classes, "build_model")
    module = Standardized(base, torch.zeros(n_features), torch.ones(n_features))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SpecError(
            f"saved weights do not fit build_model({n_features}, {n_classes}): "
            f"{str(error).splitlines()[0]}"
        ) from error
    return module.eval()
