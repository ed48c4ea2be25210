"""`chassis serve`: the gateway on uvicorn, for the models named."""

import argparse
import functools
import logging
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chassis.errors import ChassisError, NotServable, SettingsError
from chassis.serving.policy import ServingPolicy, peer_specs, serving_policy_from
from chassis.serving.supervision import RESTART_EXIT_CODE
from chassis_cli.argtypes import port
from chassis_cli.context import Context
from chassis_cli.policy_options import add_model_options, given_values

if TYPE_CHECKING:
    from chassis.serving.asgi import GatewayApp
    from chassis.serving.result_cache import CacheSettings
    from chassis.settings import ChassisSettings
    from chassis.task import Task

POLICY = "serving_"


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve registered models over HTTP (the gateway)",
        description="Start the gateway: each model's champion (or its last committed rollout "
        "split) is downloaded, verified by sha256 and served with ONNX Runtime. A model that "
        "cannot be served (not registered, no champion, refused by its digest or gate "
        "verdict) stops it at start with an error naming the model and why, unless "
        "--allow-missing-models is given: then the others serve, /readyz names the missing "
        "one and it is looked for again until it serves. While the registry does not answer, "
        "it waits and retries (up to --startup-timeout-seconds when set). Admin API under "
        "/admin needs the bearer token "
        "(CHASSIS_GATEWAY_ADMIN_TOKEN or <home>/gateway/admin-token).",
    )
    serve.add_argument(
        "--model",
        action="append",
        required=True,
        dest="models",
        help="registered-model name; repeat to serve several",
    )
    serve.add_argument("--host", help="bind address (default CHASSIS_GATEWAY_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=port, help="port (default CHASSIS_GATEWAY_PORT, 8000)")
    serve.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run this many gateway processes under a local supervisor, on ports PORT .. "
        "PORT+N-1; each one that exits is started again (1: one process, no supervisor)",
    )
    serve.add_argument(
        "--edge",
        action="store_true",
        default=None,
        help="edge mode: serve the verified local copies held here while the registry or the "
        "network is away, and forward a model not held here to --upstream (default "
        "CHASSIS_GATEWAY_EDGE)",
    )
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="the gateway (the cloud) that answers what this one does not; it must answer "
        "GET /healthz at start (default CHASSIS_GATEWAY_UPSTREAM)",
    )
    add_model_options(serve, ServingPolicy, POLICY)
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, context: Context) -> int:
    # Before anything is loaded or started: a bad upstream serves nothing half-configured.
    edge, upstream = upstream_of(args, context.settings)
    if args.replicas != 1:
        return supervise(args, context)
    from chassis.registry.connection import bound_http_retries

    # The gateway retries the registry itself, with backoff, and keeps serving meanwhile.
    bound_http_retries()
    settings = context.prepare()
    policy = serving_policy_from(given_values(args, POLICY))
    import uvicorn

    from chassis.serving import gateway_log
    from chassis.serving.access_log import AccessLog
    from chassis.serving.connection_limits import ConnectionLimits, limited_protocol
    from chassis.serving.lifecycle import DrainingServer

    # Before anything loads: a version refused at start is logged in the format asked for.
    gateway_log.configure(policy.log_format, policy.log_level)
    app = build_app(settings, args.models, policy, upstream=upstream, edge=edge)
    # Every model is tried before anything listens: one that cannot be served ends the
    # command here, with its reason, unless missing models are allowed.
    try:
        app.gateway.first_pass()
    except ChassisError as error:
        # Also as an event: a log pipeline reading JSON lines sees why the gateway stopped.
        gateway_log.event(
            logging.getLogger("chassis.gateway"),
            logging.ERROR,
            gateway_log.GATEWAY_FATAL,
            error=str(error),
        )
        app.gateway.close()
        raise
    config = uvicorn.Config(
        AccessLog(app) if policy.access_log else app,
        host=args.host or settings.gateway_host,
        port=args.port or settings.gateway_port,
        # uvicorn's loggers write through the gateway's handler (configured above), in its
        # format and at its level; uvicorn's own access log stays off (AccessLog, when
        # asked for, names the model and version too).
        log_config=None,
        log_level=policy.log_level,
        access_log=False,
        lifespan="on",
        # httptools, named rather than "auto" (without it uvicorn falls back to h11 silently,
        # at about half the throughput), with the head-size and read-time limits it lacks.
        # The event loop stays "auto": uvloop where it exists.
        http=limited_protocol(ConnectionLimits(policy.max_head_bytes, policy.read_timeout_seconds)),
        # Beyond it uvicorn answers 503 at once instead of queueing without bound.
        limit_concurrency=policy.max_connections,
        # The client a proxy forwarded for (X-Forwarded-For) is read by the access log
        # only: without it, uvicorn's middleware would copy every request's headers into a
        # dict for nothing (~1 us a request). No `server: uvicorn` header: uvicorn checks
        # every header of every response with two regular expressions.
        proxy_headers=policy.access_log,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(policy.grace_seconds),
    )
    DrainingServer(config, app, policy.drain_seconds, policy.access_log).run()
    if app.gateway.fatal is not None:
        raise NotServable(app.gateway.fatal)
    # Asked to restart (POST /admin/restart, supervised only): drained; the supervisor
    # starts it again on this exit code.
    return RESTART_EXIT_CODE if app.restart_asked else 0


