"""The compression candidates of an embedding model: int8, a distilled shallower student,
and the student in int8. Model-specific parts (export, student, tokenization) come in as
callables, so the recipe is the same for any embedding spec."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from chassis.compression import candidates as names
from chassis.compression.candidates import Candidate
from chassis.compression.distill import distill_embeddings
from chassis.compression.quantize import quantize_dynamic_int8


@dataclass(frozen=True)
class EmbeddingRecipe:
    student_steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-4
    per_channel: bool = False
    seed: int = 0


def _batches(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, torch.Tensor]]:
    return [{k: torch.from_numpy(v) for k, v in batch.items()} for batch in feeds]


def build_embedding_candidates(
    *,
    teacher: nn.Module,
    make_student: Callable[[nn.Module], nn.Module],
    export: Callable[[nn.Module, Path], Path],
    training_batches: list[dict[str, np.ndarray]],
    recipe: EmbeddingRecipe,
    workdir: Path,
    wanted: tuple[str, ...] = (
        names.BASELINE,
        names.DYNAMIC_INT8,
        names.DISTILLED,
        names.DISTILLED_INT8,
    ),
    on_step: Callable[[int, float], None] | None = None,
) -> list[Candidate]:
    workdir.mkdir(parents=True, exist_ok=True)
    baseline = export(teacher, workdir / "baseline.onnx")
    built = [Candidate(names.BASELINE, baseline, {"method": "baseline"})]
    int8 = {"quantization": "dynamic-int8", "per_channel": recipe.per_channel}
    if names.DYNAMIC_INT8 in wanted:
        path = quantize_dynamic_int8(
            baseline, workdir / "dynamic-int8.onnx", per_channel=recipe.per_channel
        )
        built.append(Candidate(names.DYNAMIC_INT8, path, int8))
    if names.DISTILLED in wanted or names.DISTILLED_INT8 in wanted:
        student = make_student(teacher)
        student = distill_embeddings(
            teacher,
            student,
            _batches(training_batches),
            steps=recipe.student_steps,
            learning_rate=recipe.learning_rate,
            seed=recipe.seed,
            on_step=on_step,
        )
        path = export(student, workdir / "distilled.onnx")
        distilled = {
            "distillation": "embedding-cosine-mse",
            "steps": recipe.student_steps,
            "batch_size": recipe.batch_size,
            "learning_rate": recipe.learning_rate,
            "torch_parameters": sum(p.numel() for p in student.parameters()),
        }
        if names.DISTILLED in wanted:
            built.append(Candidate(names.DISTILLED, path, distilled))
        if names.DISTILLED_INT8 in wanted:
            quantized = quantize_dynamic_int8(
                path, workdir / "distilled-int8.onnx", per_channel=recipe.per_channel
            )
            built.append(Candidate(names.DISTILLED_INT8, quantized, {**distilled, **int8}))
    return built
