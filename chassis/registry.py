"""The one module that talks to the MLflow model registry.

Registration happens last, after every check has passed, and in one call that carries all
lineage tags, so a version never exists without its sha256 and lineage. If anything fails
after the version was created, the version is deleted again: no half-registered versions.
"""

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chassis.digests import sha256_file
from chassis.errors import IntegrityError, RegistryError, RegistryUnreachable
from chassis.failpoints import failpoint

if TYPE_CHECKING:
    from chassis.aliases import Disqualification, Intent, Plan, Recovery
    from chassis.rollout.record import RolloutRecord

# Lineage and integrity tags every Chassis version carries.
TAG_SPEC = "chassis.spec"
TAG_DATASET_FINGERPRINT = "chassis.dataset_fingerprint"
TAG_RUN_ID = "chassis.run_id"
TAG_GIT_COMMIT = "chassis.git_commit"
TAG_ONNX_SHA256 = "chassis.onnx_sha256"
TAG_FLOW_RUN_ID = "chassis.flow_run_id"
TAG_WEIGHTS_SHA256 = "chassis.weights_sha256"
TAG_N_FEATURES = "chassis.n_features"
TAG_N_CLASSES = "chassis.n_classes"
TAG_FEATURE_COLUMNS = "chassis.feature_columns"  # JSON list, the model's input order
REFERENCE_FILE = "extra_files/reference.parquet"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "extra_files/model.safetensors"
REQUIRED_VERSION_TAGS = (TAG_SPEC, TAG_DATASET_FINGERPRINT, TAG_RUN_ID, TAG_ONNX_SHA256)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    tags: dict[str, str]


def register_version(
    *,
    name: str,
    model_uri: str,
    model_id: str | None,
    run_id: str,
    tags: dict[str, str],
    description: str,
    version_description: str = "",
) -> RegisteredVersion:
    """Create a new version of `name` from a logged model, with its lineage tags."""
    import mlflow

    missing = [t for t in REQUIRED_VERSION_TAGS if not tags.get(t)]
    if missing:
        raise RegistryError(f"refusing to register {name!r} without tag(s): {', '.join(missing)}")
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        try:
            client.create_registered_model(name, description=description or None)
        except mlflow.exceptions.MlflowException:
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
    return RegisteredVersion(name, int(created.version), run_id, dict(stored.tags))


def version_tags(name: str, version: int) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_model_version(name, str(version)).tags)


def list_versions(name: str) -> list[int]:
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(int(v.version) for v in found)


def describe_versions(name: str) -> list[dict[str, object]]:
    """Every version of `name`, newest first, with aliases and tags (for people to read)."""
    import datetime

    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"no registered model named {name!r}") from None
    described = []
    for number in reversed(list_versions(name)):
        # search_model_versions returns empty aliases; get_model_version has them.
        version = client.get_model_version(name, str(number))
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


def version_artifact_uri(name: str, version: int) -> str:
    """Where the version's model files live in the artifact store (file://, s3://, ...)."""
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_download_uri(name, str(version)))


