"""Building a cascade of two registered versions of one model and registering it: checks
first (both tiers verified, same task, input width and label set; text classifiers: the
same tokenizer and max_length), then calibration and the threshold on the validation
split, and only then one registration call. Any failure before it registers nothing."""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np

from chassis.cascade.build import TextReading, build_spec, check_tiers
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import Target
from chassis.data import features, load_dataset, truth
from chassis.errors import CascadeError
from chassis.modelspec import Dataset, ModelSpec, load_spec
from chassis.registry import RegisteredVersion, Registry, VersionFiles
from chassis.registry.tags import TAG_CASCADE, TAG_N_CLASSES, TAG_SPEC, TAG_TOKENIZER_SHA256
from chassis.runtime import answer_batch_rows, create_session, run_batches
from chassis.task import CLASSIFICATION, task_of
from chassis.text_input import TextInput


@dataclass(frozen=True)
class BuiltCascade:
    registered: RegisteredVersion
    spec: CascadeSpec
    validation_rows: int


@dataclass(frozen=True)
class TierShape:
    width: int  # features, or a text classifier's max_length in token ids
    classes: int
    text: TextReading | None  # None: the tier reads numbers


def tier_shape(files: VersionFiles) -> TierShape:
    """What a tier reads and answers, for one that can be a tier: a classifier (of numbers,
    or of texts through its stored tokenizer), not itself a cascade."""
    label = f"{files.name} v{files.version}"
    if task_of(files.tags) != CLASSIFICATION:
        raise CascadeError(f"{label} is a {task_of(files.tags)} model; a cascade needs classifiers")
    if TAG_CASCADE in files.tags:
        raise CascadeError(f"{label} is a cascade already; name its tiers instead")
    session = create_session(files.onnx_path)
    width = cast(object, session.get_inputs()[0].shape[1])  # an int, or a symbolic name
    classes = cast(object, files.tags.get(TAG_N_CLASSES) or session.get_outputs()[0].shape[1])
    encoder = files.text_encoder()  # verified against its sha256 tag when fetched
    text = None
    if encoder is not None:
        # The graph may take any number of token ids; what it is given is max_length.
        width = encoder.max_length
        text = TextReading(files.tags[TAG_TOKENIZER_SHA256], encoder.max_length, encoder.truncate)
    if not isinstance(width, int) or not isinstance(classes, int | str):
        raise CascadeError(f"{label} has no fixed input width or class count")
    return TierShape(int(width), int(classes), text)


def validation_split(model_spec: ModelSpec, files: VersionFiles) -> Dataset:
    """The spec's data as `files` reads it: a text classifier's texts through the tokenizer
    stored with the version (the one it is served with), not the spec's current file."""
    encoder = files.text_encoder()
    text_input = (
        None
        if encoder is None or files.tokenizer_path is None
        else TextInput(files.tokenizer_path, encoder.max_length, encoder.truncate)
    )
    dataset = load_dataset(model_spec.load_data, model_spec.name, CLASSIFICATION, text_input)
    return dataset if encoder is None else replace(dataset, text_encoder=encoder)


def tier_logits(files: VersionFiles, x: np.ndarray) -> np.ndarray:
    return run_batches(create_session(files.onnx_path), x, answer_batch_rows(files.onnx_path, x))


def build_cascade(
    registry: Registry,
    name: str,
    small: int,
    full: int,
    target: Target,
    workdir: Path,
    threshold: float | None = None,
) -> BuiltCascade:
    if small == full:
        raise CascadeError(f"the cascade's small and full tiers are both v{small}")
    small_files = registry.fetch_version(name, small, workdir / f"v{small}")
    full_files = registry.fetch_version(name, full, workdir / f"v{full}")
    small_shape, full_shape = tier_shape(small_files), tier_shape(full_files)
    check_tiers(
        f"small tier {name} v{small}",
        small_shape.width,
        small_shape.classes,
        f"full tier {name} v{full}",
        full_shape.width,
        full_shape.classes,
        small_shape.text,
        full_shape.text,
    )
    spec_reference = full_files.tags.get(TAG_SPEC) or small_files.tags.get(TAG_SPEC)
    if not spec_reference:
        raise CascadeError(f"{name} v{full} names no spec: no validation split to calibrate on")
    model_spec = load_spec(spec_reference)
    dataset = validation_split(model_spec, small_files)
    x = features(dataset.validation, dataset)
    if x.shape[1] != small_shape.width:
        raise CascadeError(
            f"spec {spec_reference} gives {x.shape[1]} features, the tiers read {small_shape.width}"
        )
    y = truth(dataset.validation, dataset, CLASSIFICATION)
    cascade = build_spec(
        full, tier_logits(small_files, x), tier_logits(full_files, x), y, target, threshold
    )
    registered = registry.register_cascade(
        name,
        small,
        cascade.to_json(),
        f"Cascade by Chassis: v{small} answers when confident, else v{full}; {cascade.describe()}.",
    )
    return BuiltCascade(registered, cascade, len(y))
