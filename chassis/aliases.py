"""Pure rules for moving the `challenger`, `champion` and `previous` aliases.

`chassis.registry` applies these plans to MLflow under a lock; keeping the rules here, away
from I/O, lets them be tested exhaustively in milliseconds.
"""

from dataclasses import dataclass, field
from typing import Any

from chassis.errors import RegistryError

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
ALIASES = (CHALLENGER, CHAMPION, PREVIOUS)


class PromotionConflict(RegistryError):  # noqa: N818 (reads as what happened)
    """Another promotion moved the champion after this one read it: compare-and-set failed."""


@dataclass(frozen=True)
class AliasMove:
    alias: str
    before: int | None
    after: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class Plan:
    action: str
    moves: tuple[AliasMove, ...] = field(default_factory=tuple)

    @property
    def is_noop(self) -> bool:
        return not self.moves


def check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; Chassis manages {', '.join(ALIASES)}")
    return alias


def _moves(current: dict[str, int], target: dict[str, int | None]) -> tuple[AliasMove, ...]:
    return tuple(
        AliasMove(alias, current.get(alias), after)
        for alias, after in target.items()
        if current.get(alias) != after
    )


def plan_promotion(current: dict[str, int], version: int, expected_champion: int | None) -> Plan:
    """champion <- version, previous <- old champion; compare-and-set on the champion."""
    champion = current.get(CHAMPION)
    if champion == version:
        return Plan("promote")  # already done: repeating a completed promotion is a no-op
    if champion != expected_champion:
        expected = "no champion" if expected_champion is None else f"v{expected_champion}"
        found = "no champion" if champion is None else f"v{champion}"
        raise PromotionConflict(
            f"expected {expected} but found {found}: another promotion moved the champion "
            "first; nothing was changed"
        )
    target: dict[str, int | None] = {CHAMPION: version}
    if champion is not None:
        target[PREVIOUS] = champion
    if current.get(CHALLENGER) == version:
        target[CHALLENGER] = None  # the challenger graduated
    return Plan("promote", _moves(current, target))


def plan_challenger(current: dict[str, int], version: int) -> Plan:
    if current.get(CHAMPION) == version:
        raise RegistryError(f"v{version} is already the champion; it cannot be the challenger")
    return Plan("set-challenger", _moves(current, {CHALLENGER: version}))


def plan_retire_challenger(current: dict[str, int], version: int | None) -> Plan:
    challenger = current.get(CHALLENGER)
    if challenger is None or (version is not None and challenger != version):
        return Plan("retire-challenger")
    return Plan("retire-challenger", _moves(current, {CHALLENGER: None}))


def plan_rollback(current: dict[str, int], champion_before_previous: int | None) -> Plan:
    """champion <- previous; previous <- the champion before that one (from the audit trail)."""
    previous = current.get(PREVIOUS)
    if previous is None:
        raise RegistryError("no `previous` version to roll back to; nothing was changed")
    target: dict[str, int | None] = {CHAMPION: previous, PREVIOUS: champion_before_previous}
    if champion_before_previous == previous:
        target[PREVIOUS] = None
    return Plan("rollback", _moves(current, target))
