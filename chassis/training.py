"""Trains a spec's model with fixed seeds, keeping the weights of the best validation epoch.

A classifier learns cross-entropy and keeps its most accurate validation epoch; a
regressor learns the squared error of its standardized target and keeps its lowest
validation RMSE. Both take raw features (the feature scaler is baked in, `Standardized`);
a regressor also outputs raw target units (the target scaler is baked in, `ScaledOutput`).
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from chassis import progress
from chassis.data import class_count, features, labels, targets
from chassis.errors import SpecError
from chassis.models import ScaledOutput, Standardized
from chassis.modelspec import Dataset, ModelBuilder, TrainingConfig
from chassis.runtime import batch_rows
from chassis.task import CLASSIFICATION, REGRESSION, Task

EpochCallback = Callable[[int, float, float], None]

# The validation metric each task keeps its best epoch on, and its history key is val_<it>.
VALIDATION_METRIC: dict[Task, str] = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}


@dataclass
class TrainedModel:
    """A trained model that takes raw features and returns logits (classifier) or the
    predicted value in target units, shape [batch, 1] (regressor)."""

    module: nn.Module
    n_features: int
    n_outputs: int
    best_epoch: int
    best_validation: float  # VALIDATION_METRIC[task] of the kept epoch
    history: list[dict[str, float]] = field(default_factory=list)
    task: Task = CLASSIFICATION

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def n_classes(self) -> int | None:
        return self.n_outputs if self.task == CLASSIFICATION else None

    @property
    def validation_metric(self) -> str:
        return VALIDATION_METRIC[self.task]

    @property
    def best_validation_accuracy(self) -> float:
        if self.task != CLASSIFICATION:
            raise AttributeError("a regressor has no validation accuracy; see best_validation")
        return self.best_validation


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_module(builder: ModelBuilder, n_features: int, n_outputs: int, what: str) -> nn.Module:
    try:
        module = builder(n_features, n_outputs)
    except Exception as error:
        raise SpecError(f"{what}({n_features}, {n_outputs}) failed: {error}") from error
    # Checked at run time too: the builder is the user's code.
    if not isinstance(module, nn.Module):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise SpecError(f"{what} must return a torch.nn.Module, got {type(module).__name__}")
    return module


def check_output_shape(
    module: nn.Module, x: np.ndarray, n_outputs: int, task: Task, what: str
) -> None:
    """The builder contract (chassis/task.py): [batch, n_outputs] out for [batch, n] in.
    Checked on two rows before training, so a wrong head fails naming itself instead of
    as an index error deep inside the loss."""
    module.eval()
    with torch.no_grad():
        shape = tuple(module(torch.from_numpy(x[:2])).shape)
    expected = (min(2, len(x)), n_outputs)
    if shape != expected:
        meaning = "one predicted value" if task == REGRESSION else f"{n_outputs} class logits"
        raise SpecError(
            f"{what}({x.shape[1]}, {n_outputs}) returns outputs of shape {shape} for "
            f"{expected[0]} rows; a {task} model must return [batch, {n_outputs}] ({meaning})"
        )


def predict_logits(module: nn.Module, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    batch_size = batch_size or batch_rows(x)
    module.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outputs.append(module(torch.from_numpy(x[start : start + batch_size])).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def rmse(predicted: np.ndarray, expected: np.ndarray) -> float:
    return math.sqrt(float(np.mean((predicted.reshape(-1) - expected.reshape(-1)) ** 2)))


def train_model(
    builder: ModelBuilder,
    dataset: Dataset,
    config: TrainingConfig,
    task: Task,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Train the spec's model for its task (see the module docstring)."""
    if task == REGRESSION:
        return train_regressor(builder, dataset, config, on_epoch)
    return train_classifier(builder, dataset, config, on_epoch)


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
    check_output_shape(module, x_train, n_classes, CLASSIFICATION, "build_model")
    loss_fn = nn.CrossEntropyLoss()

    def accuracy(trained: nn.Module) -> float:
        return float((predict_logits(trained, x_val).argmax(axis=1) == y_val).mean())

    return _fit(
        module,
        module,
        x_train,
        torch.from_numpy(y_train),
        loss_fn,
        accuracy,
        config,
        on_epoch,
        CLASSIFICATION,
        n_classes,
    )


