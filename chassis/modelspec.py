"""The model-spec contract: how a user plugs their own model into Chassis.

A spec is any importable object reachable as `package.module:attribute` that provides:

- `name`: the registered-model name in MLflow (letters, digits, `-`, `_`, `.`);
- `load_data()`: returns a `Dataset` (train/validation/test frames, feature columns, label);
- the model, in one of three forms:
  - `build_model(n_features, n_outputs)`: returns the `torch.nn.Module` Chassis trains
    (behind a standardization layer fitted on the train split), mapping float32
    `[batch, n_features]` to `[batch, n_outputs]`: class logits (n_outputs = number of
    classes) for a classifier, the predicted value (n_outputs = 1) for a regressor;
  - `load_model()`: returns a `torch.nn.Module` trained elsewhere (raw features -> logits),
    kept as it is, with the user's own preprocessing inside it;
  - `onnx_file`: the path of an ONNX file trained and exported elsewhere (a relative path
    resolves against the working directory), registered byte for byte;
- optionally `task`: "classification" (the default) or "regression" (chassis/task.py);
- optionally `text_input`: a `chassis.text_input.TextInput` (a tokenizer file and a maximum
  length) for a text model: the dataset has one feature column of strings, and the model
  (load_model or onnx_file: Chassis trains tabular models only) takes int64 token ids
  `[batch, max_length]`, padded with the tokenizer's pad id;
- optionally `build_student(n_features, n_outputs)`: a smaller module for distillation;
- optionally `training`: a `TrainingConfig` (epochs, batch size, learning rate, seed, ...);
- optionally `expectation_suite`: a suite file in the project's `expectations/` (of the
  working directory, or CHASSIS_EXPECTATIONS_DIR; or an absolute path) for the train
  split, and `serving_suite`: one for batches the gateway serves.

The usual way is to build a `ModelSpec`; a module, class or mapping with the same parts is
accepted too, so a spec never has to import anything heavy at module level.
"""

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from chassis.errors import SpecError
from chassis.task import DEFAULT_TASK, Task, parse_task
from chassis.text_input import TextEncoder, TextInput

if TYPE_CHECKING:
    import pandas as pd
    import torch

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of the baseline training. Seeds are fixed: a run is reproducible."""

    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if problems:
            raise SpecError("invalid training config: " + "; ".join(problems))


@dataclass(frozen=True)
class Dataset:
    """What a spec's `load_data()` returns: three splits sharing one schema."""

    train: "pd.DataFrame"
    validation: "pd.DataFrame"
    test: "pd.DataFrame"
    feature_columns: tuple[str, ...]
    label_column: str
    # A text model's tokenizer: set by Chassis from the spec's (or the version's) text
    # input, never by load_data. None: the features are numbers.
    text_encoder: TextEncoder | None = None

    def splits(self) -> dict[str, "pd.DataFrame"]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


ModelBuilder = Callable[[int, int], "torch.nn.Module"]
ModelLoader = Callable[[], "torch.nn.Module"]
ModelForm = Literal["train", "torch", "onnx"]
MODEL_FORMS: Mapping[ModelForm, str] = {
    "train": "build_model (Chassis trains it)",
    "torch": "load_model (a trained torch module)",
    "onnx": "onnx_file (an exported ONNX file)",
}


