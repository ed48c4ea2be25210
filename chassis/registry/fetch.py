"""Downloads of a version's files, verified against the digests recorded at registration."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from chassis.digests import sha256_file
from chassis.errors import IntegrityError, RegistryError
from chassis.registry.failures import lookup_failed
from chassis.registry.reads import no_version, version_artifact_uri, version_tags
from chassis.registry.tags import (
    EVALUATION_FILE,
    ONNX_FILE,
    PROGRAM_FILE,
    REFERENCE_FILE,
    TAG_ONNX_SHA256,
    TAG_TEXT_INPUT,
    TAG_TOKENIZER_SHA256,
    TOKENIZER_FILE,
    VERIFIED_FILES,
    WEIGHTS_FILE,
)

if TYPE_CHECKING:
    from chassis.text_input import TextEncoder


@dataclass(frozen=True)
class VersionFiles:
    """A version's files, downloaded and verified against the digests recorded with it."""

    name: str
    version: int
    onnx_path: Path
    tags: dict[str, str]
    # The optional files the version carries (chassis.registry.tags.VERIFIED_FILES), verified.
    extra: dict[str, Path]

    @property
    def weights_path(self) -> Path | None:
        return self.extra.get(WEIGHTS_FILE)

    @property
    def program_path(self) -> Path | None:
        return self.extra.get(PROGRAM_FILE)

    @property
    def evaluation_path(self) -> Path | None:
        return self.extra.get(EVALUATION_FILE)

    @property
    def tokenizer_path(self) -> Path | None:
        return self.extra.get(TOKENIZER_FILE)

    def text_encoder(self) -> "TextEncoder | None":
        """How strings become this version's input; None for a tabular model."""
        from chassis.text_input import TextEncoder

        settings = self.tags.get(TAG_TEXT_INPUT)
        if settings is None:
            return None
        if self.tokenizer_path is None:
            raise RegistryError(
                f"{self.name} v{self.version} is a text model but stores no {TOKENIZER_FILE}"
            )
        return TextEncoder.from_settings(self.tokenizer_path, settings)


def download(client: MlflowClient, artifact_uri: str, destination: Path) -> Path:
    """One artifact, downloaded through the registry's own tracking server."""
    return Path(
        download_artifacts(
            artifact_uri=artifact_uri,
            dst_path=str(destination),
            tracking_uri=client.tracking_uri,
        )
    )


def _verified(
    client: MlflowClient,
    name: str,
    version: int,
    location: str,
    relative: str,
    expected: str,
    destination: Path,
) -> Path:
    """One file of a version (`relative` to its artifacts at `location`), downloaded and
    checked against its recorded sha256."""
    try:
        local = download(client, f"{location}/{relative}", destination)
    except MlflowException as error:
        raise lookup_failed(error, f"{name} v{version} has no {relative}") from None
    actual = sha256_file(local)
    if actual != expected:
        local.unlink(missing_ok=True)
        raise IntegrityError(
            f"{name} v{version}: {relative} does not match its recorded digest "
            f"(expected sha256 {expected}, actual {actual}); refusing to load it",
            expected,
            actual,
        )
    return local


def fetch_version(client: MlflowClient, name: str, version: int, destination: Path) -> VersionFiles:
    """Download a version's ONNX model and the optional files it records, verifying sha256.

    A file whose digest differs from the one recorded at registration is refused with both
    digests named; nothing unverified is returned.
    """
    try:
        model_version = client.get_model_version(name, str(version))
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, version)) from None
    tags = dict(model_version.tags)
    if TAG_ONNX_SHA256 not in tags:
        raise IntegrityError(
            f"{name} v{version} has no {TAG_ONNX_SHA256} tag: it was not registered by Chassis "
            "and cannot be verified"
        )
    location = version_artifact_uri(client, name, version).rstrip("/")
    destination.mkdir(parents=True, exist_ok=True)

    def verified(relative: str, expected: str) -> Path:
        return _verified(client, name, version, location, relative, expected, destination)

    onnx_path = verified(ONNX_FILE, tags[TAG_ONNX_SHA256])
    extra = {
        relative: verified(relative, tags[tag])
        for relative, tag in VERIFIED_FILES.items()
        if tag in tags
    }
    return VersionFiles(name, version, onnx_path, tags, extra)


def fetch_text_encoder(
    client: MlflowClient, name: str, version: int, destination: Path
) -> "TextEncoder | None":
    """A text version's encoder from its tokenizer file alone (verified), without the ONNX
    model: what the drift check needs to read served texts as the model does. None for a
    tabular version."""
    from chassis.text_input import TextEncoder

    tags = version_tags(client, name, version)
    settings = tags.get(TAG_TEXT_INPUT)
    if settings is None:
        return None
    if TAG_TOKENIZER_SHA256 not in tags:
        raise RegistryError(f"{name} v{version} is a text model but stores no {TOKENIZER_FILE}")
    location = version_artifact_uri(client, name, version).rstrip("/")
    destination.mkdir(parents=True, exist_ok=True)
    path = _verified(
        client,
        name,
        version,
        location,
        TOKENIZER_FILE,
        tags[TAG_TOKENIZER_SHA256],
        destination,
    )
    return TextEncoder.from_settings(path, settings)


def fetch_reference(client: MlflowClient, name: str, version: int, destination: Path) -> Path:
    """The version's reference snapshot (a sample of its training data)."""
    location = version_artifact_uri(client, name, version).rstrip("/")
    try:
        return download(client, f"{location}/{REFERENCE_FILE}", destination)
    except Exception as error:
        raise RegistryError(
            f"{name} v{version} has no reference snapshot ({REFERENCE_FILE}); it was registered "
            "before Chassis recorded one, or by another tool. Retrain or register it again."
        ) from error
