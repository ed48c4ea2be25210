"""Registration happens last, after every check has passed, and in one call that carries all
lineage tags, so a version never exists without its sha256 and lineage. If anything fails
after the version was created, the version is deleted again: no half-registered versions.

Identical bytes are registered when asked (an A/A copy needs a second version of the same
model; `train` run twice makes one), but never silently: the new version is tagged with the
earliest version holding the same ONNX bytes, its description says so first, and the caller
is told (`RegisteredVersion.identical_to`) to say so too. The release path asks before
registering and registers nothing when the bytes equal the champion's (tasks.training).
"""

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError
from chassis.registry.failures import lookup_failed
from chassis.registry.gates import record_gate_report
from chassis.registry.reads import no_version, version_artifact_uri
from chassis.registry.tags import (
    REQUIRED_VERSION_TAGS,
    TAG_ACCURACY_GATE,
    TAG_ATTESTATION,
    TAG_CASCADE,
    TAG_GATE_REPORT,
    TAG_GATES,
    TAG_IDENTICAL_TO,
    TAG_ONNX_SHA256,
)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    tags: dict[str, str]
    # The earliest earlier version of the model with the same ONNX bytes (None: new bytes).
    identical_to: int | None = None

    def identical_notice(self) -> str | None:
        """One line for logs and the CLI when the version repeats an earlier one's bytes."""
        if self.identical_to is None:
            return None
        return (
            f"{self.name} v{self.version} has the same ONNX bytes (sha256 "
            f"{self.tags.get(TAG_ONNX_SHA256, '')[:16]}...) as v{self.identical_to}; "
            f"registered anyway, tagged {TAG_IDENTICAL_TO}={self.identical_to}"
        )


def identical_version(client: MlflowClient, name: str, onnx_sha256: str) -> int | None:
    """The earliest version of `name` whose recorded ONNX sha256 is `onnx_sha256`, if any."""
    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.`{TAG_ONNX_SHA256}` = '{onnx_sha256}'"
        )
    except MlflowException as error:
        raise lookup_failed(error, f"could not list the versions of {name!r}") from None
    return min((int(v.version) for v in found), default=None)


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
        same = identical_version(client, name, tags[TAG_ONNX_SHA256])
    except MlflowException:
        same = None
        try:
            client.create_registered_model(name, description=description or None)
        except MlflowException:
            client.get_registered_model(name)  # created concurrently: fine if it exists now
    if same is not None:
        tags = {**tags, TAG_IDENTICAL_TO: str(same)}
        identical = f"Same ONNX bytes as v{same} (sha256 {tags[TAG_ONNX_SHA256][:16]}...)."
        version_description = f"{identical} {version_description}".strip()
    created = None
    try:
        created = client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags=tags,
            model_id=model_id,
            description=version_description or None,
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
    return RegisteredVersion(name, int(created.version), run_id or "", dict(stored.tags), same)


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
    tags = {
        k: v
        for k, v in original.tags.items()
        if not k.startswith(TAG_GATES) and k != TAG_IDENTICAL_TO  # set afresh on the copy
    }
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


# The small tier's verdict and its evidence are not the cascade's.
_NOT_INHERITED = frozenset(
    {TAG_GATES, TAG_GATE_REPORT, TAG_ATTESTATION, TAG_ACCURACY_GATE, TAG_IDENTICAL_TO, TAG_CASCADE}
)


def register_cascade(
    client: MlflowClient, name: str, small: int, cascade_json: str, description: str
) -> RegisteredVersion:
    """A new version holding `small`'s bytes, run and lineage plus the cascade tag: its
    digest, verified cache and rollout are the small tier's, its gates are its own (none
    recorded here: it is judged as a cascade, like any new version)."""
    try:
        original = client.get_model_version(name, str(small))
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, small)) from None
    tags = {k: v for k, v in original.tags.items() if k not in _NOT_INHERITED}
    return register_version(
        client,
        name=name,
        model_uri=version_artifact_uri(client, name, small),
        model_id=getattr(original, "model_id", None),
        run_id=original.run_id,
        tags={**tags, TAG_CASCADE: cascade_json},
        description="",
        version_description=description,
    )