def lookup_failed(error: Exception, missing: str) -> RegistryError:
    """What a failed registry read means: `missing` when the registry answered that the
    model or version does not exist; RegistryUnreachable when it did not answer (the gateway
    then retries and keeps serving what it verified, instead of reporting a missing model).
    """
    code = getattr(error, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return RegistryError(missing)
    text = str(error)
    # MLflow's REST client wraps connection failures as "API request to <url> failed with
    # exception ..."; a SQLite store that cannot be opened raises OperationalError text.
    if (
        code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
        or "failed with exception" in text
        or "unable to open database" in text
        or "database is locked" in text
    ):
        return RegistryUnreachable(f"registry unreachable: {text.splitlines()[0][:300]}")
    return RegistryError(f"{missing} ({text.splitlines()[0][:300]})" if text else missing)


@dataclass(frozen=True)
class VersionFiles:
    """A version's files, downloaded and verified against the digests recorded with it."""

    name: str
    version: int
    onnx_path: Path
    weights_path: Path | None
    tags: dict[str, str]


def fetch_version(name: str, version: int, destination: Path) -> VersionFiles:
    """Download a version's ONNX model (and torch weights if recorded) and verify sha256.

    A file whose digest differs from the one recorded at registration is refused with both
    digests named; nothing unverified is returned.
    """
    import mlflow

    client = mlflow.MlflowClient()
    try:
        model_version = client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"{name!r} has no version {version}") from None
    tags = dict(model_version.tags)
    if TAG_ONNX_SHA256 not in tags:
        raise IntegrityError(
            f"{name} v{version} has no {TAG_ONNX_SHA256} tag: it was not registered by Chassis "
            "and cannot be verified"
        )
    location = version_artifact_uri(name, version).rstrip("/")
    destination.mkdir(parents=True, exist_ok=True)

    def verified(relative: str, expected: str) -> Path:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/{relative}", dst_path=str(destination)
            )
        )
        actual = sha256_file(local)
        if actual != expected:
            local.unlink(missing_ok=True)
            raise IntegrityError(
                f"{name} v{version}: {relative} does not match its recorded digest "
                f"(expected sha256 {expected}, actual {actual}); refusing to load it"
            )
        return local

    onnx_path = verified(ONNX_FILE, tags[TAG_ONNX_SHA256])
    weights_path = (
        verified(WEIGHTS_FILE, tags[TAG_WEIGHTS_SHA256]) if TAG_WEIGHTS_SHA256 in tags else None
    )
    return VersionFiles(name, version, onnx_path, weights_path, tags)


# --------------------------------------------------------------------------------------
# Aliases: the only place they move. Every move is compare-and-set under a registry lock.
# Before the first alias moves, the plan is written as an intent (a model tag); the audit
# record is the commit point; the intent is cleared last. A crash anywhere in between leaves
# the intent, and whoever takes the lock next resolves it (see aliases.plan_recovery).
# --------------------------------------------------------------------------------------

TAG_GATES = "chassis.gates"  # "passed" or "failed", set with the gate report
TAG_GATE_REPORT = "chassis.gate_report"  # where the report is stored
AUDIT_TAG_PREFIX = "chassis.audit."
TAG_INTENT = "chassis.intent"  # the alias change in progress (JSON, see aliases.Intent)
TAG_LAST_RECOVERY = "chassis.last_recovery"  # how the last interrupted change was resolved
LOCK_SUFFIX = ".chassis-lock"
# A lock is held for a handful of registry calls (well under a second on SQLite, a few
# seconds behind a remote server): 30 s is ample, and it is renewed when the intent is
# written, so the moves that follow always have a full TTL. A crashed holder blocks alias
# changes for at most this long. CHASSIS_LOCK_TTL_SECONDS overrides it (tests use seconds).
LOCK_TTL_SECONDS = 30.0
# A waiter breaks a lock only a margin after its recorded expiry (clock skew between hosts;
# and the holder's renewal, which checks the expiry a moment before it extends it) and waits
# at least that long, so it always outwaits a lock whose holder died. The margin is 5 s, or
# half the TTL if that is shorter (a TTL of seconds is for tests on one host).
LOCK_MARGIN_SECONDS = 5.0
LOCK_TTL_MAX_SECONDS = 3600.0


def lock_ttl_seconds() -> float:
    """The lock lifetime this process writes (CHASSIS_LOCK_TTL_SECONDS, default 30 s)."""
    import os

    text = os.environ.get("CHASSIS_LOCK_TTL_SECONDS", "").strip()
    if not text:
        return LOCK_TTL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= LOCK_TTL_MAX_SECONDS:
        raise RegistryError(
            f"CHASSIS_LOCK_TTL_SECONDS must be a number of seconds in (0, "
            f"{LOCK_TTL_MAX_SECONDS:.0f}], got {text!r}"
        )
    return value


