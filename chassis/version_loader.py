"""A registered version, ready to judge or compress from its own artifacts: verified files,
its torch module rebuilt from the program stored with it, and the rows it is judged on.

Versions registered before Chassis stored programs and evaluation rows fall back to the
spec named in their tags (its current `build_model` and `load_data`), and say so when that
no longer fits.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from chassis import torch_program
from chassis.data import load_dataset
from chassis.errors import ChassisError, GateConfigError, ProgramError, RegistryError
from chassis.evaluation_split import read_evaluation_split
from chassis.modelspec import Dataset, ModelSpec, load_spec
from chassis.registry import Registry, VersionFiles
from chassis.registry.tags import (
    TAG_FEATURE_COLUMNS,
    TAG_N_CLASSES,
    TAG_N_FEATURES,
    TAG_N_OUTPUTS,
    TAG_PARENT_VERSION,
    TAG_PROGRAM_MISSING,
    TAG_SPEC,
)
from chassis.task import Task, task_of
from chassis.training import rebuild_module
from chassis.weights import load_weights


@dataclass(frozen=True)
class LoadedVersion:
    files: VersionFiles
    spec_reference: str
    module: nn.Module | None  # None when the version carries no torch program (e.g. int8)
    n_classes: int | None
    # Why `module` is None, in words a user can act on.
    no_module_reason: str
    task: Task = "classification"

    @property
    def label(self) -> str:
        return f"{self.files.name} v{self.files.version}"

    def spec(self) -> ModelSpec:
        """The spec named in the version's tags, imported now: only compression needs it
        (for the data to fine-tune on and the student to distil into)."""
        return load_spec(self.spec_reference)


def load_version(registry: Registry, name: str, version: int, workdir: Path) -> LoadedVersion:
    """Download and verify a version (sha256), rebuild its torch module if it has one."""
    files = registry.fetch_version(name, version, workdir / f"v{version}")
    reference = files.tags.get(TAG_SPEC)
    if not reference:
        raise RegistryError(f"{name} v{version} has no {TAG_SPEC} tag; cannot load its spec")
    n_classes = files.tags.get(TAG_N_CLASSES)
    module, reason = _torch_module(files, reference)
    return LoadedVersion(
        files, reference, module, int(n_classes) if n_classes else None, reason, task_of(files.tags)
    )


def evaluation_rows(registry: Registry, files: VersionFiles, workdir: Path) -> Dataset:
    """The rows a version is judged on, read as it reads them (a text model through its own
    tokenizer): its own stored test split, else the one of the version it was compressed
    from; only a version older than both falls back to its spec's data."""
    if files.evaluation_path is not None:
        return _read_as(files, files.evaluation_path)
    parent = files.tags.get(TAG_PARENT_VERSION)
    if parent:
        parent_files = registry.fetch_version(files.name, int(parent), workdir / f"v{parent}")
        if parent_files.evaluation_path is not None:
            return _read_as(files, parent_files.evaluation_path)
    reference = files.tags.get(TAG_SPEC)
    if not reference:
        raise RegistryError(
            f"{files.name} v{files.version} stores no test rows and names no spec to load them"
        )
    spec = load_spec(reference)
    return load_dataset(spec.load_data, spec.name, task_of(files.tags), spec.text_input)


def _read_as(files: VersionFiles, path: Path) -> Dataset:
    return replace(read_evaluation_split(path), text_encoder=files.text_encoder())


def rows_for(dataset: Dataset, files: VersionFiles, label: str) -> Dataset:
    """`dataset` as another version reads it (its own feature columns, in its order; a text
    model through its own tokenizer), so a champion whose inputs differ is still measured on
    the candidate's rows, or refused naming the columns it lacks."""
    raw = files.tags.get(TAG_FEATURE_COLUMNS)
    columns = tuple(json.loads(raw)) if raw else dataset.feature_columns
    encoder = files.text_encoder()
    if (encoder is None) != (dataset.text_encoder is None):
        raise GateConfigError(
            f"{label} reads {'text' if encoder is not None else 'numbers'} and the candidate "
            f"{'text' if dataset.text_encoder is not None else 'numbers'}; the two cannot be "
            "measured on the same rows"
        )
    if encoder is not None:
        dataset = replace(dataset, text_encoder=encoder)
    if columns == dataset.feature_columns:
        return dataset
    missing = [column for column in columns if column not in dataset.test.columns]
    if missing:
        raise GateConfigError(
            f"{label} reads column(s) {', '.join(map(repr, missing[:5]))} that the candidate's "
            "test rows do not have; the two cannot be measured on the same rows"
        )
    return replace(dataset, feature_columns=columns)


def _torch_module(files: VersionFiles, reference: str) -> tuple[nn.Module | None, str]:
    label = f"{files.name} v{files.version}"
    if files.weights_path is None:
        return None, f"{label} carries no torch weights (an int8 or imported ONNX graph)"
    if files.program_path is not None:
        try:
            return torch_program.load(files.program_path, files.weights_path), ""
        except ProgramError as error:
            raise ProgramError(f"{label}: its torch program does not load: {error}") from None
    if TAG_PROGRAM_MISSING in files.tags:
        return None, f"{label} has no torch program: {files.tags[TAG_PROGRAM_MISSING]}"
    return _rebuild_from_spec(files, reference, label), ""


def _rebuild_from_spec(files: VersionFiles, reference: str, label: str) -> nn.Module:
    """A version registered before programs were stored: its spec's current code."""
    assert files.weights_path is not None
    n_features = files.tags.get(TAG_N_FEATURES)
    n_outputs = files.tags.get(TAG_N_OUTPUTS) or files.tags.get(TAG_N_CLASSES)
    if not n_features or not n_outputs:
        raise RegistryError(f"{label} records no {TAG_N_FEATURES}/{TAG_N_CLASSES} tags")
    spec = load_spec(reference)
    if spec.build_model is None:
        raise ProgramError(
            f"{label} was registered without a torch program, and its spec {reference} no "
            "longer builds a model (it imports one now)"
        )
    try:
        return rebuild_module(
            spec.build_model,
            task_of(files.tags),
            int(n_features),
            int(n_outputs),
            load_weights(files.weights_path),
        )
    except ChassisError as error:
        raise ProgramError(
            f"{label} was registered without a torch program, and its spec {reference} no "
            f"longer rebuilds it: {error}"
        ) from error
