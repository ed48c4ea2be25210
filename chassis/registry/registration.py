"""Registration happens last, after every check has passed, and in one call that carries all
lineage tags, so a version never exists without its sha256 and lineage. If anything fails
after the version was created, the version is deleted again: no half-registered versions.
"""

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError
from chassis.registry.failures import lookup_failed
from chassis.registry.gates import record_gate_report
from chassis.registry.reads import no_version, version_artifact_uri
from chassis.registry.tags import REQUIRED_VERSION_TAGS, TAG_GATES


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    tags: dict[str, str]


def register_version(
    client: MlflowClient,
    *,
    name: str,
    model_uri: str,
    model_id: str | None,
    run_id: str | None,
    tags: dict[str, str],
    description: str,
    version_description: str = "",
) -> RegisteredVersion:
    """Create a new version of `name` from a logged model, with its lineage tags."""
    missing = [t for t in REQUIRED_VERSION_TAGS if not tags.get(t)]
    if missing:
        raise RegistryError(f"refusing to register {name!r} without tag(s): {', '.join(missing)}")
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description=description or None)
        except MlflowException:
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
    return RegisteredVersion(name, int(created.version), run_id or "", dict(stored.tags))


def register_copy(
    client: MlflowClient, signing_key: str, name: str, version: int, reason: str
) -> int:
    """A new version holding exactly `version`'s bytes, run and lineage, its gates passed
    (they are the same bytes): the A/A candidate that checks the rollout analysis does not
    roll back a model equal to the champion. Returns the new version number."""
    try:
        original = client.get_model_version(name, str(version))
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, version)) from None
    tags = {k: v for k, v in original.tags.items() if not k.startswith(TAG_GATES)}
    copy = register_version(
        client,
        name=name,
        # Where the files are, not a `models:/` source (see tracking.Tracking._log_onnx_model).
        model_uri=version_artifact_uri(client, name, version),
        model_id=getattr(original, "model_id", None),
        run_id=original.run_id,
        tags=tags,
        description="",
        version_description=f"copy of v{version}: {reason}",
    )
    record_gate_report(
        client, signing_key, name, copy.version, True, f"same bytes as v{version}: {reason}"
    )
    return copy.version