@dataclass(frozen=True)
class AuditRecord:
    sequence: int
    at: str
    actor: str
    action: str
    moves: list[dict[str, int | None]]
    reason: str
    evidence: dict[str, str]
    intent: str = ""  # token of the intent this record commits (empty before intents existed)

    def to_json(self) -> str:
        import json

        return json.dumps(
            {
                "at": self.at,
                "actor": self.actor,
                "action": self.action,
                "moves": self.moves,
                "reason": self.reason,
                "evidence": self.evidence,
                "intent": self.intent,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class AliasChange:
    """The outcome of an alias operation: what moved (nothing, for a repeated promotion)."""

    name: str
    action: str
    noop: bool
    aliases_before: dict[str, int]
    aliases_after: dict[str, int]
    audit: AuditRecord | None


def current_aliases(name: str) -> dict[str, int]:
    import mlflow

    from chassis.aliases import ALIASES

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"no registered model named {name!r}") from None
    return {alias: int(v) for alias, v in model.aliases.items() if alias in ALIASES}


def history(name: str) -> list[AuditRecord]:
    """Every alias move of `name`, oldest first, read from the registered model's tags."""
    import json

    import mlflow

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"no registered model named {name!r}") from None
    records = []
    for key, value in model.tags.items():
        if key.startswith(AUDIT_TAG_PREFIX):
            data = json.loads(value)
            records.append(AuditRecord(sequence=int(key[len(AUDIT_TAG_PREFIX) :]), **data))
    return sorted(records, key=lambda r: r.sequence)


class RegistryLock:
    """A cross-process, cross-host mutex per model, made of the registry's own guarantee
    that registered-model names are unique: creating `<name>.chassis-lock` succeeds for
    exactly one caller. Works the same on SQLite and behind an `mlflow server`.

    The lock records its expiry (now + TTL). A lock left by a crashed holder is broken a
    margin after that expiry, and a waiter waits until then whatever its own `wait_seconds`
    (default: one TTL plus the margin), so lifetime and waiting agree: a waiter always
    outwaits a dead holder.
    """

    def __init__(self, name: str, wait_seconds: float | None = None) -> None:
        self.lock_name = f"{name}{LOCK_SUFFIX}"
        self.ttl = lock_ttl_seconds()
        # At least one full lifetime: a lock taken just before we asked is outwaited.
        self.margin = min(LOCK_MARGIN_SECONDS, self.ttl / 2)
        self.wait_seconds = self.ttl + self.margin if wait_seconds is None else wait_seconds
        self.token = ""

    def __enter__(self) -> "RegistryLock":
        import random
        import time
        import uuid

        import mlflow

        client = mlflow.MlflowClient()
        self.token = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                client.create_registered_model(
                    self.lock_name,
                    tags={
                        "chassis.lock_owner": self.token,
                        "chassis.lock_expires": str(time.time() + self.ttl),
                    },
                    description="Held by Chassis while it moves aliases; removed when done.",
                )
                return self
            except mlflow.exceptions.MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(
                    error
                ):
                    raise
            breakable_in = self._break_if_expired(client)
            # Never give up before the lock we saw can be broken.
            deadline = max(deadline, time.monotonic() + breakable_in + 0.5)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"timed out after {self.wait_seconds:.0f} s waiting for {self.lock_name!r}; "
                    "another alias change is in progress"
                )
            time.sleep(0.05 + random.random() * 0.15)  # jitter, not crypto

    def _break_if_expired(self, client: "object") -> float:
        """Delete the lock if its expiry plus the margin has passed; return the seconds
        until it may be broken (0 when it was, or is gone)."""
        import time

        import mlflow

        try:
            held = client.get_registered_model(self.lock_name)  # type: ignore[attr-defined]
        except mlflow.exceptions.MlflowException:
            return 0.0  # released meanwhile
        try:
            expires = float(held.tags.get("chassis.lock_expires", "inf"))
        except ValueError:
            expires = float("inf")
        breakable_at = min(expires, time.time() + LOCK_TTL_MAX_SECONDS) + self.margin
        if breakable_at > time.time():
            return breakable_at - time.time()
        with suppress(mlflow.exceptions.MlflowException):  # another waiter broke it first
            client.delete_registered_model(self.lock_name)  # type: ignore[attr-defined]
        return 0.0

    def renew(self) -> None:
        """Fencing before the first alias moves: refuse if the lock is no longer ours or has
        expired (a waiter may break it), else extend it by a full TTL. A waiter breaks a
        lock only LOCK_MARGIN_SECONDS after expiry, so renewing an unexpired lock is safe."""
        import time

        import mlflow

        client = mlflow.MlflowClient()
        try:
            held = client.get_registered_model(self.lock_name)
        except mlflow.exceptions.MlflowException:
            held = None
        expires = float(held.tags.get("chassis.lock_expires", "0")) if held else 0.0
        if held is None or held.tags.get("chassis.lock_owner") != self.token:
            raise RegistryError(f"lost {self.lock_name!r} to another process; nothing was changed")
        if expires <= time.time():
            raise RegistryError(
                f"held {self.lock_name!r} past its {self.ttl:.0f} s lifetime; nothing was changed"
            )
        client.set_registered_model_tag(
            self.lock_name, "chassis.lock_expires", str(time.time() + self.ttl)
        )

    def __exit__(self, *exc: object) -> None:
        import mlflow

        client = mlflow.MlflowClient()
        try:
            held = client.get_registered_model(self.lock_name)
            if held.tags.get("chassis.lock_owner") == self.token:
                client.delete_registered_model(self.lock_name)
        except mlflow.exceptions.MlflowException:
            pass


