"""What a diagnosis saw: findings grouped in branches, walked in the troubleshooting
tree's order, stopping at the first branch that fails.

The order is the one an operator follows: the base services first (a model cannot be
judged on replicas that are down), then the model's performance, then the data it is
sent, then the business logic (the rollout record and the aliases). A failing branch
names what is wrong and what recovers it; the branches after it are not walked, because
their evidence would be read through the fault already found.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Branch = Literal["service", "model", "data", "business"]
BRANCHES: tuple[Branch, ...] = ("service", "model", "data", "business")
BRANCH_TITLES: dict[Branch, str] = {
    "service": "base services",
    "model": "model performance",
    "data": "data quality",
    "business": "business logic",
}
# Whether a check passed: healthy, failing, or not judged (too little evidence, or the
# check could not run; said so, never counted as healthy or failing).
Verdict = Literal["healthy", "failing", "not judged"]


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked, e.g. "replica http://10.0.0.4:8000 ready"
    verdict: Verdict
    observed: str  # what was seen, with its numbers
    expected: str  # what healthy means for this check
    version: int | None = None  # the model version it is about, when it is about one

    @property
    def failing(self) -> bool:
        return self.verdict == "failing"


@dataclass(frozen=True)
class BranchResult:
    branch: Branch
    findings: list[Finding]

    @property
    def failing(self) -> bool:
        return any(finding.failing for finding in self.findings)


@dataclass(frozen=True)
class Diagnosis:
    model: str
    walked: list[BranchResult]
    not_walked: list[Branch] = field(default_factory=list[Branch])

    @property
    def failing_branch(self) -> Branch | None:
        return next((result.branch for result in self.walked if result.failing), None)

    def summary(self) -> str:
        """One sentence: where the fault is, or that none was found."""
        branch = self.failing_branch
        if branch is None:
            return f"{self.model}: nothing wrong found ({len(self.walked)} branches walked)"
        failing = next(r for r in self.walked if r.branch == branch)
        first = next(f for f in failing.findings if f.failing)
        return f"{self.model}: {BRANCH_TITLES[branch]} failing: {first.check}: {first.observed}"


def walk(model: str, branches: Sequence[tuple[Branch, Callable[[], list[Finding]]]]) -> Diagnosis:
    """Run each branch's checks in order and stop after the first failing branch."""
    walked: list[BranchResult] = []
    for index, (branch, check) in enumerate(branches):
        result = BranchResult(branch, check())
        walked.append(result)
        if result.failing:
            return Diagnosis(model, walked, [name for name, _ in branches[index + 1 :]])
    return Diagnosis(model, walked)
