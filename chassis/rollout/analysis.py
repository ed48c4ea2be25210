"""Pure judgement of one rollout step from the gateway's per-version statistics."""

from dataclasses import dataclass, field
from typing import Literal

from chassis.errors import ChassisError

Verdict = Literal["pass", "fail", "inconclusive"]


class RolloutPolicyError(ChassisError):
    """A rollout setting is outside its meaningful range."""


@dataclass(frozen=True)
class RolloutPolicy:
    """How a candidate earns more traffic. Defaults suit a small, fast model."""

    steps: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0)
    shadow_first: bool = True
    min_requests: int = 100  # candidate requests a step needs before it can be judged
    step_seconds: float = 30.0  # how long a step waits for them
    max_extensions: int = 2  # an inconclusive step is extended this often, then fails
    max_error_rate: float = 0.01
    p99_budget_ms: float = 50.0
    max_p99_ratio_vs_stable: float = 3.0
    p99_slack_ms: float = 2.0  # ratios of sub-millisecond latencies are noise
    min_agreement: float = 0.9  # with the champion, on shadowed traffic
    failure_limit: int = 1  # failed checks tolerated before rollback (1 = first failure)

    def __post_init__(self) -> None:
        problems = []
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            problems.append(f"steps must be percentages in (0, 100], got {list(self.steps)}")
        elif list(self.steps) != sorted(self.steps) or self.steps[-1] != 100:
            problems.append(f"steps must increase and end at 100, got {list(self.steps)}")
        if self.min_requests < 1:
            problems.append("min_requests must be at least 1")
        if not 0 <= self.max_error_rate < 1:
            problems.append(f"max_error_rate must be in [0, 1), got {self.max_error_rate}")
        if not 0 <= self.min_agreement <= 1:
            problems.append(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.step_seconds <= 0 or self.p99_budget_ms <= 0:
            problems.append("step_seconds and p99_budget_ms must be > 0")
        if self.failure_limit < 1:
            problems.append("failure_limit must be at least 1")
        if problems:
            raise RolloutPolicyError("invalid rollout policy: " + "; ".join(problems))


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: str
    threshold: str


@dataclass(frozen=True)
class StepAnalysis:
    step: str
    verdict: Verdict
    checks: tuple[Check, ...] = field(default_factory=tuple)
    reason: str = ""

    def rows(self) -> list[dict[str, str]]:
        return [
            {
                "step": self.step,
                "check": c.name,
                "result": "pass" if c.passed else "FAIL",
                "observed": c.observed,
                "threshold": c.threshold,
                "verdict": self.verdict,
            }
            for c in self.checks
        ] or [
            {
                "step": self.step,
                "check": "-",
                "result": "-",
                "observed": self.reason,
                "threshold": "-",
                "verdict": self.verdict,
            }
        ]


def analyze_step(
    step: str,
    candidate: dict[str, float],
    stable: dict[str, float],
    policy: RolloutPolicy,
    *,
    shadow: bool = False,
) -> StepAnalysis:
    """`candidate` and `stable` are the gateway's stats summaries for this step's window."""
    requests = int(candidate["shadow_compared"] if shadow else candidate["requests"])
    if requests < policy.min_requests:
        return StepAnalysis(
            step,
            "inconclusive",
            reason=f"{requests} candidate requests, fewer than the {policy.min_requests} needed",
        )
    checks = [
        Check(
            "error rate",
            candidate["error_rate"] <= policy.max_error_rate,
            f"{candidate['error_rate']:.4f} "
            f"({int(candidate['errors'])}/{int(candidate['requests'])})",
            f"<= {policy.max_error_rate}",
        ),
        Check(
            "p99 latency",
            candidate["p99_ms"] <= policy.p99_budget_ms,
            f"{candidate['p99_ms']:.2f} ms",
            f"<= {policy.p99_budget_ms:g} ms",
        ),
    ]
    if stable.get("requests", 0):
        limit = stable["p99_ms"] * policy.max_p99_ratio_vs_stable + policy.p99_slack_ms
        checks.append(
            Check(
                "p99 vs stable",
                candidate["p99_ms"] <= limit,
                f"{candidate['p99_ms']:.2f} ms vs {stable['p99_ms']:.2f} ms",
                f"<= {policy.max_p99_ratio_vs_stable:g}x + {policy.p99_slack_ms:g} ms",
            )
        )
    if shadow:
        checks.append(
            Check(
                "agreement with champion",
                candidate["shadow_agreement"] >= policy.min_agreement,
                f"{candidate['shadow_agreement']:.4f} over {requests} rows",
                f">= {policy.min_agreement}",
            )
        )
    failed = sum(not c.passed for c in checks)
    verdict: Verdict = "fail" if failed >= policy.failure_limit else "pass"
    reason = "; ".join(
        f"{c.name} {c.observed} (needs {c.threshold})" for c in checks if not c.passed
    )
    return StepAnalysis(step, verdict, tuple(checks), reason or "all checks passed")