def require_passed_gates(name: str, version: int) -> dict[str, str]:
    """A version may take traffic only with a stored gate report that passed."""
    import mlflow

    try:
        tags = dict(mlflow.MlflowClient().get_model_version(name, str(version)).tags)
    except mlflow.exceptions.MlflowException as error:
        missing = f"{name!r} has no version {version}; nothing was changed"
        raise lookup_failed(error, missing) from None
    verdict = tags.get(TAG_GATES)
    if verdict is None:
        raise RegistryError(
            f"{name} v{version} has no gate report; run `chassis gates --model {name} "
            f"--version {version}` first; nothing was changed"
        )
    if verdict != "passed":
        raise RegistryError(
            f"{name} v{version} failed its gates (report: {tags.get(TAG_GATE_REPORT, '?')}); "
            "it cannot be promoted; nothing was changed"
        )
    from chassis import attestation

    attestation.check(name, version, tags, TAG_ONNX_SHA256, TAG_GATES)
    return tags


def verify_for_champion(name: str, version: int) -> dict[str, str]:
    """What is about to become champion must have passed its gates and its stored ONNX
    file must still match the sha256 recorded at registration. Returns the version's tags."""
    import tempfile

    tags = require_passed_gates(name, version)
    with tempfile.TemporaryDirectory(prefix="chassis-verify-") as workdir:
        try:
            fetch_version(name, version, Path(workdir))
        except IntegrityError as error:
            raise IntegrityError(f"{error}; nothing was changed") from None
    return tags


def read_intent(name: str) -> "Intent | None":
    """The alias change in progress, or left by a crash (None: none)."""
    import mlflow

    from chassis.aliases import Intent

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"no registered model named {name!r}") from None
    text = model.tags.get(TAG_INTENT)
    return Intent.from_json(text) if text else None


def read_last_recovery(name: str) -> dict[str, object] | None:
    """How the last interrupted alias change was resolved (None: none ever was)."""
    import json

    import mlflow

    text = mlflow.MlflowClient().get_registered_model(name).tags.get(TAG_LAST_RECOVERY)
    return dict(json.loads(text)) if text else None


def _move(client: "object", name: str, alias: str, version: int | None) -> None:
    if version is None:
        client.delete_registered_model_alias(name, alias)  # type: ignore[attr-defined]
    else:
        client.set_registered_model_alias(name, alias, str(version))  # type: ignore[attr-defined]


def _resolve(name: str, intent: "Intent", actor: str | None) -> "Recovery":
    """Resolve `intent` (aliases.plan_recovery: complete if its audit record exists, else
    undo), then clear it. With `actor`, it was left by a crash: the resolution is recorded
    on the model (TAG_LAST_RECOVERY) for people to read."""
    import datetime
    import json

    import mlflow

    from chassis.aliases import plan_recovery

    client = mlflow.MlflowClient()
    committed = any(record.intent == intent.token for record in history(name))
    recovery = plan_recovery(intent, current_aliases(name), committed)
    for index, move in enumerate(recovery.moves, start=1):
        _move(client, name, move.alias, move.after)
        failpoint(f"recover.after-move-{index}")
    if actor is not None:
        note = {
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "by": actor,
            "outcome": recovery.outcome,
            "restored": [move.to_dict() for move in recovery.moves],
            "left_alone": list(recovery.left_alone),
            "intent": json.loads(intent.to_json()),
        }
        client.set_registered_model_tag(name, TAG_LAST_RECOVERY, json.dumps(note)[:5000])
    client.delete_registered_model_tag(name, TAG_INTENT)
    return recovery


