"""Knowledge distillation: a smaller student learns the teacher's softened outputs.

Classifiers: loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(labels).
The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones.
Embedding models: loss = 1 - cosine(student, teacher) + MSE, on unlabelled text.
"""

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from chassis.errors import CompressionError
from chassis.models import Standardized


def check_distillation_options(temperature: float, alpha: float) -> None:
    if not temperature > 0 or not np.isfinite(temperature):
        raise CompressionError(f"distillation temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise CompressionError(f"distillation alpha must be in [0, 1], got {alpha}")


def wrap_like_teacher(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """The student behind the teacher's frozen scaler, so both take the same raw features."""
    if isinstance(teacher, Standardized):
        return Standardized(student, teacher.mean.clone(), teacher.std.clone())
    return student


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
    student.load_state_dict(best_state)
    return student.eval()


EmbeddingBatch = dict[str, torch.Tensor]


def distill_embeddings(
    teacher: nn.Module,
    student: nn.Module,
    batches: Sequence[EmbeddingBatch],
    *,
    steps: int,
    learning_rate: float = 5e-5,
    mse_weight: float = 1.0,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Fit `student(**batch)` to `teacher(**batch)`'s embeddings on unlabelled batches.

    Teacher embeddings are computed once up front: each step then costs one student pass.
    """
    if not batches:
        raise CompressionError("embedding distillation needs at least one batch of inputs")
    torch.manual_seed(seed)
    with torch.no_grad():
        teacher.eval()
        targets = [teacher(**batch).detach().clone() for batch in batches]
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate)
    student.train()
    for step in range(steps):
        index = step % len(batches)
        optimizer.zero_grad()
        predicted = student(**batches[index])
        target = targets[index]
        loss = (1.0 - functional.cosine_similarity(predicted, target, dim=1)).mean()
        loss = loss + mse_weight * functional.mse_loss(predicted, target) * predicted.shape[1]
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, float(loss.item()))
    return student.eval()
