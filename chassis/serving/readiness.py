"""Which of its models a gateway serves, and whether it takes traffic: pure rules.

Each model the gateway was told to serve is in one state: `loading` (not tried yet),
`serving`, `retrying` (it may serve once something outside comes back: the registry or the
artifact store did not answer) or `missing` (it cannot serve as the registry stands: not
registered, no champion, or its version refused by digest or gate verdict; registering,
promoting or gating a version changes that, waiting alone does not).

Probes keep their Kubernetes meaning: /healthz says the process answers (restart it if
not); /readyz says whether to send it traffic. By default every named model must serve,
and a missing one stops the gateway at start (`fatal_problem`): a typo or an unpromoted
model is a deployment mistake, better seen as a failed rollout of the gateway than as a pod
that never gets ready. With `allow_missing` (`--allow-missing-models`) the gateway is ready
once one model serves: it takes traffic for what it has, names the others on /readyz, and
keeps looking for them. A model's own state never decides another model's answers.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from chassis.errors import IntegrityError, NotServable

ModelState = Literal["loading", "serving", "retrying", "missing"]

ALLOW_MISSING_OPTION = "--allow-missing-models"


@dataclass(frozen=True)
class ModelReadiness:
    state: ModelState
    reason: str  # why it is not serving ("serving" when it is)

    @classmethod
    def failed(cls, error: Exception) -> "ModelReadiness":
        """The state a failed load leaves: `missing` when waiting cannot fix it."""
        if isinstance(error, NotServable | IntegrityError):
            return cls("missing", str(error))
        return cls("retrying", f"{type(error).__name__}: {error}")


LOADING = ModelReadiness("loading", "loading")
SERVING = ModelReadiness("serving", "serving")


def is_ready(states: Mapping[str, ModelReadiness], allow_missing: bool) -> bool:
    """Whether the gateway takes traffic (draining aside): every model serves, or, when
    missing models are allowed, at least one does."""
    serving = [s.state == "serving" for s in states.values()]
    if allow_missing:
        return any(serving)
    return bool(serving) and all(serving)


def fatal_problem(states: Mapping[str, ModelReadiness], allow_missing: bool) -> str | None:
    """The one-line error that stops a gateway which must serve every model, naming each
    missing one and why; None when nothing is missing or missing models are allowed."""
    if allow_missing:
        return None
    missing = {name: s.reason for name, s in states.items() if s.state == "missing"}
    if not missing:
        return None
    named = "; ".join(f"cannot serve {name!r}: {why}" for name, why in missing.items())
    them = "it" if len(missing) == 1 else "them"
    instead = (
        f"serve the others and keep looking for {them}"
        if len(missing) < len(states)
        else f"wait for {them} instead"
    )
    return f"{named}; or start with {ALLOW_MISSING_OPTION} to {instead}"


def startup_overdue(
    states: Mapping[str, ModelReadiness],
    allow_missing: bool,
    waited_seconds: float,
    timeout_seconds: float,
) -> str | None:
    """The one-line error that stops a gateway still not ready `timeout_seconds` after it
    started (0: no limit), naming each model not served and why; None while it may wait."""
    if timeout_seconds <= 0 or waited_seconds < timeout_seconds or is_ready(states, allow_missing):
        return None
    names = ", ".join(repr(name) for name, s in states.items() if s.state != "serving")
    return (
        f"cannot serve {names} within the {timeout_seconds:g} s startup timeout: "
        f"{waiting_reason(states)}"
    )


def waiting_reason(states: Mapping[str, ModelReadiness]) -> str:
    """Each model that does not serve, and why ("" when all serve)."""
    return "; ".join(
        f"{name}: {s.reason}" for name, s in states.items() if s.state in ("retrying", "missing")
    )


def retry_wait(
    states: Mapping[str, ModelReadiness], backoff_seconds: float, missing_seconds: float
) -> float:
    """How long to wait before trying the models that do not serve again: the backoff
    while something outside did not answer (gentle on a registry coming back), else the
    steady pace at which a missing model is looked for."""
    if any(s.state == "retrying" for s in states.values()):
        return backoff_seconds
    return missing_seconds


def model_report(
    states: Mapping[str, ModelReadiness], versions: Mapping[str, int]
) -> dict[str, dict[str, object]]:
    """/readyz's per-model part: state, the stable version served, or why not."""
    report: dict[str, dict[str, object]] = {}
    for name, readiness in states.items():
        entry: dict[str, object] = {"state": readiness.state}
        if readiness.state == "serving" and name in versions:
            entry["version"] = versions[name]
        elif readiness.state != "serving":
            entry["reason"] = readiness.reason
        report[name] = entry
    return report
