"""`chassis webhook-relay`: MLflow registry webhooks in, Prefect events out.

A challenger alias set by hand in the MLflow UI then starts its rollout within seconds,
instead of at the next `registry-watch` poll (which stays as the fallback for registries
that cannot send webhooks).
"""

import argparse
import os
from typing import Any

from chassis.errors import ChassisError
from chassis_cli.argtypes import port
from chassis_cli.context import Context, prefect_answers


def add_webhook_relay_parser(commands: Any) -> None:
    relay = commands.add_parser(
        "webhook-relay",
        help="relay MLflow registry webhooks and Alertmanager alerts to Prefect",
        description="Listen for MLflow registry webhooks and emit chassis.model.challenger-set "
        "to Prefect for each challenger alias; the registry-watch deployment's trigger then "
        "rolls the version out. Alertmanager's webhook (POST /alertmanager/webhook, bearer "
        "token CHASSIS_ALERT_TOKEN or <home>/webhooks/alert-token) becomes one "
        "chassis.alert.firing or chassis.alert.resolved event per alert. On start, "
        "registers (or updates) the MLflow webhook "
        "`chassis-relay` with this relay's address and secret. Needs a running Prefect server "
        "(PREFECT_API_URL, or `chassis ui`) and a SQL-backed MLflow registry. The MLflow "
        "server that sends must allow loopback targets: `chassis ui` sets "
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS and MLFLOW_WEBHOOK_ALLOWED_SCHEMES for its own.",
    )
    relay.add_argument("--host", help="bind address (default CHASSIS_WEBHOOK_RELAY_HOST)")
    relay.add_argument("--port", type=port, help="port (default CHASSIS_WEBHOOK_RELAY_PORT, 8788)")
    relay.add_argument(
        "--no-register",
        action="store_true",
        help="do not create or update the MLflow webhook (it is managed elsewhere)",
    )
    relay.set_defaults(handler=run_webhook_relay)


def run_webhook_relay(args: argparse.Namespace, context: Context) -> int:
    settings = context.settings
    if args.host:
        settings.webhook_relay_host = args.host
    if args.port:
        settings.webhook_relay_port = args.port
    context.prepare()
    share_webhook_encryption_key(settings)
    if not os.environ.get("PREFECT_API_URL"):
        raise ChassisError(
            "the relay emits Prefect events and needs a running Prefect server: set "
            "PREFECT_API_URL, or start `chassis ui` first"
        )
    api = os.environ["PREFECT_API_URL"]
    if not prefect_answers(api, timeout=5):
        raise ChassisError(f"no Prefect server answers at {api} (PREFECT_API_URL)")
    import uvicorn

    from chassis.alert_delivery import ALERT_PATH
    from chassis.registry import Registry
    from chassis.webhook_relay import WebhookRelay
    from tasks.alert_events import emit_alerts
    from tasks.registry_events import emit_challenger_set

    secret = settings.resolved_webhook_secret()
    url = settings.resolved_webhook_relay_url()
    allow_local_receiver(url)
    registry = Registry.from_settings(settings)
    if not args.no_register:
        webhook_id = registry.ensure_alias_webhook(url, secret)
        print(f"MLflow webhook chassis-relay ({webhook_id}) posts alias events to {url}")
    alert_token = settings.resolved_alert_token()
    print(f"relaying challenger aliases to Prefect at {os.environ['PREFECT_API_URL']}")
    print(
        f"relaying Alertmanager alerts posted to {ALERT_PATH} (bearer token: "
        + (
            "CHASSIS_ALERT_TOKEN"
            if settings.alert_token
            else str(settings.webhooks_dir / "alert-token")
        )
        + ")"
    )
    uvicorn.run(
        WebhookRelay(secret, emit_challenger_set, alert_token=alert_token, on_alerts=emit_alerts),
        host=settings.webhook_relay_host,
        port=settings.webhook_relay_port,
        log_level="info",
        lifespan="off",
    )
    return 0


def mlflow_server_webhook_env(settings: Any, cache_seconds: int = 5) -> dict[str, str]:
    """What an `mlflow server` over this home needs to deliver webhooks to the relay.

    MLflow delivers only to public https addresses by default; the relay listens on
    loopback over http. The cache TTL is how long a newly registered webhook may go unseen
    by the server. The encryption key is the relay's (see `share_webhook_encryption_key`).
    """
    env = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_CACHE_TTL": str(cache_seconds),
    }
    if not settings.tracking_is_remote():
        own_key: str = settings.webhook_encryption_key()
        env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = os.environ.get(
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", own_key
        )
    return env


def share_webhook_encryption_key(settings: Any) -> None:
    """Every process that reads or writes MLflow's webhook table must use one key (see
    `ChassisSettings.webhook_encryption_key`). Set before MLflow's store is imported."""
    if not settings.tracking_is_remote():
        os.environ.setdefault(
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", settings.webhook_encryption_key()
        )


def allow_local_receiver(url: str) -> None:
    """MLflow refuses to store (and to deliver to) a webhook URL that is not https or that
    resolves to a private address. The relay's own address is one the user chose, so for
    this process, which stores it, those checks are relaxed for it; a user's own `mlflow
    server` needs the same two variables to deliver (`chassis ui` sets them for its own)."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "http":
        os.environ.setdefault("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    try:
        address = ipaddress.ip_address(socket.gethostbyname(parts.hostname or ""))
    except (OSError, ValueError):
        return
    if not address.is_global:
        os.environ.setdefault("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
