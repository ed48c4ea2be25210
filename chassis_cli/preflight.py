"""What a command checks against the registry before it starts a flow.

A typo in a model name or version is refused here, in a second, with one line: run as a
flow, it would start Prefect, print the flow's failure and leave a failed flow run on the
Prefect dashboard for what was never an attempt. The flows still check everything they
rely on (the registry can change between this check and the run).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chassis.settings import ChassisSettings


def require_registered(settings: "ChassisSettings", model: str, version: int | None = None) -> None:
    """Raise RegistryError naming what is missing: the model, or the version (with the
    versions the model has)."""
    from chassis.errors import RegistryError
    from chassis.registry import Registry
    from chassis.registry.reads import no_model, no_version

    registry = Registry.from_settings(settings)
    if not registry.model_exists(model):
        raise RegistryError(no_model(model))
    if version is None:
        return
    versions = registry.list_versions(model)
    if version not in versions:
        known = ", ".join(f"v{v}" for v in versions) or "none"
        raise RegistryError(f"{no_version(model, version)} (its versions: {known})")


def require_champion(settings: "ChassisSettings", model: str, purpose: str) -> int:
    """The model's champion version; RegistryError naming the model (or the typo) when it
    has none, so `purpose` (what needs served traffic) never starts a run that must fail."""
    from chassis.errors import RegistryError
    from chassis.registry import Registry

    require_registered(settings, model)
    champion = Registry.from_settings(settings).version_for_alias(model, "champion")
    if champion is None:
        raise RegistryError(
            f"{model} has no champion, so nothing is served to {purpose} (a release or "
            "`chassis promote` makes one)"
        )
    return champion