def _recover_leftover(name: str, actor: str) -> "Recovery | None":
    """Under the lock: resolve an intent a crashed change left, if any."""
    intent = read_intent(name)
    if intent is None:
        return None
    return _resolve(name, intent, f"{actor} (on taking the registry lock)")


@contextmanager
def _alias_lock(name: str, actor: str) -> "Iterator[RegistryLock]":
    """The registry lock, with any change a crashed holder left resolved first: every alias
    operation starts from a consistent state."""
    with RegistryLock(name) as lock:
        _recover_leftover(name, actor)
        yield lock


def settled_aliases(name: str, *, actor: str) -> dict[str, int]:
    """The aliases with no change half-done: what a command given now must compare against.

    If an intent is pending, wait for the lock (a live holder finishes; a crashed one's change
    is resolved) before reading, so a half-moved alias is never taken for the real one."""
    if read_intent(name) is not None:
        recover(name, actor=actor)
    return current_aliases(name)


def recover(name: str, *, actor: str) -> "Recovery | None":
    """Resolve an alias change interrupted by a crash, if one is pending (None: nothing to
    do). An intent is resolved only under the lock, like any alias operation, so a change in
    progress is never mistaken for an interrupted one (its holder finishes first)."""
    lock_ttl_seconds()  # a bad setting is refused before anything else
    if read_intent(name) is None:
        return None  # nothing pending: no lock taken
    with RegistryLock(name):
        return _recover_leftover(name, actor)


def _apply(
    name: str,
    plan: "Plan",
    actor: str,
    reason: str,
    evidence: dict[str, str],
    lock: RegistryLock,
) -> AliasChange:
    """Write the intent, move the aliases, write the audit record (the commit point), clear
    the intent. Fail points mark each step for the crash tests (chassis.failpoints). A failure
    before the audit record is written undoes the moves here, as recovery would after a crash."""
    import datetime

    import mlflow

    from chassis.aliases import Intent

    client = mlflow.MlflowClient()
    before = current_aliases(name)
    if plan.is_noop:
        return AliasChange(name, plan.action, True, before, before, None)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    intent = Intent(lock.token, plan.action, plan.moves, actor, reason[:500], evidence, now)
    written = False
    try:
        lock.renew()
        client.set_registered_model_tag(name, TAG_INTENT, intent.to_json())
        written = True
        failpoint("alias.after-intent")
        for index, move in enumerate(plan.moves, start=1):
            _move(client, name, move.alias, move.after)
            failpoint(f"alias.after-move-{index}")
        failpoint("alias.before-audit")
        sequence = max((r.sequence for r in history(name)), default=0) + 1
        record = AuditRecord(
            sequence=sequence,
            at=now,
            actor=actor,
            action=plan.action,
            moves=[m.to_dict() for m in plan.moves],
            reason=reason[:500],
            evidence=evidence,
            intent=intent.token,
        )
        client.set_registered_model_tag(name, f"{AUDIT_TAG_PREFIX}{sequence:06d}", record.to_json())
    except Exception as error:
        _undo_after_failure(client, name, plan, before, intent if written else None, error)
        if isinstance(error, RegistryError):
            raise
        raise RegistryError(
            f"{plan.action} of {name!r} failed midway ({type(error).__name__}: {error}); "
            "aliases were restored"
        ) from error
    failpoint("alias.before-intent-clear")
    # Committed: if clearing fails, the next lock holder finds the record and clears it.
    with suppress(mlflow.exceptions.MlflowException):
        client.delete_registered_model_tag(name, TAG_INTENT)
    return AliasChange(name, plan.action, False, before, current_aliases(name), record)


