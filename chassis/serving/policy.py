"""How a gateway serves: batching, timeouts and limits, defined once.

A serving policy is what one gateway deployment may tune without touching code: how rows
are batched into model calls, how long a request may take to arrive and to be answered,
what a request may hold, how many connections are taken, and how the gateway follows the
registry and shuts down. It is not a flow parameter, because the gateway is a long-running
process, not a flow run: each deployment sets it in its environment (`CHASSIS_GATEWAY_*`,
e.g. a Kubernetes Deployment's env), and `chassis serve` generates an option for each field
that wins over the environment. Where the gateway listens, its admin token and its local
folder are settings of the process (chassis/settings.py), not of the policy.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis.errors import SettingsError
from chassis.serving.gateway_log import LogFormat, LogLevel

ENV_PREFIX = "CHASSIS_GATEWAY_"


class ServingPolicy(BaseSettings):
    """Every tunable of one gateway, each overridable as `CHASSIS_GATEWAY_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True, frozen=True
    )

    max_batch: int = Field(default=64, ge=1, le=4096, description="Rows per ORT call.")
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="How long a batch may wait for requests already on their way (0: greedy, "
        "batches form from whatever queued while the model was busy).",
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Body limit.")
    max_rows: int = Field(default=1024, ge=1, description="Rows per request limit.")
    max_head_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        le=1 << 20,
        description="Limit on a request's line and headers (431 beyond it).",
    )
    read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Time a request may take to arrive, first byte to last (408 beyond it: "
        "slow or stalled clients do not keep connections and buffers).",
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Time a prediction may take once received (504 beyond it; queued work "
        "of a client that got its 504 is not computed).",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Concurrent connections and requests the gateway takes; beyond it new "
        "requests get 503 at once (keep it under the open-files limit, `ulimit -n`).",
    )
    keep_warm_seconds: float = Field(
        default=300, ge=0, description="Blue-green: how long the old color stays loaded."
    )
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long the gateway keeps serving while /readyz says 503, "
        "so a load balancer or Kubernetes stops sending it requests first (set it to the "
        "readiness probe's period x failure threshold).",
    )
    grace_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="After draining, how long requests in flight may take before the "
        "gateway exits anyway (keep drain + grace under Kubernetes' "
        "terminationGracePeriodSeconds).",
    )
    follow_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often the gateway checks the champion alias "
        "(0: never); it follows moves made by hand or by `chassis rollback` between rollouts. "
        "Also how often a missing model is looked for (0: every 30 s).",
    )
    startup_timeout_seconds: float = Field(
        default=0.0,
        ge=0,
        description="How long the gateway may take to get ready at start (every model "
        "served; one with allow_missing_models) while the registry or artifact store does "
        "not answer; then it stops with an error naming each model not served and why (0: no "
        "limit: it retries with backoff, serving verified local copies meanwhile).",
    )
    allow_missing_models: bool = Field(
        default=False,
        description="Serve the models that can be served when another cannot (not "
        "registered, no champion, refused by digest or gate verdict): /readyz names it and "
        "says ready once one model serves, and it is looked for again until it serves. Off: "
        "the gateway refuses to start, naming the model and why.",
    )
    feedback_window_requests: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Feedback (POST /v1/models/NAME/feedback) joins a prediction while it is "
        "among the model's last this many predict requests on the replica that answered "
        "(older ids get 410 too_late); memory grows with it (~200 bytes a request).",
    )
    feedback_window_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="... and at most this many seconds old (older ids get 410 too_late).",
    )
    live_accuracy_rows: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="chassis_live_accuracy_ratio (and a regressor's "
        "chassis_live_mean_absolute_error) is over each version's last this many feedback "
        "rows on the replica.",
    )
    peers: str = Field(
        default="",
        description="The fleet's gateways, comma-separated URLs and/or dns:HOST:PORT names (a "
        "Kubernetes headless Service: every ready pod): feedback on a prediction another "
        "replica answered is forwarded to it, so feedback sent through one Service or load "
        "balancer is joined whichever replica receives it. Empty: refused as unknown_id.",
    )

    @field_validator("peers")
    @classmethod
    def _peer_specs(cls, value: str) -> str:
        for spec in peer_specs(value):
            if spec.startswith("dns:"):
                host, _, port = spec.removeprefix("dns:").rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"peer {spec!r}: expected dns:HOST:PORT")
            else:
                parts = urlsplit(spec)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ValueError(
                        f"peer {spec!r}: expected a URL like http://host:8000 or dns:HOST:PORT"
                    )
        return value

    cache_models: str = Field(
        default="",
        description="Models whose answers the result cache keeps, comma-separated (`*`: every "
        "model served); empty: none (the default). An answer is given again only for the same "
        'model, routed version and input bytes (README.md, "Result cache").',
    )
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=4096,
        description="Memory the in-process result cache may hold, in bytes (least recently "
        "used answers leave first).",
    )
    cache_ttl_seconds: float = Field(
        default=300.0,
        gt=0,
        le=7 * 24 * 3600,
        description="How long a cached answer is given again (in process and in Redis).",
    )
    cache_redis_timeout_seconds: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="How long one Redis command of the result cache may take (connecting "
        "included) before the request is served without it and Redis is left alone for 2 s.",
    )
    cache_redis_url: str = Field(
        default="",
        description="A Redis shared by the fleet as the result cache's second level "
        "(redis://HOST:PORT/DB); empty: in-process only. Redis down: served uncached.",
    )

    @field_validator("cache_redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value:
            from chassis.serving.redis_level import redis_url_problem

            problem = redis_url_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    log_format: LogFormat = Field(
        default="text",
        description="The gateway's log on stderr: `text` (one key=value line per event) or "
        "`json` (JSON lines); uvicorn's own lines too. Events and fields: README.md, "
        '"Gateway logs".',
    )
    log_level: LogLevel = Field(
        default="info",
        description="Lowest level the gateway and uvicorn log (info: start-up, every split "
        "change, readiness, drain; warning: only what went wrong).",
    )
    access_log: bool = Field(
        default=False,
        description="Log every request (method, path, status, model, version, latency) at "
        'info. Off by default: it costs throughput (README.md, "Gateway logs").',
    )


def peer_specs(text: str) -> tuple[str, ...]:
    """The entries of a comma-separated `peers` value (chassis.rollout.fleet.resolve_replicas
    turns them into URLs)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def serving_policy_from(values: Mapping[str, Any]) -> ServingPolicy:
    """The environment's policy with `values` (command-line options) over it; a bad value
    is a `SettingsError` naming it as the user gave it: `--cache-redis-url 'foo': ...` for
    an option, `CHASSIS_GATEWAY_CACHE_REDIS_URL 'foo': ...` for the environment."""
    try:
        # Keyword values win over the environment (pydantic-settings' source order).
        return ServingPolicy.model_validate(dict(values))
    except ValidationError as error:
        raise SettingsError("; ".join(_problem(e, values) for e in error.errors())) from None


def _problem(error: ErrorDetails, given: Mapping[str, Any]) -> str:
    field = "_".join(map(str, error["loc"]))
    source = f"--{field.replace('_', '-')}" if field in given else f"{ENV_PREFIX}{field.upper()}"
    # A validator's ValueError comes as "Value error, <its message>": the message alone.
    return f"{source} {error['input']!r}: {error['msg'].removeprefix('Value error, ')}"
