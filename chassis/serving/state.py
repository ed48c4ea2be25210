"""Rollout state of one model on a gateway, persisted so a restart comes back safely.

Only a *committed* split survives a restart. A split is committed when the admin API sets it
(the rollout flow commits each step it has decided on); anything else, including a
candidate whose files fail verification on reload, falls back to the stable version alone.
"""

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from chassis.errors import StateError
from chassis.serving.verified_cache import path_component

Mode = Literal["stable", "canary", "shadow", "blue-green"]
MODES: tuple[str, ...] = ("stable", "canary", "shadow", "blue-green")


@dataclass
class RolloutState:
    model: str
    stable_version: int
    candidate_version: int | None = None
    mode: Mode = "stable"
    # Share of live traffic the candidate answers (canary) in percent, 0..100.
    candidate_percent: float = 0.0
    # Share of live requests also run on the other version and compared (see routing).
    mirror_percent: float = 0.0
    # Blue-green: the previous stable version kept warm after a switch, until this time.
    warm_version: int | None = None
    warm_until: float = 0.0
    # The rollout record's generation this state came from (0: none read yet).
    generation: int = 0
    # Stable mode that defers to the champion alias (moved by hand or `chassis rollback`).
    # False while a split names its stable version itself (a blue-green switch's live
    # window, before the registry has promoted the new color).
    follows_champion: bool = True
    # When the split's rollout lease ends (epoch seconds; 0: no lease). Kept here so a
    # replica that cannot read the registry (or restarts during an outage) still stops
    # serving an orphaned split on time, from its own copy.
    lease_until: float = 0.0
    history: list[dict[str, object]] = field(default_factory=list)

    def validate(self) -> "RolloutState":
        if self.mode not in MODES:
            raise StateError(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        if not 0 <= self.candidate_percent <= 100:
            raise StateError(f"candidate percent must be in [0, 100], got {self.candidate_percent}")
        if not 0 <= self.mirror_percent <= 100:
            raise StateError(f"mirror percent must be in [0, 100], got {self.mirror_percent}")
        if self.mode != "stable" and self.candidate_version is None:
            raise StateError(f"mode {self.mode!r} needs a candidate version")
        if self.candidate_version == self.stable_version:
            raise StateError(f"v{self.stable_version} is already the stable version")
        return self

    def orphaned(self, now: float) -> bool:
        """A split whose lease has ended: its owner is gone, only the stable version serves."""
        return bool(self.lease_until) and now > self.lease_until and self.has_split

    @property
    def has_split(self) -> bool:
        return self.mode != "stable" or self.candidate_version is not None

    def stable_only(self) -> "RolloutState":
        """This state without its split: the stable version alone, same generation."""
        return RolloutState(
            model=self.model, stable_version=self.stable_version, generation=self.generation
        )


def state_path(directory: Path, model: str) -> Path:
    # Quoted: a model name with '/' or '..' must not place the file outside `directory`.
    return directory / f"{path_component(model)}.rollout.json"


def save_state(directory: Path, state: RolloutState) -> None:
    """Write atomically: a crash mid-write leaves the previous state, never half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(asdict(state.validate()), indent=2).encode()
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".state-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(state_path(directory, state.model))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(directory: Path, model: str) -> RolloutState | None:
    path = state_path(directory, model)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return RolloutState(**data).validate()
    except (ValueError, TypeError, StateError):
        return None  # unreadable state is no state: serve the stable version