def _undo_after_failure(
    client: "object",
    name: str,
    plan: "Plan",
    before: dict[str, int],
    intent: "Intent | None",
    error: Exception,
) -> None:
    """Nothing was committed: put the aliases back, as recovery would after a crash. If that
    fails too (the registry is down), the intent stays for `chassis recover` to resolve."""
    from chassis.aliases import COMPLETED

    try:
        if intent is not None:
            stood = _resolve(name, intent, None).outcome == COMPLETED
        else:
            stood = False
            for move in plan.moves:  # no intent written: no alias moved; make sure of it
                if current_aliases(name).get(move.alias) != before.get(move.alias):
                    _move(client, name, move.alias, before.get(move.alias))
    except Exception as undo_error:
        raise RegistryError(
            f"{plan.action} of {name!r} failed midway ({type(error).__name__}: {error}) and "
            f"restoring the aliases failed too ({type(undo_error).__name__}: {undo_error}); "
            f"the intent is kept: run `chassis recover --model {name}`"
        ) from error
    if stood:  # the audit write raised, yet the record is there: the change happened
        raise RegistryError(
            f"{plan.action} of {name!r} reported {type(error).__name__}: {error}, but its "
            "audit record was written: the change stands"
        ) from error


def promote(
    name: str,
    version: int,
    *,
    expected_champion: int | None,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    """Make `version` the champion if the champion is still `expected_champion`."""
    from chassis.aliases import plan_promotion

    require_passed_gates(name, version)
    with _alias_lock(name, actor) as lock:
        plan = plan_promotion(current_aliases(name), version, expected_champion, history(name))
        return _apply(name, plan, actor, reason, evidence or {}, lock)


def set_challenger(
    name: str,
    version: int,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
    allow_retired: bool = False,
) -> AliasChange:
    """challenger <- version. A version a rollout retired (see `retire_challenger`) is
    refused, naming when and why it was retired, unless `allow_retired=True`; then the audit
    record says the override was used. Nothing moves when refused."""
    from chassis.aliases import RetiredChallenger, plan_challenger, retirement

    require_passed_gates(name, version)
    with _alias_lock(name, actor) as lock:
        trail = history(name)
        try:
            plan = plan_challenger(
                current_aliases(name), version, trail, allow_retired=allow_retired
            )
        except RetiredChallenger as error:
            raise RetiredChallenger(f"{name} {error}") from None
        evidence = dict(evidence or {})
        retired = retirement(trail, version)
        if retired is not None and not plan.is_noop:
            evidence["override"] = f"allow_retired: {retired.describe()}"[:500]
            reason = f"{reason} [override allow_retired: retired at audit #{retired.sequence}]"
        return _apply(name, plan, actor, reason, evidence, lock)


def retirement(name: str, version: int) -> "Disqualification | None":
    """Why `version` may not be set as challenger without the override: the audit record of
    its retirement (None if it was never retired, or was promoted to champion since)."""
    from chassis.aliases import retirement as find

    return find(history(name), version)


def retire_challenger(
    name: str,
    version: int | None,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    from chassis.aliases import plan_retire_challenger

    with _alias_lock(name, actor) as lock:
        plan = plan_retire_challenger(current_aliases(name), version, history(name))
        return _apply(name, plan, actor, reason, evidence or {}, lock)


def rollback(
    name: str, *, actor: str, reason: str, evidence: dict[str, str] | None = None
) -> AliasChange:
    """champion <- previous, in one step; previous <- the most recent former champion that
    was neither rolled back nor retired (read from the audit trail), or none.

    The version that becomes champion is verified first (gate report passed, stored ONNX
    bytes match their sha256), outside the lock since it downloads the file; under the lock
    the plan must reinstate that very version (compare-and-set), or nothing moves."""
    from chassis.aliases import CHAMPION, PREVIOUS, PromotionConflict, plan_rollback

    # Settled first: a half-moved `previous` must not decide what is verified.
    target = settled_aliases(name, actor=actor).get(PREVIOUS)
    if target is not None:
        try:
            verify_for_champion(name, target)
        except (RegistryError, IntegrityError) as error:
            raise type(error)(f"refusing to roll {name} back to v{target}: {error}") from None
    with _alias_lock(name, actor) as lock:
        plan = plan_rollback(current_aliases(name), history(name))
        reinstated = next((m.after for m in plan.moves if m.alias == CHAMPION), None)
        if reinstated != target:
            raise PromotionConflict(
                f"`previous` of {name} moved from v{target} to v{reinstated} while v{target} "
                "was being verified; nothing was changed; run the rollback again"
            )
        return _apply(name, plan, actor, reason, evidence or {}, lock)


def record_gate_report(name: str, version: int, passed: bool, report_uri: str) -> None:
    import mlflow

    from chassis import attestation

    client = mlflow.MlflowClient()
    verdict = "passed" if passed else "failed"
    digest = client.get_model_version(name, str(version)).tags.get(TAG_ONNX_SHA256, "")
    client.set_model_version_tag(name, str(version), TAG_GATE_REPORT, report_uri)
    # Signature before verdict: a crash between the two leaves a verdict that does not
    # verify (refused), never a verdict that passes unsigned.
    signature = attestation.sign(name, version, digest, verdict)
    client.set_model_version_tag(name, str(version), attestation.TAG_ATTESTATION, signature)
    client.set_model_version_tag(name, str(version), TAG_GATES, verdict)


def version_run_id(name: str, version: int) -> str:
    import mlflow

    try:
        run_id = mlflow.MlflowClient().get_model_version(name, str(version)).run_id
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"{name!r} has no version {version}") from None
    if not run_id:
        raise RegistryError(f"{name} v{version} has no MLflow run to store reports in")
    return str(run_id)


def version_for_alias(name: str, alias: str) -> int | None:
    """The version an alias points to (None if unset); refuses aliases Chassis does not manage."""
    from chassis.aliases import check_alias

    return current_aliases(name).get(check_alias(alias))


def fetch_reference(name: str, version: int, destination: Path) -> Path:
    """The version's reference snapshot (a sample of its training data)."""
    import mlflow

    location = version_artifact_uri(name, version).rstrip("/")
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/{REFERENCE_FILE}", dst_path=str(destination)
            )
        )
    except Exception as error:
        raise RegistryError(
            f"{name} v{version} has no reference snapshot ({REFERENCE_FILE}); it was registered "
            "before Chassis recorded one, or by another tool. Retrain or register it again."
        ) from error


