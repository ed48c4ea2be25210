"""The one module that talks to the MLflow model registry.

Registration happens last, after every check has passed, and in one call that carries all
lineage tags, so a version never exists without its sha256 and lineage. If anything fails
after the version was created, the version is deleted again: no half-registered versions.
"""

from dataclasses import dataclass
from pathlib import Path

from chassis.digests import sha256_file
from chassis.errors import IntegrityError, RegistryError

# Lineage and integrity tags every Chassis version carries.
TAG_SPEC = "chassis.spec"
TAG_DATASET_FINGERPRINT = "chassis.dataset_fingerprint"
TAG_RUN_ID = "chassis.run_id"
TAG_GIT_COMMIT = "chassis.git_commit"
TAG_ONNX_SHA256 = "chassis.onnx_sha256"
TAG_FLOW_RUN_ID = "chassis.flow_run_id"
TAG_WEIGHTS_SHA256 = "chassis.weights_sha256"
TAG_N_FEATURES = "chassis.n_features"
TAG_N_CLASSES = "chassis.n_classes"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "extra_files/model.safetensors"
REQUIRED_VERSION_TAGS = (TAG_SPEC, TAG_DATASET_FINGERPRINT, TAG_RUN_ID, TAG_ONNX_SHA256)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    tags: dict[str, str]


def register_version(
    *,
    name: str,
    model_uri: str,
    model_id: str | None,
    run_id: str,
    tags: dict[str, str],
    description: str,
    version_description: str = "",
) -> RegisteredVersion:
    """Create a new version of `name` from a logged model, with its lineage tags."""
    import mlflow

    missing = [t for t in REQUIRED_VERSION_TAGS if not tags.get(t)]
    if missing:
        raise RegistryError(f"refusing to register {name!r} without tag(s): {', '.join(missing)}")
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        try:
            client.create_registered_model(name, description=description or None)
        except mlflow.exceptions.MlflowException:
            client.get_registered_model(name)  # created concurrently: fine if it exists now
    created = None
    try:
        created = client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags=tags,
            model_id=model_id,
            await_creation_for=60,
        )
        stored = client.get_model_version(name, created.version)
        absent = [t for t in tags if stored.tags.get(t) != tags[t]]
        if absent:
            raise RegistryError(f"version {created.version} of {name!r} lost tag(s) {absent}")
        if stored.status != "READY":
            raise RegistryError(f"version {created.version} of {name!r} is {stored.status}")
    except Exception as error:
        if created is not None:
            client.delete_model_version(name, created.version)
        if isinstance(error, RegistryError):
            raise
        raise RegistryError(f"registering {name!r} failed: {error}") from error
    return RegisteredVersion(name, int(created.version), run_id, dict(stored.tags))


def version_tags(name: str, version: int) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_model_version(name, str(version)).tags)


def list_versions(name: str) -> list[int]:
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(int(v.version) for v in found)


def describe_versions(name: str) -> list[dict[str, object]]:
    """Every version of `name`, newest first, with aliases and tags (for people to read)."""
    import datetime

    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise RegistryError(f"no registered model named {name!r}") from None
    described = []
    for number in reversed(list_versions(name)):
        # search_model_versions returns empty aliases; get_model_version has them.
        version = client.get_model_version(name, str(number))
        created = datetime.datetime.fromtimestamp(
            version.creation_timestamp / 1000, tz=datetime.UTC
        )
        described.append(
            {
                "version": number,
                "created": created.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "aliases": list(version.aliases),
                "run_id": version.run_id or "",
                "tags": dict(version.tags),
            }
        )
    return described


def version_artifact_uri(name: str, version: int) -> str:
    """Where the version's model files live in the artifact store (file://, s3://, ...)."""
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_download_uri(name, str(version)))


@dataclass(frozen=True)
class VersionFiles:
    """A version's files, downloaded and verified against the digests recorded with it."""

    name: str
    version: int
    onnx_path: Path
    weights_path: Path | None
    tags: dict[str, str]


def fetch_version(name: str, version: int, destination: Path) -> VersionFiles:
    """Download a version's ONNX model (and torch weights if recorded) and verify sha256.

    A file whose digest differs from the one recorded at registration is refused with both
    digests named; nothing unverified is returned.
    """
    import mlflow

    client = mlflow.MlflowClient()
    try:
        model_version = client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise RegistryError(f"{name!r} has no version {version}") from None
    tags = dict(model_version.tags)
    if TAG_ONNX_SHA256 not in tags:
        raise IntegrityError(
            f"{name} v{version} has no {TAG_ONNX_SHA256} tag: it was not registered by Chassis "
            "and cannot be verified"
        )
    location = version_artifact_uri(name, version).rstrip("/")
    destination.mkdir(parents=True, exist_ok=True)

    def verified(relative: str, expected: str) -> Path:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/{relative}", dst_path=str(destination)
            )
        )
        actual = sha256_file(local)
        if actual != expected:
            local.unlink(missing_ok=True)
            raise IntegrityError(
                f"{name} v{version}: {relative} does not match its recorded digest "
                f"(expected sha256 {expected}, actual {actual}); refusing to load it"
            )
        return local

    onnx_path = verified(ONNX_FILE, tags[TAG_ONNX_SHA256])
    weights_path = (
        verified(WEIGHTS_FILE, tags[TAG_WEIGHTS_SHA256]) if TAG_WEIGHTS_SHA256 in tags else None
    )
    return VersionFiles(name, version, onnx_path, weights_path, tags)
