"""Which share a canary runs next, and when a step is looked at: pure rules of the policy.

A healthy step grows the candidate's share (the next listed step, or x growth_factor); a
degraded one halves it, and a degraded step already at the minimum share rolls back. The
number of steps is bounded, so the analysis's false-alarm budget covers every look.
"""

from dataclasses import dataclass

from chassis.rollout.policy import EARLY_LOOK_FRACTIONS, RolloutPolicy


@dataclass(frozen=True)
class NextStep:
    percent: float | None  # None: the rollout ends (see `done`)
    done: bool  # True: promote (percent is None after 100 %) or roll back
    rollback: bool = False
    reason: str = ""


def first_share(policy: RolloutPolicy) -> float:
    return policy.steps[0]


def next_share(policy: RolloutPolicy, current: float, verdict: str, steps_taken: int) -> NextStep:
    """After a step at `current` percent judged `verdict` ("pass" or "degraded")."""
    if verdict == "pass":
        if current >= 100:
            return NextStep(None, done=True, reason="100 % passed")
        if policy.growth_factor is not None:
            grown = min(100.0, current * policy.growth_factor)
        else:
            grown = next((s for s in policy.steps if s > current), 100.0)
        return _bounded(policy, grown, steps_taken)
    if verdict == "degraded":
        halved = current / 2
        if halved < policy.min_percent:
            return NextStep(
                None,
                done=True,
                rollback=True,
                reason=f"degraded at {current:g} %, and half of it is below the minimum "
                f"share {policy.min_percent:g} %",
            )
        return _bounded(policy, halved, steps_taken)
    raise ValueError(f"no next step after a {verdict!r} step")


def _bounded(policy: RolloutPolicy, percent: float, steps_taken: int) -> NextStep:
    if steps_taken >= policy.max_steps:
        return NextStep(
            None,
            done=True,
            rollback=True,
            reason=f"{steps_taken} steps taken, the policy allows {policy.max_steps}",
        )
    return NextStep(round(percent, 4), done=False)


def look_points(needed: int) -> list[int]:
    """Candidate sample counts at which a window is judged before its deadline."""
    return sorted({max(1, int(needed * fraction)) for fraction in EARLY_LOOK_FRACTIONS})
