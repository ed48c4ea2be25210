"""The one module that talks to the MLflow model registry.

Registration happens last, after every check has passed, and in one call that carries all
lineage tags, so a version never exists without its sha256 and lineage. If anything fails
after the version was created, the version is deleted again: no half-registered versions.
"""

from dataclasses import dataclass

from chassis.errors import RegistryError

# Lineage and integrity tags every Chassis version carries.
TAG_SPEC = "chassis.spec"
TAG_DATASET_FINGERPRINT = "chassis.dataset_fingerprint"
TAG_RUN_ID = "chassis.run_id"
TAG_GIT_COMMIT = "chassis.git_commit"
TAG_ONNX_SHA256 = "chassis.onnx_sha256"
TAG_FLOW_RUN_ID = "chassis.flow_run_id"
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