TAG_PARENT_VERSION = "chassis.compression.parent_version"


def lineage_root(name: str, version: int) -> tuple[int, dict[str, str]]:
    """The version that was trained (following compression parents) and its tags."""
    seen = set()
    tags = version_tags(name, version)
    while TAG_PARENT_VERSION in tags and version not in seen:
        seen.add(version)
        version = int(tags[TAG_PARENT_VERSION])
        tags = version_tags(name, version)
    return version, tags


def feature_columns(name: str, version: int) -> list[str] | None:
    import json

    _, tags = lineage_root(name, version)
    raw = tags.get(TAG_FEATURE_COLUMNS)
    return list(json.loads(raw)) if raw else None


TAG_LAST_RETRAIN = "chassis.last_retrain_at"


def claim_retrain(name: str, cooldown_seconds: float, actor: str) -> tuple[bool, str]:
    """At most one retraining per model per cooldown: compare-and-set on a model tag.

    Returns (claimed, why). Under the registry lock, so two drift events arriving together
    start one retraining, not two.
    """
    import time

    import mlflow

    client = mlflow.MlflowClient()
    with RegistryLock(name):
        tags = client.get_registered_model(name).tags
        last = float(tags.get(TAG_LAST_RETRAIN, "0") or 0)
        waited = time.time() - last
        if waited < cooldown_seconds:
            return False, (
                f"{name} was retrained {waited:.0f} s ago; cooldown is {cooldown_seconds:.0f} s"
            )
        client.set_registered_model_tag(name, TAG_LAST_RETRAIN, f"{time.time():.3f}")
        client.set_registered_model_tag(name, "chassis.last_retrain_by", actor[:250])
    return True, "claimed"


def unaudited_challenger(name: str) -> int | None:
    """A challenger alias set outside Chassis (e.g. by hand in the MLflow UI), if any.

    Chassis records every alias it moves; a challenger whose latest audited move does not
    point at it was set by someone else and has not been rolled out yet.
    Chassis sets an alias a moment before it writes the move's audit record, both under
    the registry lock. A challenger that looks unaudited is therefore checked again under
    the lock, so a move Chassis is making right now is never mistaken for a hand-set one.
    """
    if _unaudited_challenger(name) is None:
        return None  # the common case: no lock taken, nothing shows up in the MLflow UI
    # A challenger half-set by a crashed change looks unaudited too: resolve it first.
    with _alias_lock(name, "unaudited-challenger check"):
        return _unaudited_challenger(name)


