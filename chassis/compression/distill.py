"""Knowledge distillation: a smaller student learns the teacher's softened outputs.

Classifiers: loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(labels).
The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones.
Regressors: loss = alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, targets), both
over the target's variance (unit scale whatever its units); no temperature.
Embedding models: loss = 1 - cosine(student, teacher) + MSE of the embeddings, optionally
plus the MSE of every token's hidden state, on unlabelled text.
"""

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from chassis import progress
from chassis.errors import CompressionError
from chassis.models import ScaledOutput, Standardized


def check_distillation_options(temperature: float, alpha: float) -> None:
    if not temperature > 0 or not np.isfinite(temperature):
        raise CompressionError(f"distillation temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise CompressionError(f"distillation alpha must be in [0, 1], got {alpha}")


def wrap_like_teacher(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """The student behind the teacher's frozen scalers, so both take the same raw features
    (and a regressor's student outputs the same target units)."""
    if isinstance(teacher, ScaledOutput):
        return ScaledOutput(
            wrap_like_teacher(student, teacher.model),
            teacher.target_mean.clone(),
            teacher.target_std.clone(),
        )
    if isinstance(teacher, Standardized):
        return Standardized(student, teacher.mean.clone(), teacher.std.clone())
    return student


def distill_regressor(
    teacher: nn.Module,
    student: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    alpha: float = 0.7,
    epochs: int = 30,
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train `student` (raw features -> [batch, 1] values) on the squared error to the
    teacher's outputs (weight alpha) and to the targets; lowest validation RMSE wins."""
    check_distillation_options(1.0, alpha)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher.eval()
    inputs = torch.from_numpy(x_train)
    targets = torch.from_numpy(y_train.astype(np.float32)).reshape(-1, 1)
    with torch.no_grad():
        taught = teacher(inputs)
    variance = targets.var().clamp(min=1e-12)
    val_inputs, val_targets = torch.from_numpy(x_val), torch.from_numpy(y_val.astype(np.float32))
    optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)
    best_state, best_rmse = copy.deepcopy(student.state_dict()), float("inf")
    with progress.track("distilling the student", total=max(1, epochs), unit="epochs") as bar:
        for _ in range(max(1, epochs)):
            student.train()
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                predicted = student(inputs[batch])
                soft = functional.mse_loss(predicted, taught[batch]) / variance
                hard = functional.mse_loss(predicted, targets[batch]) / variance
                (alpha * soft + (1.0 - alpha) * hard).backward()
                optimizer.step()
            student.eval()
            with torch.inference_mode():
                errors = student(val_inputs)[:, 0] - val_targets
                rmse = float(errors.pow(2).mean().sqrt())
            if rmse < best_rmse:
                best_state, best_rmse = copy.deepcopy(student.state_dict()), rmse
            bar.advance(1, detail=f"val rmse {rmse:.4f}")
    student.load_state_dict(best_state)
    return student.eval()


def distill_classifier(
    teacher: nn.Module,
    student: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = 30,
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train `student` (raw features -> logits) against `teacher`; best validation epoch wins."""
    check_distillation_options(temperature, alpha)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher.eval()
    inputs, targets = torch.from_numpy(x_train), torch.from_numpy(y_train)
    # no_grad, not inference_mode: inference tensors cannot take part in the backward pass.
    with torch.no_grad():
        soft_targets = functional.log_softmax(teacher(inputs) / temperature, dim=1)
    val_inputs = torch.from_numpy(x_val)
    optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)
    best_state, best_accuracy = copy.deepcopy(student.state_dict()), -1.0
    with progress.track("distilling the student", total=max(1, epochs), unit="epochs") as bar:
        for _ in range(max(1, epochs)):
            student.train()
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                logits = student(inputs[batch])
                soft = functional.kl_div(
                    functional.log_softmax(logits / temperature, dim=1),
                    soft_targets[batch],
                    log_target=True,
                    reduction="batchmean",
                )
                hard = functional.cross_entropy(logits, targets[batch])
                loss = alpha * temperature**2 * soft + (1.0 - alpha) * hard
                loss.backward()
                optimizer.step()
            student.eval()
            with torch.inference_mode():
                accuracy = float((student(val_inputs).argmax(dim=1).numpy() == y_val).mean())
            if accuracy > best_accuracy:
                best_state, best_accuracy = copy.deepcopy(student.state_dict()), accuracy
            bar.advance(1, detail=f"val accuracy {accuracy:.4f}")
    student.load_state_dict(best_state)
    return student.eval()


EmbeddingBatch = dict[str, torch.Tensor]


TokenStates = Callable[[nn.Module, EmbeddingBatch], tuple[torch.Tensor, torch.Tensor]]


def _warmup_then_linear_decay(steps: int, warmup_fraction: float) -> Callable[[int], float]:
    # A short warm-up keeps Adam's first, badly estimated updates from wrecking the
    # teacher-initialized weights; the decay to zero settles the student at the end.
    warmup = max(1, int(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def token_state_loss(
    student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Squared error of every real token's state, relative to the teacher's mean square;
    states are [batch, tokens, width] or [layers, batch, tokens, width] (one relative error
    per layer, summed, so a layer with large activations does not drown the others)."""
    if student.dim() == 3:
        student, teacher = student.unsqueeze(0), teacher.unsqueeze(0)
    mask = attention_mask.unsqueeze(-1).to(student.dtype)
    squared = ((student - teacher) ** 2 * mask).sum(dim=(1, 2, 3))
    per_layer = squared / (mask.sum() * student.shape[-1])
    scale = (teacher**2 * mask).sum(dim=(1, 2, 3)) / (mask.sum() * teacher.shape[-1])
    return (per_layer / scale.clamp(min=1e-12)).sum()


def distill_embeddings(
    teacher: nn.Module,
    student: nn.Module,
    batches: Sequence[EmbeddingBatch],
    *,
    steps: int,
    learning_rate: float = 5e-5,
    mse_weight: float = 1.0,
    token_states: TokenStates | None = None,
    token_weight: float = 1.0,
    mask_key: str = "attention_mask",
    warmup_fraction: float = 0.0,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Fit `student(**batch)` to `teacher(**batch)`'s embeddings on unlabelled batches.

    Loss: 1 - cosine of the embeddings, plus `mse_weight` x their squared error. With
    `token_states` (module, batch -> (embeddings, [batch, tokens, width] hidden states
    before pooling), both from one pass), also `token_weight` x the squared error of every
    real token's state (tokens where `batch[mask_key]` is 0 are ignored), relative to the
    teacher's mean square: one pooled vector per sentence is a weak signal, the states of
    all its tokens a much richer one.
    The learning rate warms up over `warmup_fraction` of the steps, then decays linearly to
    zero (`warmup_fraction=0`: constant rate).

    Without `token_states`, teacher embeddings are computed once up front and each step costs
    one student pass; with it, the teacher runs each step (storing every token's state for
    every batch would take gigabytes).
    """
    if not batches:
        raise CompressionError("embedding distillation needs at least one batch of inputs")
    torch.manual_seed(seed)
    teacher.eval()
    targets: list[torch.Tensor] = []
    if token_states is None:
        with torch.no_grad():
            targets = [teacher(**batch).detach().clone() for batch in batches]
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate)
    schedule = None
    if warmup_fraction > 0:
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _warmup_then_linear_decay(steps, warmup_fraction)
        )
    student.train()
    with progress.track("distilling the student", total=steps, unit="steps") as bar:
        for step in range(steps):
            batch = batches[step % len(batches)]
            optimizer.zero_grad()
            if token_states is None:
                predicted, target = student(**batch), targets[step % len(batches)]
                token_loss = None
            else:
                with torch.no_grad():
                    target, teacher_tokens = token_states(teacher, batch)
                predicted, student_tokens = token_states(student, batch)
                token_loss = token_state_loss(student_tokens, teacher_tokens, batch[mask_key])
            loss = (1.0 - functional.cosine_similarity(predicted, target, dim=1)).mean()
            loss = loss + mse_weight * functional.mse_loss(predicted, target) * predicted.shape[1]
            if token_loss is not None:
                loss = loss + token_weight * token_loss
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            bar.advance()
            if on_step is not None:
                on_step(step, float(loss.item()))
    return student.eval()
