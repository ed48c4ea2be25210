"""Builds the compression candidates of a classifier (raw features -> logits) or a
regressor (raw features -> [batch, 1] values in target units).

Each candidate is exported to ONNX (parity checked against its torch module where it has
one) so that measuring, logging and registering all deal with files.
"""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from chassis import progress
from chassis.compression import candidates as names
from chassis.compression.candidates import CANDIDATE_NAMES, Candidate
from chassis.compression.distill import (
    check_distillation_options,
    distill_classifier,
    distill_regressor,
    wrap_like_teacher,
)
from chassis.compression.policy import CALIBRATION_METHODS, DEFAULT_POLICY
from chassis.compression.prune import fine_tune, prune_structured
from chassis.compression.quantize import (
    check_calibration_data,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from chassis.errors import CompressionError
from chassis.modelspec import ModelBuilder
from chassis.onnx_export import export_and_verify
from chassis.runtime import onnx_input_name
from chassis.task import CLASSIFICATION, REGRESSION, Task, output_width
from chassis.training import build_module


@dataclass(frozen=True)
class ClassifierSetup:
    """The baseline and the data its candidates are made from (features as float32; `y_*`
    class labels, or a regressor's targets). `n_classes` is None for a regressor."""

    baseline: nn.Module | None  # None: an ONNX graph with no torch twin (int8 only)
    baseline_onnx: Path
    n_features: int
    n_classes: int | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    build_student: ModelBuilder | None = None
    # Why `baseline` is None, for the candidates that need a torch module.
    no_module_reason: str = ""
    task: Task = CLASSIFICATION

    @property
    def n_outputs(self) -> int:
        return output_width(self.task, self.n_classes)

    def fine_tune_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """What fine-tuning after pruning minimizes: cross-entropy (None) for a classifier,
        squared error over the target's variance (unit scale) for a regressor."""
        if self.task != REGRESSION:
            return None
        variance = max(float(np.var(self.y_train)), 1e-12)

        def scaled_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return functional.mse_loss(outputs[:, 0], targets.float()) / variance

        return scaled_mse


@dataclass(frozen=True)
class CompressionOptions:
    """What `CompressionPolicy.build_options()` sets, plus settings users do not give."""

    candidates: tuple[str, ...] = CANDIDATE_NAMES
    per_channel: bool = DEFAULT_POLICY.per_channel
    calibration_method: str = DEFAULT_POLICY.calibration_method
    calibration_rows: int = 512
    prune_fraction: float = DEFAULT_POLICY.prune_fraction
    finetune_epochs: int = DEFAULT_POLICY.finetune_epochs
    temperature: float = DEFAULT_POLICY.temperature
    alpha: float = DEFAULT_POLICY.alpha
    distill_epochs: int = DEFAULT_POLICY.distill_epochs
    learning_rate: float = 1e-3
    parity_tolerance: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [c for c in self.candidates if c not in CANDIDATE_NAMES]
        if unknown:
            raise CompressionError(
                f"unknown candidate(s) {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(CANDIDATE_NAMES)}"
            )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise CompressionError(
                f"unknown calibration method {self.calibration_method!r}; choose one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        if not 0.0 <= self.prune_fraction < 1.0:
            raise CompressionError(f"prune fraction must be in [0, 1), got {self.prune_fraction}")
        if self.calibration_rows < 1:
            raise CompressionError(
                f"calibration rows must be at least 1, got {self.calibration_rows}"
            )
        check_distillation_options(self.temperature, self.alpha)

    def wanted(self) -> tuple[str, ...]:
        """Requested candidates in canonical order, always with the baseline."""
        requested = {names.BASELINE, *self.candidates}
        return tuple(c for c in CANDIDATE_NAMES if c in requested)


@dataclass(frozen=True)
class BuildResult:
    candidates: list[Candidate]
    skipped: dict[str, str]  # candidate -> why it was not built (e.g. no student in the spec)


def _torch_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def calibration_rows(setup: ClassifierSetup, options: CompressionOptions) -> np.ndarray:
    rng = np.random.default_rng(options.seed)
    rows = min(options.calibration_rows, len(setup.x_train))
    picked = setup.x_train[np.sort(rng.choice(len(setup.x_train), rows, replace=False))]
    return check_calibration_data(picked, setup.n_features)


def build_classifier_candidates(
    setup: ClassifierSetup, options: CompressionOptions, workdir: Path
) -> BuildResult:
    """Make every requested candidate as an ONNX file under `workdir`."""
    with progress.track(
        "building candidates", total=len(options.wanted()), unit="candidates"
    ) as bar:
        return _build(setup, options, workdir, bar)


def _build(
    setup: ClassifierSetup, options: CompressionOptions, workdir: Path, bar: progress.Tracker
) -> BuildResult:
    wanted = options.wanted()
    workdir.mkdir(parents=True, exist_ok=True)
    baseline_path = workdir / "baseline.onnx"
    shutil.copyfile(setup.baseline_onnx, baseline_path)
    built = [Candidate(names.BASELINE, baseline_path, {"method": "baseline"})]
    skipped: dict[str, str] = {}

    calibration = None
    if names.STATIC_INT8 in wanted and setup.x_train.dtype.kind in "iu":
        # Static int8 calibrates activations on float features; a text model's input is token
        # ids, and dynamic int8 is the recipe measured for transformers (BENCHMARKS.md).
        skipped[names.STATIC_INT8] = (
            "static int8 calibrates float feature rows; a text model takes token ids "
            "(dynamic int8 is its int8 candidate)"
        )
        wanted = tuple(name for name in wanted if name != names.STATIC_INT8)
    if names.STATIC_INT8 in wanted:
        calibration = calibration_rows(setup, options)

    def now_building(what: str) -> None:
        """Count the candidates built or skipped so far; say which one comes next."""
        finished = {candidate.name for candidate in built} | set(skipped)
        bar.update(
            completed=sum(name in finished for name in wanted), total=len(wanted), detail=what
        )

    def export(module: nn.Module, stem: str) -> Path:
        return export_and_verify(
            module,
            setup.n_features,
            setup.x_val,
            workdir / f"{stem}.onnx",
            options.parity_tolerance,
            setup.task,
        ).path

    def dynamic(source: Path, stem: str) -> Path:
        return quantize_dynamic_int8(
            source, workdir / f"{stem}.onnx", per_channel=options.per_channel
        )

    int8_recipe: dict[str, Any] = {
        "quantization": "dynamic-int8",
        "per_channel": options.per_channel,
    }
    if names.DYNAMIC_INT8 in wanted:
        now_building(names.DYNAMIC_INT8)
        built.append(
            Candidate(names.DYNAMIC_INT8, dynamic(baseline_path, "dynamic-int8"), int8_recipe)
        )
    if names.STATIC_INT8 in wanted:
        assert calibration is not None
        now_building(f"{names.STATIC_INT8} (calibrating)")
        path = quantize_static_int8(
            baseline_path,
            workdir / "static-int8.onnx",
            calibration,
            input_name=onnx_input_name(baseline_path),
            per_channel=options.per_channel,
            method=options.calibration_method,
        )
        recipe = {
            "quantization": "static-int8-qdq",
            "per_channel": options.per_channel,
            "calibration_method": options.calibration_method,
            "calibration_rows": len(calibration),
        }
        built.append(Candidate(names.STATIC_INT8, path, recipe))

    torch_made = (names.PRUNED, names.PRUNED_INT8, names.DISTILLED, names.DISTILLED_INT8)
    if setup.baseline is None:
        reason = f"needs a torch module: {setup.no_module_reason}"
        skipped.update({name: reason for name in torch_made if name in wanted})
        now_building("done")
        return BuildResult(built, skipped)
    baseline = setup.baseline

    if names.PRUNED in wanted or names.PRUNED_INT8 in wanted:
        now_building(f"{names.PRUNED} (pruning, fine-tuning)")
        try:
            result = prune_structured(
                baseline, options.prune_fraction, torch.from_numpy(setup.x_train[:8])
            )
        except CompressionError as error:
            skipped.update(dict.fromkeys((names.PRUNED, names.PRUNED_INT8), str(error)))
        else:
            pruned = fine_tune(
                result.module,
                setup.x_train,
                setup.y_train,
                epochs=options.finetune_epochs,
                learning_rate=options.learning_rate,
                seed=options.seed,
                loss_fn=setup.fine_tune_loss(),
            )
            path = export(pruned, "pruned")
            recipe = {
                "pruning": "structured-l1-outputs",
                "prune_fraction": options.prune_fraction,
                "pruned_layers": list(result.widths_after),
                "hidden_before": list(result.widths_before.values()),
                "hidden_after": list(result.widths_after.values()),
                "finetune_epochs": options.finetune_epochs,
                "torch_parameters": _torch_parameters(pruned),
            }
            if names.PRUNED in wanted:
                built.append(Candidate(names.PRUNED, path, recipe))
            if names.PRUNED_INT8 in wanted:
                now_building(names.PRUNED_INT8)
                built.append(
                    Candidate(
                        names.PRUNED_INT8, dynamic(path, "pruned-int8"), {**recipe, **int8_recipe}
                    )
                )

    if names.DISTILLED in wanted or names.DISTILLED_INT8 in wanted:
        if setup.build_student is None:
            reason = "the spec defines no build_student"
            skipped.update(dict.fromkeys((names.DISTILLED, names.DISTILLED_INT8), reason))
        else:
            now_building(f"{names.DISTILLED} (distilling)")
            torch.manual_seed(options.seed)
            student = build_module(
                setup.build_student, setup.n_features, setup.n_outputs, "build_student"
            )
            student = distill(setup, baseline, wrap_like_teacher(student, baseline), options)
            path = export(student, "distilled")
            recipe = {
                "distillation": "kd-soft-targets"
                if setup.task == CLASSIFICATION
                else "mse-to-teacher",
                "temperature": options.temperature,
                "alpha": options.alpha,
                "distill_epochs": options.distill_epochs,
                "student": type(student.model if hasattr(student, "model") else student).__name__,
                "torch_parameters": _torch_parameters(student),
            }
            if names.DISTILLED in wanted:
                built.append(Candidate(names.DISTILLED, path, recipe))
            if names.DISTILLED_INT8 in wanted:
                now_building(names.DISTILLED_INT8)
                built.append(
                    Candidate(
                        names.DISTILLED_INT8,
                        dynamic(path, "distilled-int8"),
                        {**recipe, **int8_recipe},
                    )
                )
    now_building("done")
    return BuildResult(built, skipped)


def distill(
    setup: ClassifierSetup, teacher: nn.Module, student: nn.Module, options: CompressionOptions
) -> nn.Module:
    """The student taught by the baseline: soft targets for a classifier, the squared error
    to the teacher's outputs for a regressor (no temperature there)."""
    if setup.task == REGRESSION:
        return distill_regressor(
            teacher,
            student,
            setup.x_train,
            setup.y_train,
            setup.x_val,
            setup.y_val,
            alpha=options.alpha,
            epochs=options.distill_epochs,
            seed=options.seed,
        )
    return distill_classifier(
        teacher,
        student,
        setup.x_train,
        setup.y_train,
        setup.x_val,
        setup.y_val,
        temperature=options.temperature,
        alpha=options.alpha,
        epochs=options.distill_epochs,
        seed=options.seed,
    )