def train_regressor(
    builder: ModelBuilder,
    dataset: Dataset,
    config: TrainingConfig,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Mean-squared-error training of the standardized target with Adam; returns the
    lowest-validation-RMSE weights, as a module that outputs raw target units."""
    seed_everything(config.seed)
    x_train, y_train = features(dataset.train, dataset), targets(dataset.train, dataset)
    x_val, y_val = features(dataset.validation, dataset), targets(dataset.validation, dataset)
    n_features = x_train.shape[1]

    base = build_module(builder, n_features, 1, "build_model")
    train_tensor, target_tensor = torch.from_numpy(x_train), torch.from_numpy(y_train)
    inner = Standardized(base, train_tensor.mean(dim=0), train_tensor.std(dim=0))
    module = ScaledOutput(inner, target_tensor.mean(), target_tensor.std())
    check_output_shape(module, x_train, 1, REGRESSION, "build_model")
    # The loss is taken on the standardized target (`inner`'s output): unit scale, so the
    # spec's learning rate means the same whatever the target's units.
    standardized = ((target_tensor - module.target_mean) / module.target_std).reshape(-1, 1)
    loss_fn = nn.MSELoss()

    def negative_rmse(trained: nn.Module) -> float:
        return -rmse(predict_logits(trained, x_val), y_val)

    return _fit(
        module,
        inner,
        x_train,
        standardized,
        loss_fn,
        negative_rmse,
        config,
        on_epoch,
        REGRESSION,
        1,
    )


def _fit(
    module: nn.Module,
    trained_part: nn.Module,
    x_train: np.ndarray,
    train_targets: torch.Tensor,
    loss_fn: nn.Module,
    score: Callable[[nn.Module], float],
    config: TrainingConfig,
    on_epoch: EpochCallback | None,
    task: Task,
    n_outputs: int,
) -> TrainedModel:
    """Adam over `module`'s parameters, the loss on `trained_part`'s outputs; keeps the
    epoch of the highest `score` of `module` on the validation split (a regressor's score
    is minus its RMSE, reported and recorded as the RMSE)."""
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    train_tensor = torch.from_numpy(x_train)
    metric = VALIDATION_METRIC[task]
    sign = -1.0 if task == REGRESSION else 1.0

    best_state, best_score, best_epoch = copy.deepcopy(module.state_dict()), -math.inf, 0
    history: list[dict[str, float]] = []
    with progress.track("training", total=config.epochs, unit="epochs") as bar:
        for epoch in range(1, config.epochs + 1):
            module.train()
            order = torch.randperm(len(train_tensor), generator=generator)
            total_loss = 0.0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(trained_part(train_tensor[batch]), train_targets[batch])
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(batch)
            train_loss = total_loss / len(order)
            epoch_score = score(module)
            shown = sign * epoch_score
            history.append({"epoch": epoch, "train_loss": train_loss, f"val_{metric}": shown})
            bar.advance(1, detail=f"loss {train_loss:.4f}, val {metric} {shown:.4f}")
            if on_epoch is not None:
                on_epoch(epoch, train_loss, shown)
            if epoch_score > best_score:
                best_state, best_score, best_epoch = (
                    copy.deepcopy(module.state_dict()),
                    epoch_score,
                    epoch,
                )
    module.load_state_dict(best_state)
    module.eval()
    n_features = x_train.shape[1]
    return TrainedModel(module, n_features, n_outputs, best_epoch, sign * best_score, history, task)


def rebuild_classifier(
    builder: ModelBuilder, n_features: int, n_classes: int, state: dict[str, torch.Tensor]
) -> nn.Module:
    """The trained module again, from its builder and its saved state (scaler included)."""
    base = build_module(builder, n_features, n_classes, "build_model")
    module = Standardized(base, torch.zeros(n_features), torch.ones(n_features))
    return _load_state(module, state, n_features, n_classes)


def rebuild_regressor(
    builder: ModelBuilder, n_features: int, state: dict[str, torch.Tensor]
) -> nn.Module:
    """A trained regressor again, with both of its scalers, from its saved state."""
    base = build_module(builder, n_features, 1, "build_model")
    inner = Standardized(base, torch.zeros(n_features), torch.ones(n_features))
    module = ScaledOutput(inner, torch.zeros(()), torch.ones(()))
    return _load_state(module, state, n_features, 1)


def rebuild_module(
    builder: ModelBuilder,
    task: Task,
    n_features: int,
    n_outputs: int,
    state: dict[str, torch.Tensor],
) -> nn.Module:
    """The trained module of a version of `task` again, from its builder and saved state."""
    if task == REGRESSION:
        return rebuild_regressor(builder, n_features, state)
    return rebuild_classifier(builder, n_features, n_outputs, state)


def _load_state(
    module: nn.Module, state: dict[str, torch.Tensor], n_features: int, n_outputs: int
) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SpecError(
            f"saved weights do not fit build_model({n_features}, {n_outputs}): "
            f"{str(error).splitlines()[0]}"
        ) from error
    return module.eval()