def upstream_of(args: argparse.Namespace, settings: "ChassisSettings") -> tuple[bool, str | None]:
    """Edge mode and the upstream, from the options over the settings: the upstream's URL
    checked and its /healthz answering. SettingsError naming the problem otherwise."""
    from chassis.serving.upstream import parse_upstream, probe

    edge = settings.gateway_edge if args.edge is None else args.edge
    given = args.upstream if args.upstream is not None else settings.gateway_upstream
    source = "--upstream" if args.upstream is not None else "CHASSIS_GATEWAY_UPSTREAM"
    if not given:
        if edge:
            raise SettingsError(
                "--edge needs --upstream URL (or CHASSIS_GATEWAY_UPSTREAM): the gateway that "
                "answers the models this one does not hold"
            )
        return False, None
    upstream = parse_upstream(given, source)
    probe(upstream)
    return edge, upstream


def supervise(args: argparse.Namespace, context: Context) -> int:
    """`--replicas N`: N gateway processes under the local supervisor, each run with this
    command's own options on its own port."""
    from chassis.serving import gateway_log
    from chassis.serving.supervision import replica_ports
    from chassis.serving.supervisor import Supervisor

    settings = context.prepare()
    first = args.port or settings.gateway_port
    try:
        ports = replica_ports(first, args.replicas)
    except ValueError as error:
        raise SettingsError(str(error)) from None
    policy = serving_policy_from(given_values(args, POLICY))
    gateway_log.configure(policy.log_format, policy.log_level)
    options = without_options(context.argv, ("--replicas", "--port"))
    host = args.host or settings.gateway_host
    return Supervisor(functools.partial(replica_command, options), ports, host).run()


def replica_command(options: list[str], port: int) -> list[str]:
    """One replica's command line: this command's own options, on `port`, alone. Given
    last, `--port` and `--replicas 1` win over any spelling left in `options` (argparse
    keeps the last value; an abbreviation such as `--rep 3` is not stripped): a replica
    never supervises replicas of its own."""
    return [
        sys.executable,
        "-m",
        "chassis_cli.main",
        *options,
        *("--port", str(port), "--replicas", "1"),
    ]


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`argv` without the options `names` and their values (`--port 1` or `--port=1`)."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item in names:
            skip = True
        elif not item.startswith(tuple(f"{name}=" for name in names)):
            kept.append(item)
    return kept


def build_app(
    settings: "ChassisSettings",
    models: list[str],
    policy: ServingPolicy | None = None,
    *,
    upstream: str | None = None,
    edge: bool = False,
) -> "GatewayApp":
    """The gateway's ASGI app as `chassis serve` runs it (the serving benchmark too); the
    policy defaults to the environment's. `edge` (with `upstream`): an edge gateway
    (chassis/serving/edge.py)."""
    policy = policy or serving_policy_from({})
    from chassis.registry import Registry
    from chassis.serving.asgi import GatewayApp
    from chassis.serving.gateway import RETRY_MAX_SECONDS, Gateway, GatewayConfig
    from chassis.serving.validation import Limits

    config = GatewayConfig(
        state_dir=settings.gateway_local / "state",
        cache_dir=settings.gateway_local / "cache",
        max_batch=policy.max_batch,
        max_wait_ms=policy.max_wait_ms,
        limits=Limits(policy.max_body_bytes, policy.max_rows),
        keep_warm_seconds=policy.keep_warm_seconds,
        request_timeout_seconds=policy.request_timeout_seconds,
        prediction_log=prediction_log_factory(settings),
        # In edge mode a model neither the registry nor the store has is forwarded.
        allow_missing_models=policy.allow_missing_models or edge,
        # A missing model is looked for as often as champions are followed.
        missing_retry_seconds=policy.follow_seconds or RETRY_MAX_SECONDS,
        startup_timeout_seconds=policy.startup_timeout_seconds,
        feedback_window_requests=policy.feedback_window_requests,
        feedback_window_seconds=policy.feedback_window_seconds,
        live_accuracy_rows=policy.live_accuracy_rows,
        peers=peer_specs(policy.peers),
        upstream=upstream,
        result_cache=cache_settings(policy, models),
    )
    registry = Registry.from_settings(settings)
    if edge:
        from chassis.serving.edge import EdgeApp, EdgeGateway

        gateway = EdgeGateway(registry, config, models)
        return EdgeApp(gateway, settings.admin_token(), policy.follow_seconds)
    return GatewayApp(
        Gateway(registry, config, models), settings.admin_token(), policy.follow_seconds
    )


def cache_settings(policy: ServingPolicy, models: list[str]) -> "CacheSettings | None":
    """The result cache the policy asks for (None: no model uses it). A model it names that
    this gateway does not serve is refused: a typo would silently leave it uncached."""
    from chassis.serving.result_cache import CacheSettings

    names = peer_specs(policy.cache_models)  # comma-separated, as peers are
    if not names:
        return None
    unknown = sorted(set(names) - set(models) - {"*"})
    if unknown:
        raise SettingsError(
            f"CHASSIS_GATEWAY_CACHE_MODELS (--cache-models) names {', '.join(map(repr, unknown))}, "
            f"which this gateway does not serve (--model {' --model '.join(models)}); use `*` "
            "for every model served"
        )
    return CacheSettings(
        frozenset(models if "*" in names else names),
        policy.cache_max_bytes,
        policy.cache_ttl_seconds,
        policy.cache_redis_url,
        policy.cache_redis_timeout_seconds,
    )


def prediction_log_factory(
    settings: "ChassisSettings",
) -> "Callable[[str, list[str], Task, bool], Any]":
    from chassis.serving.prediction_log import PredictionLogger
    from chassis.storage import BlobStore

    store = BlobStore(settings, settings.resolved_prediction_log_root())

    def build(model: str, feature_names: list[str], task: "Task", text: bool) -> PredictionLogger:
        return PredictionLogger(
            model,
            feature_names,
            store.write,
            settings.prediction_log_sample_rate,
            settings.prediction_log_flush_seconds,
            task=task,
            text=text,
        ).start()

    return build
