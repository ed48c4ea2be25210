"""Aliases: the only place they move. Every move is compare-and-set under a registry lock.

Before the first alias moves, the plan is written as an intent (a model tag); the audit
record is the commit point; the intent is cleared last. A crash anywhere in between leaves
the intent, and whoever takes the lock next resolves it (see aliases.plan_recovery).
"""

import datetime
import json
from collections.abc import Generator
from contextlib import contextmanager, suppress

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis import aliases
from chassis.aliases import (
    CHALLENGER,
    CHAMPION,
    COMPLETED,
    PREVIOUS,
    Disqualification,
    Intent,
    Plan,
    Recovery,
)
from chassis.errors import IntegrityError, PromotionConflict, RegistryError, RetiredChallenger
from chassis.failpoints import failpoint
from chassis.registry.audit import AliasChange, AuditRecord, history, read_intent
from chassis.registry.description import refresh_description
from chassis.registry.gates import require_passed_gates, verify_for_champion
from chassis.registry.lock import RegistryLock, lock_ttl_seconds
from chassis.registry.reads import current_aliases
from chassis.registry.tags import AUDIT_TAG_PREFIX, TAG_INTENT, TAG_LAST_RECOVERY


def promote(
    client: MlflowClient,
    signing_key: str,
    name: str,
    version: int,
    *,
    expected_champion: int | None,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    """Make `version` the champion if the champion is still `expected_champion`."""
    require_passed_gates(client, signing_key, name, version)
    with _alias_lock(client, name, actor) as lock:
        plan = aliases.plan_promotion(
            current_aliases(client, name), version, expected_champion, history(client, name)
        )
        return _apply(client, name, plan, actor, reason, evidence or {}, lock)


def set_challenger(
    client: MlflowClient,
    signing_key: str,
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
    require_passed_gates(client, signing_key, name, version)
    with _alias_lock(client, name, actor) as lock:
        trail = history(client, name)
        try:
            plan = aliases.plan_challenger(
                current_aliases(client, name), version, trail, allow_retired=allow_retired
            )
        except RetiredChallenger as error:
            raise RetiredChallenger(f"{name} {error}") from None
        evidence = dict(evidence or {})
        retired = aliases.retirement(trail, version)
        if retired is not None and not plan.is_noop:
            evidence["override"] = f"allow_retired: {retired.describe()}"[:500]
            reason = f"{reason} [override allow_retired: retired at audit #{retired.sequence}]"
        return _apply(client, name, plan, actor, reason, evidence, lock)


def retirement(client: MlflowClient, name: str, version: int) -> Disqualification | None:
    """Why `version` may not be set as challenger without the override: the audit record of
    its retirement (None if it was never retired, or was promoted to champion since)."""
    return aliases.retirement(history(client, name), version)


def retire_challenger(
    client: MlflowClient,
    name: str,
    version: int | None,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    with _alias_lock(client, name, actor) as lock:
        plan = aliases.plan_retire_challenger(
            current_aliases(client, name), version, history(client, name)
        )
        return _apply(client, name, plan, actor, reason, evidence or {}, lock)


def rollback(
    client: MlflowClient,
    signing_key: str,
    name: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str] | None = None,
) -> AliasChange:
    """champion <- previous, in one step; previous <- the most recent former champion that
    was neither rolled back nor retired (read from the audit trail), or none.

    The version that becomes champion is verified first (gate report passed, stored ONNX
    bytes match their sha256), outside the lock since it downloads the file; under the lock
    the plan must reinstate that very version (compare-and-set), or nothing moves."""
    # Settled first: a half-moved `previous` must not decide what is verified.
    target = settled_aliases(client, name, actor=actor).get(PREVIOUS)
    if target is not None:
        try:
            verify_for_champion(client, signing_key, name, target)
        except (RegistryError, IntegrityError) as error:
            raise type(error)(f"refusing to roll {name} back to v{target}: {error}") from None
    with _alias_lock(client, name, actor) as lock:
        plan = aliases.plan_rollback(current_aliases(client, name), history(client, name))
        reinstated = next((m.after for m in plan.moves if m.alias == CHAMPION), None)
        if reinstated != target:
            raise PromotionConflict(
                f"`previous` of {name} moved from v{target} to v{reinstated} while v{target} "
                "was being verified; nothing was changed; run the rollback again"
            )
        return _apply(client, name, plan, actor, reason, evidence or {}, lock)


def unaudited_challenger(client: MlflowClient, name: str) -> int | None:
    """A challenger alias set outside Chassis (e.g. by hand in the MLflow UI), if any.

    Chassis records every alias it moves; a challenger whose latest audited move does not
    point at it was set by someone else and has not been rolled out yet.
    Chassis sets an alias a moment before it writes the move's audit record, both under
    the registry lock. A challenger that looks unaudited is therefore checked again under
    the lock, so a move Chassis is making right now is never mistaken for a hand-set one.
    """
    if _unaudited_challenger(client, name) is None:
        return None  # the common case: no lock taken, nothing shows up in the MLflow UI
    # A challenger half-set by a crashed change looks unaudited too: resolve it first.
    with _alias_lock(client, name, "unaudited-challenger check"):
        return _unaudited_challenger(client, name)


def _unaudited_challenger(client: MlflowClient, name: str) -> int | None:
    challenger = current_aliases(client, name).get(CHALLENGER)
    if challenger is None:
        return None
    for record in reversed(history(client, name)):
        for move in record.moves:
            if move["alias"] == CHALLENGER:
                return None if move["to"] == challenger else challenger
    return challenger


def settled_aliases(client: MlflowClient, name: str, *, actor: str) -> dict[str, int]:
    """The aliases with no change half-done: what a command given now must compare against.

    If an intent is pending, wait for the lock (a live holder finishes; a crashed one's change
    is resolved) before reading, so a half-moved alias is never taken for the real one."""
    if read_intent(client, name) is not None:
        recover(client, name, actor=actor)
    return current_aliases(client, name)


def recover(client: MlflowClient, name: str, *, actor: str) -> Recovery | None:
    """Resolve an alias change interrupted by a crash, if one is pending (None: nothing to
    do). An intent is resolved only under the lock, like any alias operation, so a change in
    progress is never mistaken for an interrupted one (its holder finishes first)."""
    lock_ttl_seconds()  # a bad setting is refused before anything else
    if read_intent(client, name) is None:
        return None  # nothing pending: no lock taken
    with RegistryLock(client, name):
        return _recover_leftover(client, name, actor)


def record_action(
    client: MlflowClient,
    name: str,
    action: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, str],
) -> AuditRecord:
    """Audit an action on `name` that moves no alias (a replica restarted by the
    diagnosis): a record in the same trail, under the same lock, with no moves."""
    with _alias_lock(client, name, actor):
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        sequence = max((r.sequence for r in history(client, name)), default=0) + 1
        record = AuditRecord(sequence, now, actor, action, [], reason[:500], evidence)
        client.set_registered_model_tag(name, f"{AUDIT_TAG_PREFIX}{sequence:06d}", record.to_json())
        refresh_description(client, name)
        return record


def _move(client: MlflowClient, name: str, alias: str, version: int | None) -> None:
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, str(version))