@dataclass(frozen=True)
class ModelSpec:
    """A model Chassis can train, compress, validate, register, roll out and watch."""

    name: str
    load_data: Callable[[], Dataset]
    build_model: ModelBuilder | None = None
    build_student: ModelBuilder | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    expectation_suite: str | None = None
    serving_suite: str | None = None
    description: str = ""
    load_model: ModelLoader | None = None
    onnx_file: "str | Path | None" = None
    task: Task = DEFAULT_TASK
    text_input: TextInput | None = None

    def __post_init__(self) -> None:
        # Checked at run time too, here and below: a spec is written by the user's code.
        if not isinstance(self.name, str) or not MODEL_NAME_PATTERN.match(self.name):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise SpecError(
                f"spec name {self.name!r} is not a valid registered-model name "
                "(letters, digits, '-', '_', '.'; at most 128 characters)"
            )
        if not callable(self.load_data):
            raise SpecError(f"spec {self.name!r}: load_data must be callable")
        given = [MODEL_FORMS[form] for form, value in self._forms().items() if value is not None]
        if len(given) != 1:
            raise SpecError(
                f"spec {self.name!r} gives {' and '.join(given) or 'no model'}; give exactly "
                "one of: " + ", ".join(MODEL_FORMS.values())
            )
        for part in ("build_model", "load_model"):
            if getattr(self, part) is not None and not callable(getattr(self, part)):
                raise SpecError(f"spec {self.name!r}: {part} must be callable")
        if self.onnx_file is not None and not isinstance(self.onnx_file, str | Path):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise SpecError(f"spec {self.name!r}: onnx_file must be a path")
        if self.build_student is not None and not callable(self.build_student):
            raise SpecError(f"spec {self.name!r}: build_student must be callable or None")
        if not isinstance(self.training, TrainingConfig):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise SpecError(f"spec {self.name!r}: training must be a chassis TrainingConfig")
        parse_task(self.task, f"spec {self.name!r}")
        if self.text_input is not None:
            if not isinstance(self.text_input, TextInput):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise SpecError(f"spec {self.name!r}: text_input must be a chassis TextInput")
            if self.build_model is not None:
                raise SpecError(
                    f"spec {self.name!r}: a text model is imported (load_model or onnx_file); "
                    "Chassis trains tabular models only"
                )

    def _forms(self) -> dict[ModelForm, object]:
        return {"train": self.build_model, "torch": self.load_model, "onnx": self.onnx_file}

    @property
    def form(self) -> ModelForm:
        """How the model reaches the registry: trained by Chassis, or imported."""
        return next(form for form, value in self._forms().items() if value is not None)

    def onnx_path(self) -> Path:
        """The ONNX file of an `onnx_file` spec, resolved against the working directory."""
        assert self.onnx_file is not None, "only an onnx_file spec has one"
        return Path(self.onnx_file).expanduser().resolve()


REQUIRED_PARTS: Mapping[str, str] = {
    "name": "the registered-model name (str)",
    "load_data": "a callable () -> chassis.modelspec.Dataset",
}
MODEL_PARTS = ("build_model", "load_model", "onnx_file")
OPTIONAL_PARTS = (
    "build_student",
    "training",
    "expectation_suite",
    "serving_suite",
    "description",
    "task",
    "text_input",
)


def load_spec(reference: str) -> ModelSpec:
    """Import `package.module:attribute` (attribute defaults to `spec`) and check the contract."""
    module_name, _, attribute = reference.strip().partition(":")
    attribute = attribute or "spec"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise SpecError(f"spec reference {reference!r} is not of the form package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise SpecError(
                f"spec {reference!r} does not import: no module named {error.name!r} "
                "(is the package installed, or on PYTHONPATH?)"
            ) from error
        raise SpecError(f"spec {reference!r} does not import: {error}") from error
    except Exception as error:
        raise SpecError(
            f"spec {reference!r} does not import: {type(error).__name__}: {error}"
        ) from error
    if not hasattr(module, attribute):
        raise SpecError(
            f"spec {reference!r}: module {module_name!r} has no attribute {attribute!r}"
        )
    return coerce_spec(getattr(module, attribute), reference)


def coerce_spec(candidate: Any, reference: str) -> ModelSpec:
    """Accept a ModelSpec, or any object or mapping with the required parts."""
    if isinstance(candidate, ModelSpec):
        return candidate

    def part(name: str) -> Any:
        if isinstance(candidate, Mapping):
            return cast(Mapping[str, Any], candidate).get(name)

        return getattr(candidate, name, None)

    missing = [
        f"{name} ({meaning})" for name, meaning in REQUIRED_PARTS.items() if part(name) is None
    ]
    if all(part(name) is None for name in MODEL_PARTS):
        missing.append(
            "build_model, load_model or onnx_file (the model: "
            + ", ".join(MODEL_FORMS.values())
            + ")"
        )
    if missing:
        raise SpecError(f"spec {reference!r} is missing required part(s): " + ", ".join(missing))
    optional = {
        name: part(name) for name in (*MODEL_PARTS, *OPTIONAL_PARTS) if part(name) is not None
    }
    try:
        return ModelSpec(name=part("name"), load_data=part("load_data"), **optional)
    except TypeError as error:
        raise SpecError(f"spec {reference!r} is not a valid spec: {error}") from error