def _unaudited_challenger(name: str) -> int | None:
    from chassis.aliases import CHALLENGER

    challenger = current_aliases(name).get(CHALLENGER)
    if challenger is None:
        return None
    for record in reversed(history(name)):
        for move in record.moves:
            if move["alias"] == CHALLENGER:
                return None if move["to"] == challenger else challenger
    return challenger


WEBHOOK_NAME = "chassis-relay"


def ensure_alias_webhook(url: str, secret: str) -> str:
    """Create or update the registry webhook that posts alias events to Chassis's relay.

    One webhook named `chassis-relay` per registry: starting the relay again (another port,
    a new secret) updates it rather than adding a second sender. Returns its id.
    """
    import mlflow

    events = ["model_version_alias.created"]
    try:
        client = mlflow.MlflowClient()
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
    except mlflow.exceptions.MlflowException as error:
        hint = (
            " (MLflow sends webhooks from a SQL-backed registry only: local SQLite or an "
            "`mlflow server` on a database)"
            if "file" in error.message.lower() or "not supported" in error.message.lower()
            else ""
        )
        raise RegistryError(
            f"could not register the MLflow webhook for {url}: {error.message}{hint}"
        ) from None
    return hook.webhook_id


def _all_webhooks(client: "object") -> list:
    hooks, token = [], None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)  # type: ignore[attr-defined]
        hooks.extend(page)
        token = page.token
        if not token:
            return hooks


def register_copy(name: str, version: int, reason: str) -> int:
    """A new version holding exactly `version`'s bytes, run and lineage, its gates passed
    (they are the same bytes): the A/A candidate that checks the rollout analysis does not
    roll back a model equal to the champion. Returns the new version number."""
    import mlflow

    original = mlflow.MlflowClient().get_model_version(name, str(version))
    tags = {k: v for k, v in original.tags.items() if not k.startswith("chassis.gates")}
    copy = register_version(
        name=name,
        model_uri=original.source,
        model_id=getattr(original, "model_id", None),
        run_id=original.run_id,
        tags=tags,
        description="",
        version_description=f"copy of v{version}: {reason}",
    )
    record_gate_report(name, copy.version, True, f"same bytes as v{version}: {reason}")
    return copy.version


TAG_ROLLOUT_RECORD = "chassis.rollout"


def read_rollout_record(name: str) -> "RolloutRecord | None":
    """The committed split of `name` (None: never written: the champion serves alone)."""
    import mlflow

    from chassis.rollout.record import RolloutRecord

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except mlflow.exceptions.MlflowException as error:
        raise lookup_failed(error, f"no registered model named {name!r}") from None
    text = model.tags.get(TAG_ROLLOUT_RECORD)
    return RolloutRecord.from_json(name, text) if text else None


def write_rollout_record(
    name: str, split: "RolloutRecord", expected_generation: int, actor: str
) -> "RolloutRecord":
    """Commit `split` as generation expected_generation + 1, if the record is still at
    `expected_generation` (compare-and-set under the registry lock); returns what was
    written. Versions that take traffic must have passed their gates. A leased split (an
    owner, see chassis/rollout/lease.py) must also be allowed by the current record's lease;
    its lease starts when it is written, not when the lock was asked for."""
    import dataclasses
    import datetime
    import time

    import mlflow

    from chassis.rollout import lease
    from chassis.rollout.record import RecordConflict

    for version in (split.candidate_version, split.stable_version, split.warm_version):
        if version is not None:
            require_passed_gates(name, version)
    with RegistryLock(name):
        current = read_rollout_record(name)
        generation = current.generation if current else 0
        if generation != expected_generation:
            raise RecordConflict(
                f"the rollout record of {name} is at generation {generation}, not "
                f"{expected_generation}: another rollout committed a split meanwhile; nothing "
                "was changed"
            )
        now = time.time()
        if split.leased:
            split = lease.granted(split, split.owner, split.lease_seconds, now)
        lease.check_write(name, current, split, now)
        record = dataclasses.replace(
            split,
            generation=generation + 1,
            written_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            written_by=actor,
            schema=split.lowest_schema,
        ).validate()
        mlflow.MlflowClient().set_registered_model_tag(name, TAG_ROLLOUT_RECORD, record.to_json())
    return record
