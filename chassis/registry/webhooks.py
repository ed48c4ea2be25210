"""The registry webhook that posts alias events to Chassis's relay."""

from typing import Any, cast

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError

WEBHOOK_NAME = "chassis-relay"


def ensure_alias_webhook(client: MlflowClient, url: str, secret: str) -> str:
    """Create or update the registry webhook that posts alias events to Chassis's relay.

    One webhook named `chassis-relay` per registry: starting the relay again (another port,
    a new secret) updates it rather than adding a second sender. Returns its id.
    """
    events: list[Any] = ["model_version_alias.created"]
    try:
        existing = [hook for hook in _all_webhooks(client) if hook.name == WEBHOOK_NAME]
        if existing:
            hook = client.update_webhook(
                existing[0].webhook_id, url=url, events=events, secret=secret, status="ACTIVE"
            )
        else:
            hook = client.create_webhook(
                WEBHOOK_NAME,
                url,
                events,
                description="Relays challenger aliases set in the registry to Chassis rollouts.",
                secret=secret,
            )
    except (MlflowException, NotImplementedError) as error:
        # A file store answers NotImplementedError ("FileStore does not support ...").
        message = error.message if isinstance(error, MlflowException) else str(error)
        lowered = message.lower()
        hint = (
            " (MLflow sends webhooks from a SQL-backed registry only: local SQLite or an "
            "`mlflow server` on a database)"
            if "file" in lowered or "not support" in lowered
            else ""
        )
        raise RegistryError(
            f"could not register the MLflow webhook for {url}: {message}{hint}"
        ) from None
    return str(hook.webhook_id)


def _all_webhooks(client: MlflowClient) -> list[Any]:
    hooks: list[Any] = []
    token: Any = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        hooks.extend(page)
        token = cast("str | None", page.token)
        if not token:
            return hooks
