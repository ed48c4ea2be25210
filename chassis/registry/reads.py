"""Reads of versions and aliases, for people and for the other registry jobs."""

import datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.aliases import ALIASES, check_alias
from chassis.errors import RegistryError
from chassis.registry.failures import lookup_failed


def no_model(name: str) -> str:
    return f"no registered model named {name!r}"


def no_version(name: str, version: int) -> str:
    return f"{name!r} has no version {version}"


def model_tags(client: MlflowClient, name: str) -> dict[str, str]:
    """The registered model's own tags (audit trail, intent, rollout record, ...)."""
    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException as error:
        raise lookup_failed(error, no_model(name)) from None


def model_exists(client: MlflowClient, name: str) -> bool:
    """Whether the registry knows a model by this name; a name it refuses (one with `/`,
    say) names no model either. Raises when the registry did not answer."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False
        raise lookup_failed(error, no_model(name)) from None
    return True


def version_tags(client: MlflowClient, name: str, version: int) -> dict[str, str]:
    try:
        return dict(client.get_model_version(name, str(version)).tags)
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, version)) from None


def list_versions(client: MlflowClient, name: str) -> list[int]:
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except MlflowException as error:
        raise lookup_failed(error, f"could not list the versions of {name!r}") from None
    return sorted(int(v.version) for v in found)


def describe_versions(client: MlflowClient, name: str) -> list[dict[str, object]]:
    """Every version of `name`, newest first, with aliases and tags (for people to read)."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        raise lookup_failed(error, no_model(name)) from None
    described: list[dict[str, object]] = []
    for number in reversed(list_versions(client, name)):
        # search_model_versions returns empty aliases; get_model_version has them.
        try:
            version = client.get_model_version(name, str(number))
        except MlflowException as error:
            raise lookup_failed(error, no_version(name, number)) from None
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


def version_artifact_uri(client: MlflowClient, name: str, version: int) -> str:
    """Where the version's model files live in the artifact store (file://, s3://, ...)."""
    try:
        return str(client.get_model_version_download_uri(name, str(version)))
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, version)) from None


def version_run_id(client: MlflowClient, name: str, version: int) -> str:
    try:
        run_id = client.get_model_version(name, str(version)).run_id
    except MlflowException as error:
        raise lookup_failed(error, no_version(name, version)) from None
    if not run_id:
        raise RegistryError(f"{name} v{version} has no MLflow run to store reports in")
    return str(run_id)


def current_aliases(client: MlflowClient, name: str) -> dict[str, int]:
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        raise lookup_failed(error, no_model(name)) from None
    aliases: dict[str, str] = dict(model.aliases)
    return {alias: int(v) for alias, v in aliases.items() if alias in ALIASES}


def version_for_alias(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version an alias points to (None if unset); refuses aliases Chassis does not manage."""
    return current_aliases(client, name).get(check_alias(alias))
