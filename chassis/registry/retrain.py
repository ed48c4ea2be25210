"""The retrain claim: at most one retraining per model per cooldown."""

import time

from mlflow import MlflowClient

from chassis.registry.lock import RegistryLock
from chassis.registry.reads import model_tags
from chassis.registry.tags import TAG_LAST_RETRAIN, TAG_LAST_RETRAIN_BY


def claim_retrain(
    client: MlflowClient, name: str, cooldown_seconds: float, actor: str
) -> tuple[bool, str]:
    """At most one retraining per model per cooldown: compare-and-set on a model tag.

    Returns (claimed, why). Under the registry lock, so two drift events arriving together
    start one retraining, not two.
    """
    with RegistryLock(client, name):
        last = float(model_tags(client, name).get(TAG_LAST_RETRAIN, "0") or 0)
        waited = time.time() - last
        if waited < cooldown_seconds:
            return False, (
                f"{name} was retrained {waited:.0f} s ago; cooldown is {cooldown_seconds:.0f} s"
            )
        client.set_registered_model_tag(name, TAG_LAST_RETRAIN, f"{time.time():.3f}")
        client.set_registered_model_tag(name, TAG_LAST_RETRAIN_BY, actor[:250])
    return True, "claimed"
