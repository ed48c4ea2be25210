"""A registered version, ready to evaluate: verified files, its spec, its torch module."""

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from chassis.errors import RegistryError
from chassis.modelspec import ModelSpec, load_spec
from chassis.registry import Registry, VersionFiles
from chassis.registry.tags import TAG_N_CLASSES, TAG_N_FEATURES, TAG_SPEC
from chassis.training import rebuild_classifier
from chassis.weights import load_weights


@dataclass(frozen=True)
class LoadedVersion:
    files: VersionFiles
    spec_reference: str
    spec: ModelSpec
    module: nn.Module | None  # None when the version carries no torch weights (e.g. int8)
    n_classes: int | None


def load_version(registry: Registry, name: str, version: int, workdir: Path) -> LoadedVersion:
    """Download and verify a version (sha256), import its spec, rebuild its torch module."""
    files = registry.fetch_version(name, version, workdir / f"v{version}")
    reference = files.tags.get(TAG_SPEC)
    if not reference:
        raise RegistryError(f"{name} v{version} has no {TAG_SPEC} tag; cannot load its spec")
    spec = load_spec(reference)
    n_features = files.tags.get(TAG_N_FEATURES)
    n_classes = files.tags.get(TAG_N_CLASSES)
    module = None
    if files.weights_path is not None and n_features and n_classes:
        module = rebuild_classifier(
            spec.build_model, int(n_features), int(n_classes), load_weights(files.weights_path)
        )
    return LoadedVersion(files, reference, spec, module, int(n_classes) if n_classes else None)
