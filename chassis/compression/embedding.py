"""The compression candidates of an embedding model: int8, a distilled shallower student,
and the student in int8. Model-specific parts (export, student, tokenization) come in as
callables, so the recipe is the same for any embedding spec."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from chassis.compression import candidates as names
from chassis.compression.candidates import Candidate
from chassis.compression.distill import TokenStates, distill_embeddings
from chassis.compression.quantize import quantize_dynamic_int8

Fuse = Callable[[Path, Path], dict[str, int]]


@dataclass(frozen=True)
class EmbeddingRecipe:
    """Defaults measured on all-MiniLM-L6-v2 (BENCHMARKS.md): per-channel int8 weights take
    mean cosine from 0.963 to 0.993; token-level distillation with warm-up and decay is what
    gets a 3-layer student past 0.9."""

    student_steps: int = 600
    batch_size: int = 16
    learning_rate: float = 2e-4
    per_channel: bool = True
    mse_weight: float = 0.0
    token_weight: float = 1.0
    warmup_fraction: float = 0.1
    seed: int = 0


def _batches(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, torch.Tensor]]:
    return [{k: torch.from_numpy(v) for k, v in batch.items()} for batch in feeds]


# The teacher's own class, so `make_student` may rely on it (a SentenceEmbedder's encoder).
TeacherT = TypeVar("TeacherT", bound=nn.Module)


def build_embedding_candidates(
    *,
    teacher: TeacherT,
    make_student: Callable[[TeacherT], nn.Module],
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
    token_states: TokenStates | None = None,
    keep_float: Callable[[Path], tuple[str, ...]] | None = None,
    fuse: Fuse | None = None,
) -> list[Candidate]:
    """`token_states` (module, batch -> per-token hidden states) adds token-level
    distillation; `keep_float` (file -> node names) names nodes int8 leaves alone;
    `fuse` (source, destination -> fused operator counts) rewrites an exported file into
    fused operators before it is quantized, written next to it as `<name>-fused.onnx`
    (None: quantize the export as it is). The fp32 candidates stay the plain exports."""
    workdir.mkdir(parents=True, exist_ok=True)
    baseline = export(teacher, workdir / "baseline.onnx")
    built = [Candidate(names.BASELINE, baseline, {"method": "baseline"})]

    def quantize(source: Path, destination: Path) -> tuple[Path, dict[str, object]]:
        fused: dict[str, int] = {}
        if fuse is not None:
            fused_path = source.with_name(f"{source.stem}-fused.onnx")
            fused = fuse(source, fused_path)
            source = fused_path
        excluded = keep_float(source) if keep_float is not None else ()
        path = quantize_dynamic_int8(
            source, destination, per_channel=recipe.per_channel, nodes_to_exclude=excluded
        )
        return path, {
            "quantization": "dynamic-int8",
            "per_channel": recipe.per_channel,
            "kept_float": ",".join(excluded),
            "fused": ",".join(f"{op}:{count}" for op, count in fused.items()),
        }

    if names.DYNAMIC_INT8 in wanted:
        path, int8 = quantize(baseline, workdir / "dynamic-int8.onnx")
        built.append(Candidate(names.DYNAMIC_INT8, path, int8))
    if names.DISTILLED in wanted or names.DISTILLED_INT8 in wanted:
        student = make_student(teacher)
        student = distill_embeddings(
            teacher,
            student,
            _batches(training_batches),
            steps=recipe.student_steps,
            learning_rate=recipe.learning_rate,
            mse_weight=recipe.mse_weight,
            token_states=token_states,
            token_weight=recipe.token_weight,
            warmup_fraction=recipe.warmup_fraction,
            seed=recipe.seed,
            on_step=on_step,
        )
        path = export(student, workdir / "distilled.onnx")
        distilled = {
            "distillation": "embedding-cosine-mse"
            + ("+token-mse" if token_states is not None else ""),
            "steps": recipe.student_steps,
            "batch_size": recipe.batch_size,
            "learning_rate": recipe.learning_rate,
            "warmup_fraction": recipe.warmup_fraction,
            "torch_parameters": sum(p.numel() for p in student.parameters()),
        }
        if names.DISTILLED in wanted:
            built.append(Candidate(names.DISTILLED, path, distilled))
        if names.DISTILLED_INT8 in wanted:
            quantized, int8 = quantize(path, workdir / "distilled-int8.onnx")
            built.append(Candidate(names.DISTILLED_INT8, quantized, {**distilled, **int8}))
    return built
