"""A cross-process, cross-host mutex per model, for alias moves and other compare-and-sets."""

import os
import random
import time
import uuid
from contextlib import suppress

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError
from chassis.registry.tags import LOCK_SUFFIX, TAG_LOCK_EXPIRES, TAG_LOCK_OWNER

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


class RegistryLock:
    """A cross-process, cross-host mutex per model, made of the registry's own guarantee
    that registered-model names are unique: creating `<name>.chassis-lock` succeeds for
    exactly one caller. Works the same on SQLite and behind an `mlflow server`.

    The lock records its expiry (now + TTL). A lock left by a crashed holder is broken a
    margin after that expiry, and a waiter waits until then whatever its own `wait_seconds`
    (default: one TTL plus the margin), so lifetime and waiting agree: a waiter always
    outwaits a dead holder.
    """

    def __init__(self, client: MlflowClient, name: str, wait_seconds: float | None = None) -> None:
        self.client = client
        self.lock_name = f"{name}{LOCK_SUFFIX}"
        self.ttl = lock_ttl_seconds()
        # At least one full lifetime: a lock taken just before we asked is outwaited.
        self.margin = min(LOCK_MARGIN_SECONDS, self.ttl / 2)
        self.wait_seconds = self.ttl + self.margin if wait_seconds is None else wait_seconds
        self.token = ""

    def __enter__(self) -> "RegistryLock":
        self.token = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                self.client.create_registered_model(
                    self.lock_name,
                    tags={
                        TAG_LOCK_OWNER: self.token,
                        TAG_LOCK_EXPIRES: str(time.time() + self.ttl),
                    },
                    description="Held by Chassis while it moves aliases; removed when done.",
                )
                return self
            except MlflowException as error:
                # Held by another caller; or held and released between MLflow's failed insert
                # and its read of the holder, which then answers "not found": both mean wait.
                contended = error.error_code in (
                    "RESOURCE_ALREADY_EXISTS",
                    "RESOURCE_DOES_NOT_EXIST",
                )
                if not contended and "already exists" not in str(error):
                    raise
            breakable_in = self._break_if_expired()
            # Never give up before the lock we saw can be broken.
            deadline = max(deadline, time.monotonic() + breakable_in + 0.5)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"timed out after {self.wait_seconds:.0f} s waiting for {self.lock_name!r}; "
                    "another alias change is in progress"
                )
            time.sleep(0.05 + random.random() * 0.15)  # jitter, not crypto

    def _break_if_expired(self) -> float:
        """Delete the lock if its expiry plus the margin has passed; return the seconds
        until it may be broken (0 when it was, or is gone)."""
        try:
            held = self.client.get_registered_model(self.lock_name)
        except MlflowException:
            return 0.0  # released meanwhile
        try:
            expires = float(held.tags.get(TAG_LOCK_EXPIRES, "inf"))
        except ValueError:
            expires = float("inf")
        breakable_at = min(expires, time.time() + LOCK_TTL_MAX_SECONDS) + self.margin
        if breakable_at > time.time():
            return breakable_at - time.time()
        with suppress(MlflowException):  # another waiter broke it first
            self.client.delete_registered_model(self.lock_name)
        return 0.0

    def renew(self) -> None:
        """Fencing before the first alias moves: refuse if the lock is no longer ours or has
        expired (a waiter may break it), else extend it by a full TTL. A waiter breaks a
        lock only LOCK_MARGIN_SECONDS after expiry, so renewing an unexpired lock is safe."""
        try:
            held = self.client.get_registered_model(self.lock_name)
        except MlflowException:
            held = None
        expires = float(held.tags.get(TAG_LOCK_EXPIRES, "0")) if held else 0.0
        if held is None or held.tags.get(TAG_LOCK_OWNER) != self.token:
            raise RegistryError(f"lost {self.lock_name!r} to another process; nothing was changed")
        if expires <= time.time():
            raise RegistryError(
                f"held {self.lock_name!r} past its {self.ttl:.0f} s lifetime; nothing was changed"
            )
        self.client.set_registered_model_tag(
            self.lock_name, TAG_LOCK_EXPIRES, str(time.time() + self.ttl)
        )

    def __exit__(self, *exc: object) -> None:
        try:
            held = self.client.get_registered_model(self.lock_name)
            if held.tags.get(TAG_LOCK_OWNER) == self.token:
                self.client.delete_registered_model(self.lock_name)
        except MlflowException:
            pass
