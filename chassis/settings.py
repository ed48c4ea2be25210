"""Typed settings, read from `CHASSIS_*` environment variables (and a `.env` file).

Build one `ChassisSettings()` at an entry point and pass it down; nothing here runs on import.
The embedded default keeps all state under `./.chassis/`: MLflow on SQLite with a local
artifact folder, and Prefect's home (its SQLite database), so `make ui` shows exactly what
`make release` did.
"""

from collections.abc import Callable
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis import running_ui as ui_record
from chassis.errors import SettingsError
from chassis.running_ui import RunningUi

# The repository root of a checkout (an editable install): the bundled specs' suites live in
# its expectations/, beside chassis/ (chassis/specs/__init__.py names them from here).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = "chassis.specs.digits:spec"


# Bind addresses that mean "every interface": no browser can open them as a host.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def url_host(bind_host: str) -> str:
    """The host part of a URL for a server bound to `bind_host`: a wildcard bind is reached
    at loopback on this machine (a browser elsewhere needs the machine's own name, which
    only the user knows), an IPv6 literal goes in brackets."""
    if bind_host in WILDCARD_HOSTS:
        return "127.0.0.1"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host


class ChassisSettings(BaseSettings):
    """Every knob of Chassis, each overridable as `CHASSIS_<NAME>`. The gateway's batching,
    timeouts and limits (`CHASSIS_GATEWAY_MAX_BATCH`, ...) are its serving policy:
    chassis/serving/policy.py."""

    model_config = SettingsConfigDict(
        env_prefix="CHASSIS_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(
        default=Path(".chassis"),
        description="Folder for local state: MLflow database and artifacts, Prefect home.",
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: SQLite at <home>/mlflow.db. "
        "Set it to http://host:port to use an `mlflow server`.",
    )
    registry_uri: str | None = Field(
        default=None, description="MLflow registry URI. Default: the tracking URI."
    )
    artifact_root: str | None = Field(
        default=None,
        description="Where new MLflow experiments store artifacts. Default: <home>/artifacts. "
        "Ignored for experiments that already exist.",
    )
    experiment_name: str | None = Field(
        default=None,
        description="MLflow experiment for runs. Default: the spec's registered-model name.",
    )
    default_spec: str = Field(
        default=DEFAULT_SPEC, description="Spec used when none is given (package.module:attr)."
    )
    parity_tolerance: float = Field(
        default=1e-4,
        gt=0,
        le=1,
        description="Largest allowed absolute difference between torch and ONNX Runtime outputs.",
    )
    expectations_dir: Path = Field(
        default=Path("expectations"),
        description="Folder of Great Expectations suites (JSON), one file per suite: a spec's "
        "relative suite reference is looked up here. Relative to the working directory (your "
        "project), like the home; the bundled specs name their own suites by absolute path.",
    )

    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint override (MinIO, a local S3 server); empty for AWS itself. "
        "Credentials come from the usual AWS variables or profile, never from Chassis settings.",
    )
    s3_max_attempts: int = Field(
        default=5, ge=1, le=20, description="boto3 attempts per S3 call (standard retry mode)."
    )
    gateway_host: str = Field(default="127.0.0.1", description="Host `chassis serve` binds.")
    gateway_port: int = Field(default=8000, ge=1, le=65535, description="Gateway port.")
    gateway_url: str | None = Field(
        default=None, description="Where flows reach the gateway. Default: http://host:port."
    )
    gateway_replicas: str | None = Field(
        default=None,
        description="Every gateway replica, for the flows that must ask each one (the "
        "diagnosis): comma-separated URLs or dns:HOST:PORT (every address a name resolves "
        "to, as a Kubernetes headless Service gives one per ready pod). Default: the one "
        "gateway at gateway_url.",
    )
    gateway_admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin API. Default: generated once and kept in "
        "<home>/gateway/admin-token (mode 0600).",
    )
    registry_signing_key: SecretStr | None = Field(
        default=None,
        description="Key that signs gate verdicts in the registry (HMAC-SHA256); every "
        "process that records gates or serves versions needs the same one. Default: "
        "generated once and kept in <home>/registry-signing-key (mode 0600).",
    )
    gateway_local_dir: Path | None = Field(
        default=None,
        description="Where one gateway process keeps its verified model files and its "
        "copy of the split (default <home>/gateway). Give each replica its own when several "
        "share a home, as pods each have their own disk.",
    )
    gateway_edge: bool = Field(
        default=False,
        description="Run `chassis serve` as an edge gateway (`--edge`): it serves the verified "
        "local copies it holds while the registry or the network is away, and forwards a "
        "model it does not hold to gateway_upstream. Needs gateway_upstream.",
    )
    gateway_upstream: str | None = Field(
        default=None,
        description="Another gateway (the cloud, http(s)://host:port) that answers what this "
        "one does not (`--upstream`): in edge mode, a model not held here. It must answer "
        "GET /healthz when the gateway starts.",
    )
    pushgateway_url: str | None = Field(
        default=None,
        description="A Prometheus Pushgateway (http://host:9091) the drift check pushes its "
        "result to after each judged check (chassis_drift_share_ratio, "
        "chassis_drift_detected, chassis_drift_check_timestamp_seconds; job chassis-drift, "
        "grouped by model). Empty: nothing is pushed.",
    )
    prediction_log_root: str | None = Field(
        default=None,
        description="Where the gateway writes its prediction log (Parquet): a folder or "
        "s3://bucket/prefix. Default: <home>/predictions.",
    )
    prediction_log_sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of served requests written to the log."
    )
    prediction_log_flush_seconds: float = Field(
        default=5.0, gt=0, description="How often buffered predictions become a file."
    )
    webhook_relay_host: str = Field(
        default="127.0.0.1", description="Host `chassis webhook-relay` binds."
    )
    webhook_relay_port: int = Field(
        default=8788, ge=1, le=65535, description="Port of `chassis webhook-relay`."
    )
    webhook_relay_url: str | None = Field(
        default=None,
        description="The address MLflow posts registry webhooks to. Default: "
        "http://<relay host>:<relay port>/mlflow/webhook.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC secret shared with MLflow's webhook. Default: generated once and "
        "kept in <home>/webhooks/secret (mode 0600).",
    )
    alert_token: SecretStr | None = Field(
        default=None,
        description="Bearer token Alertmanager sends to the relay's /alertmanager/webhook "
        "(its http_config.authorization.credentials_file). Default: generated once and kept "
        "in <home>/webhooks/alert-token (mode 0600).",
    )
    ui_host: str = Field(default="127.0.0.1", description="Host `chassis ui` binds the UIs to.")
    mlflow_ui_port: int = Field(default=5000, ge=1, le=65535, description="MLflow UI port.")
    prefect_ui_port: int = Field(default=4200, ge=1, le=65535, description="Prefect UI port.")

    @field_validator("home", "expectations_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Absolute paths so that URIs built from them survive a change of working directory.
        return value.expanduser().resolve()

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.mlflow_db}"

    def resolved_registry_uri(self) -> str:
        return self.registry_uri or self.resolved_tracking_uri()

    def resolved_artifact_root(self) -> str | None:
        """None means: let the tracking server choose (it proxies artifacts itself)."""
        if self.artifact_root:
            return self.artifact_root
        if self.tracking_is_remote():
            return None
        return (self.home / "artifacts").as_uri()

    def tracking_is_remote(self) -> bool:
        return self.resolved_tracking_uri().startswith(("http://", "https://"))

    def uses_s3(self) -> bool:
        return (self.artifact_root or "").startswith("s3://") or self.s3_endpoint_url is not None

    # Where the UIs are. `served_*`: what a `chassis ui` run with these settings serves (it
    # binds there). The others: where everyone else finds them, for links and reporting
    # runs: a port set explicitly (CHASSIS_*_UI_PORT, or an option of `chassis ui` assigned
    # here) wins; else the addresses a running `chassis ui` over this home recorded (it may
    # have been given other ports: chassis/running_ui.py); else the served defaults.

    def served_mlflow_ui_url(self) -> str:
        """The MLflow UI `chassis ui` serves from these settings: the tracking server
        itself when it is remote (then `chassis ui` starts none)."""
        if self.tracking_is_remote():
            return self.resolved_tracking_uri().rstrip("/")
        return f"http://{url_host(self.ui_host)}:{self.mlflow_ui_port}"

    def served_prefect_ui_url(self) -> str:
        """The Prefect UI `chassis ui` serves from these settings; its API is under /api."""
        return f"http://{url_host(self.ui_host)}:{self.prefect_ui_port}"

    def mlflow_ui_url(self) -> str:
        """Where a person looks at runs and versions: the remote tracking server, else
        CHASSIS_MLFLOW_UI_PORT if set, else a running `chassis ui`'s MLflow UI, else the
        default port."""
        if not self.tracking_is_remote() and "mlflow_ui_port" not in self.model_fields_set:
            running = self.running_ui()
            if running is not None:
                return running.mlflow_ui_url
        return self.served_mlflow_ui_url()

    def prefect_ui_url(self) -> str:
        """Where a browser opens the Prefect UI (see `prefect_urls`)."""
        return self.prefect_urls()[0]

    def prefect_urls(self) -> tuple[str, str]:
        """The Prefect UI a browser opens and the API a process on this machine reports runs
        to: CHASSIS_PREFECT_UI_PORT's if set, else a running `chassis ui`'s, else the
        default port's."""
        running = None if "prefect_ui_port" in self.model_fields_set else self.running_ui()
        if running is not None:
            return running.prefect_ui_url, running.prefect_api_url
        served = self.served_prefect_ui_url()
        return served, f"{served}/api"

    def running_ui(self) -> RunningUi | None:
        """The `chassis ui` serving over this home now, from its record."""
        return ui_record.running_ui(self.home)

    def resolved_prediction_log_root(self) -> str:
        return self.prediction_log_root or str(self.home / "predictions")

    @property
    def gateway_dir(self) -> Path:
        return self.home / "gateway"

    @property
    def gateway_local(self) -> Path:
        return self.gateway_local_dir or self.gateway_dir

    def resolved_gateway_url(self) -> str:
        return (self.gateway_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    def replica_specs(self) -> list[str]:
        """`gateway_replicas` as a list (for chassis.rollout.fleet.resolve_replicas), or the
        one gateway URL."""
        listed = [part.strip() for part in (self.gateway_replicas or "").split(",")]
        return [part for part in listed if part] or [self.resolved_gateway_url()]

    def admin_token(self) -> str:
        """The configured token, or the one generated for this home on first use."""
        if self.gateway_admin_token is not None:
            source = "CHASSIS_GATEWAY_ADMIN_TOKEN"
            token = self.gateway_admin_token.get_secret_value()
        else:
            path = self.gateway_dir / "admin-token"
            source = str(path)
            token = _generated_secret(path, _url_safe_token)
        # An empty token would open the admin API to `Authorization: Bearer ` (any client
        # can send that); a short one can be guessed. Refused where the gateway starts.
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise SettingsError(
                f"the gateway admin token from {source} has {len(token)} characters; it needs "
                f"at least {MIN_ADMIN_TOKEN_CHARS} (make one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        return token

    def resolved_registry_signing_key(self) -> str:
        """The configured signing key, or the one generated for this home on first use."""
        if self.registry_signing_key is not None:
            source = "CHASSIS_REGISTRY_SIGNING_KEY"
            key = self.registry_signing_key.get_secret_value()
        else:
            path = self.home / "registry-signing-key"
            source = str(path)
            key = _generated_secret(path, _url_safe_token)
        if len(key) < MIN_ADMIN_TOKEN_CHARS:
            raise SettingsError(
                f"the registry signing key from {source} has {len(key)} characters; it needs "
                f"at least {MIN_ADMIN_TOKEN_CHARS}"
            )
        return key

    @property
    def webhooks_dir(self) -> Path:
        return self.home / "webhooks"

    def resolved_webhook_relay_url(self) -> str:
        default = f"http://{self.webhook_relay_host}:{self.webhook_relay_port}/mlflow/webhook"
        return self.webhook_relay_url or default

    def resolved_webhook_secret(self) -> str:
        """The configured webhook secret, or the one generated for this home on first use."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        return _generated_secret(self.webhooks_dir / "secret", _url_safe_token)

    def resolved_alert_token(self) -> str:
        """The configured alert token, or the one generated for this home on first use."""
        if self.alert_token is not None:
            source, token = "CHASSIS_ALERT_TOKEN", self.alert_token.get_secret_value()
        else:
            path = self.webhooks_dir / "alert-token"
            source, token = str(path), _generated_secret(path, _url_safe_token)
        # As the admin token: an empty or short one would let anyone start a diagnosis.
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise SettingsError(
                f"the alert token from {source} has {len(token)} characters; it needs at "
                f"least {MIN_ADMIN_TOKEN_CHARS}"
            )
        return token

    def webhook_encryption_key(self) -> str:
        """The Fernet key MLflow encrypts webhook secrets with in its database.

        MLflow generates a fresh key in every process unless MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY
        is set, so a secret stored by one process (or before a restart) cannot be read by the
        `mlflow server` that delivers the webhook. One key per home, kept with mode 0600.
        """
        return _generated_secret(self.webhooks_dir / "encryption-key", _fernet_key)

    def ensure_local_state(self) -> None:
        """Create the local folders the embedded default needs (only what is local)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        if self.artifact_root is None and not self.tracking_is_remote():
            (self.home / "artifacts").mkdir(parents=True, exist_ok=True)


# 16 URL-safe characters carry 96 bits; the generated token has 43.
MIN_ADMIN_TOKEN_CHARS = 16


def _url_safe_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _fernet_key() -> str:
    import base64
    import os

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _generated_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept at `path`, created there (mode 0600, never group/world readable).

    Written whole to a private file first and then linked into place, so a process starting
    at the same moment (replicas side by side) reads either no file or the whole secret,
    never the empty file a create-then-write would show it; the first link wins."""
    import os

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(make())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: everyone uses that one
        finally:
            draft.unlink()
    return path.read_text().strip()