def _resolve(client: MlflowClient, name: str, intent: Intent, actor: str | None) -> Recovery:
    """Resolve `intent` (aliases.plan_recovery: complete if its audit record exists, else
    undo), then clear it. With `actor`, it was left by a crash: the resolution is recorded
    on the model (TAG_LAST_RECOVERY) for people to read."""
    committed = any(record.intent == intent.token for record in history(client, name))
    recovery = aliases.plan_recovery(intent, current_aliases(client, name), committed)
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


def _recover_leftover(client: MlflowClient, name: str, actor: str) -> Recovery | None:
    """Under the lock: resolve an intent a crashed change left, if any."""
    intent = read_intent(client, name)
    if intent is None:
        return None
    recovery = _resolve(client, name, intent, f"{actor} (on taking the registry lock)")
    if recovery.outcome == COMPLETED:  # the crash may have come before the description
        refresh_description(client, name)
    return recovery


@contextmanager
def _alias_lock(client: MlflowClient, name: str, actor: str) -> Generator[RegistryLock, None, None]:
    """The registry lock, with any change a crashed holder left resolved first: every alias
    operation starts from a consistent state."""
    with RegistryLock(client, name) as lock:
        _recover_leftover(client, name, actor)
        yield lock


def _apply(
    client: MlflowClient,
    name: str,
    plan: Plan,
    actor: str,
    reason: str,
    evidence: dict[str, str],
    lock: RegistryLock,
) -> AliasChange:
    """Write the intent, move the aliases, write the audit record (the commit point), clear
    the intent. Fail points mark each step for the crash tests (chassis.failpoints). A failure
    before the audit record is written undoes the moves here, as recovery would after a crash."""
    before = current_aliases(client, name)
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
        sequence = max((r.sequence for r in history(client, name)), default=0) + 1
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
    with suppress(MlflowException):
        client.delete_registered_model_tag(name, TAG_INTENT)
    # After the commit point, still under the lock: a failure here is reported, not raised,
    # and neither undoes nor blocks the move (the next audited move rewrites the table).
    problem = refresh_description(client, name)
    after = current_aliases(client, name)
    return AliasChange(name, plan.action, False, before, after, record, problem)


def _undo_after_failure(
    client: MlflowClient,
    name: str,
    plan: Plan,
    before: dict[str, int],
    intent: Intent | None,
    error: Exception,
) -> None:
    """Nothing was committed: put the aliases back, as recovery would after a crash. If that
    fails too (the registry is down), the intent stays for `chassis recover` to resolve."""
    try:
        if intent is not None:
            stood = _resolve(client, name, intent, None).outcome == COMPLETED
        else:
            stood = False
            for move in plan.moves:  # no intent written: no alias moved; make sure of it
                if current_aliases(client, name).get(move.alias) != before.get(move.alias):
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
