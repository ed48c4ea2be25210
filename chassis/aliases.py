"""Pure rules for moving the `challenger`, `champion` and `previous` aliases.

`chassis.registry` applies these plans to MLflow under a lock; keeping the rules here, away
from I/O, lets them be tested exhaustively in milliseconds.

The audit trail (every alias move, oldest first) is what the rules remember: which versions
were champions, which champion was rolled back, which challenger a rollout retired. From it:

- `previous` (what `rollback` reinstates) never points at a version that was rolled back or
  retired and not promoted to champion since;
- a retired challenger is set as challenger again only with an explicit override.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chassis.errors import PromotionConflict, RegistryError, RetiredChallenger

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
ALIASES = (CHALLENGER, CHAMPION, PREVIOUS)


# Actions recorded in the audit trail.
PROMOTE = "promote"
SET_CHALLENGER = "set-challenger"
RETIRE_CHALLENGER = "retire-challenger"
ROLLBACK = "rollback"


class AuditEntry(Protocol):
    """What the rules read of an audit record (chassis.registry.AuditRecord has these)."""

    @property
    def sequence(self) -> int: ...
    @property
    def at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def moves(self) -> list[dict[str, Any]]: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Disqualification:
    """Why a version may not be `previous`: it was rolled back from champion, or retired as
    challenger, at audit record `sequence`, and has not been promoted to champion since."""

    version: int
    action: str  # ROLLBACK or RETIRE_CHALLENGER
    sequence: int
    at: str
    actor: str
    reason: str

    @property
    def retired(self) -> bool:
        return self.action == RETIRE_CHALLENGER

    def describe(self) -> str:
        what = "retired as challenger" if self.retired else "rolled back from champion"
        return (
            f"v{self.version} was {what} (audit #{self.sequence}, {self.at}, by {self.actor}): "
            f"{self.reason}"
        )


def _ordered(trail: Iterable[AuditEntry]) -> list[AuditEntry]:
    return sorted(trail, key=lambda record: record.sequence)


def disqualified(trail: Iterable[AuditEntry]) -> dict[int, Disqualification]:
    """Versions rolled back or retired, and not made champion since, from the audit trail.

    Becoming champion again (a gated, compare-and-set promotion) clears a version: it was
    judged afresh. Setting it as challenger with the override does not: only the outcome of
    that attempt (promotion, or another retirement) does.
    """
    found: dict[int, Disqualification] = {}
    for record in _ordered(trail):
        for move in record.moves:
            alias, before, after = move["alias"], move["from"], move["to"]
            if alias == CHAMPION and after is not None:
                found.pop(after, None)
            demoted = (alias, record.action) in (
                (CHAMPION, ROLLBACK),
                (CHALLENGER, RETIRE_CHALLENGER),
            )
            if demoted and before is not None:
                found[before] = Disqualification(
                    before, record.action, record.sequence, record.at, record.actor, record.reason
                )
    return found


def former_champions(trail: Iterable[AuditEntry]) -> list[int]:
    """Every version the champion alias moved to, oldest first (repeats kept)."""
    return [
        move["to"]
        for record in _ordered(trail)
        for move in record.moves
        if move["alias"] == CHAMPION and move["to"] is not None
    ]


def fallback_previous(
    trail: Sequence[AuditEntry],
    exclude: Iterable[int | None],
    barred: Mapping[int, Disqualification],
) -> int | None:
    """The most recent former champion that may serve again: not in `exclude` (the champion
    and the version being demoted) and neither rolled back nor retired since."""
    excluded = set(exclude)
    for version in reversed(former_champions(trail)):
        if version not in excluded and version not in barred:
            return version
    return None


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


def describe_aliases(aliases: Mapping[str, int]) -> str:
    """Aliases as people read them: "@challenger v3, @champion v1", or "none"."""
    return ", ".join(f"@{a} v{v}" for a, v in sorted(aliases.items())) or "none"


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


def plan_promotion(
    current: dict[str, int],
    version: int,
    expected_champion: int | None,
    trail: Sequence[AuditEntry] = (),
) -> Plan:
    """champion <- version, previous <- old champion; compare-and-set on the champion.

    If the old champion was itself rolled back or retired (an alias moved outside Chassis),
    `previous` falls back to the most recent former champion that was not.
    """
    champion = current.get(CHAMPION)
    if champion == version:
        return Plan(PROMOTE)  # already done: repeating a completed promotion is a no-op
    if champion != expected_champion:
        expected = "no champion" if expected_champion is None else f"v{expected_champion}"
        found = "no champion" if champion is None else f"v{champion}"
        raise PromotionConflict(
            f"expected {expected} but found {found}: another promotion moved the champion "
            "first; nothing was changed"
        )
    target: dict[str, int | None] = {CHAMPION: version}
    if champion is not None:
        barred = disqualified(trail)
        barred.pop(version, None)  # promoted now: judged afresh
        if champion not in barred:
            target[PREVIOUS] = champion
        else:
            target[PREVIOUS] = fallback_previous(trail, (version, champion), barred)
    if current.get(CHALLENGER) == version:
        target[CHALLENGER] = None  # the challenger graduated
    return Plan(PROMOTE, _moves(current, target))


def plan_challenger(
    current: dict[str, int],
    version: int,
    trail: Sequence[AuditEntry] = (),
    *,
    allow_retired: bool = False,
) -> Plan:
    """challenger <- version. A version a rollout retired needs `allow_retired`."""
    if current.get(CHAMPION) == version:
        raise RegistryError(f"v{version} is already the champion; it cannot be the challenger")
    retired = retirement(trail, version)
    if retired is not None and not allow_retired:
        raise RetiredChallenger(
            f"{retired.describe()}. Setting it as challenger again needs the explicit "
            "override (allow_retired=True; `chassis promote --to challenger "
            "--allow-retired`); nothing was changed"
        )
    return Plan(SET_CHALLENGER, _moves(current, {CHALLENGER: version}))


def retirement(trail: Iterable[AuditEntry], version: int) -> Disqualification | None:
    """The retirement that bars `version` from being challenger, if any."""
    found = disqualified(trail).get(version)
    return found if found is not None and found.retired else None


def plan_retire_challenger(
    current: dict[str, int], version: int | None, trail: Sequence[AuditEntry] = ()
) -> Plan:
    """challenger <- none; if the retired version is also `previous`, previous moves to the
    most recent former champion that may serve again (or none)."""
    challenger = current.get(CHALLENGER)
    if challenger is None or (version is not None and challenger != version):
        return Plan(RETIRE_CHALLENGER)
    target: dict[str, int | None] = {CHALLENGER: None}
    if current.get(PREVIOUS) == challenger:
        barred = disqualified(trail)
        target[PREVIOUS] = fallback_previous(trail, (challenger, current.get(CHAMPION)), barred)
    return Plan(RETIRE_CHALLENGER, _moves(current, target))


def plan_rollback(current: dict[str, int], trail: Sequence[AuditEntry] = ()) -> Plan:
    """champion <- previous; previous <- the most recent former champion that is neither the
    champion being rolled back nor one rolled back or retired before (from the audit trail).

    A `previous` that itself was rolled back or retired (set outside Chassis) is refused:
    rolling back to a version already judged bad would undo that judgement silently.
    """
    previous = current.get(PREVIOUS)
    if previous is None:
        raise RegistryError("no `previous` version to roll back to; nothing was changed")
    barred = disqualified(trail)
    if previous in barred:
        raise RegistryError(
            f"`previous` points at {barred[previous].describe()}; refusing to reinstate it. "
            "Promote the version you want explicitly (`chassis promote`); nothing was changed"
        )
    champion = current.get(CHAMPION)
    target: dict[str, int | None] = {
        CHAMPION: previous,
        PREVIOUS: fallback_previous(trail, (previous, champion), barred),
    }
    return Plan(ROLLBACK, _moves(current, target))


# --------------------------------------------------------------------------------------
# Intents and recovery: what a crash in the middle of a plan leaves, and how it is resolved.
# --------------------------------------------------------------------------------------

COMPLETED = "completed"  # the audit record was written: the change stands
UNDONE = "undone"  # no audit record: the aliases go back to where they were


@dataclass(frozen=True)
class Intent:
    """A plan about to be applied, written before the first alias moves (under the lock).

    `token` is the registry-lock token of the writer; the audit record of the change carries
    the same token, which is how a reader tells a finished change from an interrupted one.
    """

    token: str
    action: str
    moves: tuple[AliasMove, ...]
    actor: str
    reason: str
    evidence: dict[str, str]
    at: str

    def to_json(self) -> str:
        import json

        return json.dumps(
            {
                "token": self.token,
                "action": self.action,
                "moves": [move.to_dict() for move in self.moves],
                "actor": self.actor,
                "reason": self.reason,
                "evidence": self.evidence,
                "at": self.at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> "Intent":
        import json

        try:
            data = json.loads(text)
            moves = tuple(AliasMove(m["alias"], m["from"], m["to"]) for m in data["moves"])
            return cls(
                token=str(data["token"]),
                action=str(data["action"]),
                moves=moves,
                actor=str(data["actor"]),
                reason=str(data["reason"]),
                evidence=dict(data["evidence"]),
                at=str(data["at"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise RegistryError(
                f"unreadable alias intent ({type(error).__name__}: {error}): {text[:200]!r}"
            ) from None


@dataclass(frozen=True)
class Recovery:
    """How an interrupted change is resolved: its outcome, the alias moves that resolve it,
    and aliases found at neither their `before` nor their `after` value (moved by someone
    else since the crash), which recovery leaves as they are."""

    intent: Intent
    outcome: str  # COMPLETED or UNDONE
    moves: tuple[AliasMove, ...]
    left_alone: tuple[str, ...]

    def describe(self) -> str:
        what = (
            "had written its audit record: it stands"
            if self.outcome == COMPLETED
            else "had not written its audit record: undone, aliases restored"
        )
        text = f"interrupted {self.intent.action} by {self.intent.actor} at {self.intent.at} {what}"
        if self.left_alone:
            text += f" (left as found, moved since: {', '.join(self.left_alone)})"
        return text


def plan_recovery(intent: Intent, current: Mapping[str, int], committed: bool) -> Recovery:
    """Resolve an intent left by a crashed alias change. The rule is deterministic:

    - its audit record exists (`committed`): the change is complete, every move was made
      before the record was written; nothing moves, the intent is simply cleared;
    - otherwise it is undone: each alias the change moved goes back to its `before` value.

    Why undo rather than finish: the command that wrote the intent died without reporting
    success, so whoever gave it sees a failure and will give it again. Undone, the repeated
    command does what was asked once; finished, a repeated `rollback` would roll back twice
    and reinstate an older version nobody chose. The audit record is the commit point, as a
    database's commit record is: a change exists if and only if its record does, so the trail
    and the aliases never disagree. Undo needs nothing re-verified (the `before` state was
    serving), whereas finishing hours later would move aliases on checks made back then.

    An alias at neither its `before` nor its `after` value was moved by someone else after
    the crash (the lock had expired): that later, deliberate move is left as it is.
    """
    if committed:
        return Recovery(intent, COMPLETED, (), ())
    moves: list[AliasMove] = []
    left_alone: list[str] = []
    for move in reversed(intent.moves):
        found = current.get(move.alias)
        if found == move.before:
            continue  # never moved, or already restored
        if found == move.after:
            moves.append(AliasMove(move.alias, found, move.before))
        else:
            left_alone.append(f"{move.alias} at {'none' if found is None else f'v{found}'}")
    return Recovery(intent, UNDONE, tuple(moves), tuple(left_alone))
