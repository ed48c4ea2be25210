"""How a candidate earns traffic: every threshold of a rollout, defined once.

The flow takes this model as its `policy` parameter (so the Prefect UI's run form and
prefect.yaml show each field's description), the CLI builds its options from the same
fields, and the analysis reads it. Out-of-range values are refused with the field named.
"""

import math
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chassis.errors import RolloutPolicyError
from chassis.policies import validated
from chassis.rollout.statistics import samples_to_detect, z_for

# Checks that can flag a candidate at one look: errors vs stable, errors absolute, latency
# vs stable, latency budget, agreement. The false-alarm budget is shared among them.
CHECKS_PER_LOOK = 5
# Looks inside one window: at 1/8, 1/4, 1/2 and all of the samples a verdict needs, so a
# gross failure is caught after a few requests; then once per extra window.
EARLY_LOOK_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


Percent = Annotated[float, Field(gt=0, le=100)]


class RolloutPolicy(BaseModel):
    """Rollout analysis settings. Defaults suit a small, fast model with steady traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: list[Percent] = Field(
        default=[10.0, 25.0, 50.0, 100.0],
        description="Canary traffic shares in percent, increasing, ending at 100. With "
        "growth_factor set, only the first is used.",
    )
    growth_factor: Annotated[float, Field(gt=1, le=10)] | None = Field(
        default=None,
        description="Grow the share by this factor after each healthy step (e.g. 1.5) "
        "instead of following `steps`; the last step is 100.",
    )
    min_percent: Percent = Field(
        default=5.0,
        description="A degraded step halves the candidate's share; below this share it is "
        "rolled back instead.",
    )
    shadow_first: bool = Field(
        default=True,
        description="Start with a shadow step: the candidate sees a copy of every request, "
        "its answers are compared, the champion's are returned.",
    )
    mirror_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        default=100.0,
        description="Share of live requests also run on the other version during every step "
        "and compared (agreement); also gives the analysis samples of both versions however "
        "small the canary share. Each mirrored request costs four extra model calls of a "
        "fast model (both versions, twice), two of a slower one: see docs/architecture.md.",
    )
    step_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Longest a step waits for the samples a verdict needs."
    )
    max_extensions: Annotated[int, Field(ge=0, le=20)] = Field(
        default=2,
        description="Extra windows an inconclusive step gets; still inconclusive after them, "
        "the rollout pauses (traffic back to the champion, challenger kept).",
    )
    max_replay_step_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=600.0,
        description="When the rollout replays test rows itself (the gateway it started has "
        "no users, or drive_traffic=always), samples come as fast as the machine answers "
        "them, so a step's windows stretch to the pace of the first (a heavy model on a busy "
        "machine), up to this long a step; never shorter than with step_seconds. With live "
        "traffic only, a slow pace means too little traffic and the step pauses.",
    )
    sync_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0,
        description="Longest every gateway replica may take to serve a committed split; "
        "after it the rollout fails safe (traffic back to the champion, challenger kept).",
    )
    retry_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="Longest a replica may stay unreachable during a step (a restart comes "
        "back on the committed split); after it the rollout pauses on the champion.",
    )
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = Field(
        default=120.0,
        description="How long a committed split holds without its rollout: the flow renews "
        "it while it runs; if the flow dies, every replica returns to the champion this long "
        "after the last renewal and one of them retires the challenger. Keep it well above "
        "the clock skew between hosts and the flow's longest pause.",
    )
    max_steps: Annotated[int, Field(ge=1, le=100)] = Field(
        default=16, description="Most steps (growth and halving included) a rollout may take."
    )
    min_requests: Annotated[int, Field(ge=1)] = Field(
        default=50,
        description="Floor on the candidate samples a step needs, on top of what the "
        "statistics below require.",
    )
    false_alarm_rate: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        default=0.01,
        description="Chance, per rollout, that a candidate as good as the champion is rolled "
        "back or slowed by the analysis (spread over every look the policy allows).",
    )
    power: Annotated[float, Field(ge=0.5, lt=1)] = Field(
        default=0.9,
        description="Chance that one step catches a candidate as bad as the detect_* "
        "settings; sets how many samples a step needs.",
    )
    max_error_rate: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.01,
        description="Hard limit: a candidate whose error rate is surely above this fails.",
    )
    error_rate_margin: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0,
        description="Tolerated error-rate increase over the champion's in the same window.",
    )
    detect_error_increase: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.05,
        description="Error-rate increase over the champion a step must be able to catch.",
    )
    p99_budget_ms: Annotated[float, Field(gt=0)] = Field(
        default=50.0,
        description="Hard limit, in ms: a candidate whose p99 model time per row (CPU) is "
        "surely above this fails. Time queued behind other requests is load, not the model: "
        "it is not judged here.",
    )
    max_latency_ratio: Annotated[float, Field(ge=1, le=100)] = Field(
        default=1.5,
        description="A candidate whose p50 or p90 is surely above this multiple of the "
        "champion's (in the same window) is degraded.",
    )
    latency_slack_ms: Annotated[float, Field(ge=0)] = Field(
        default=0.0,
        description="Added to the latency ratio's limit: differences below this are not "
        "worth a verdict, whatever the ratio.",
    )
    min_agreement: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.95,
        description="A candidate whose agreement with the champion on mirrored requests is "
        "surely below this fails.",
    )
    detect_agreement_drop: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.05,
        description="Agreement below min_agreement by this much must be caught by one step.",
    )
    # A regressor's agreement checks that the candidate computes the same function (a lost
    # scaler, a unit change or a swapped feature moves most rows by far more), not its
    # quality, which the gates judged on RMSE. On a noisy target two good models differ row
    # by row: the diabetes spec's distilled student, equal in RMSE, is within 10% of its
    # teacher on 93% of test rows and within 20% on all of them.
    value_agreement_tolerance: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.2,
        description="Regressor: a mirrored prediction agrees with the champion's when their "
        "relative difference |candidate - champion| / |champion| is at most this (0.2 = "
        "20%); the share that agrees is judged against min_agreement.",
    )

    # A cascade's escalation share is what its latency and cost rest on: live traffic that
    # escalates far more than the validation split did (other inputs, a drifted world) makes
    # it a slower, costlier model than the one gated, even when every answer is right.
    max_escalation_share_increase: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.10,
        description="A cascade candidate whose live share of rows escalated to its full tier "
        "is surely above its validation share plus this (absolute; 0.10 = 10 points) fails.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "RolloutPolicy":
        if self.steps != sorted(self.steps) or self.steps[-1] != 100:
            raise ValueError(f"steps must increase and end at 100, got {self.steps}")
        if self.min_percent > self.steps[0]:
            raise ValueError(
                f"min_percent ({self.min_percent}) must not exceed the first step ({self.steps[0]})"
            )
        if self.min_agreement - self.detect_agreement_drop < 0:
            raise ValueError("min_agreement - detect_agreement_drop must be >= 0")
        if self.detect_error_increase <= self.error_rate_margin:
            raise ValueError(
                "detect_error_increase must exceed error_rate_margin (nothing could be caught)"
            )
        return self

    # ---- what the settings imply ---------------------------------------------------------

    @property
    def looks_per_step(self) -> int:
        # Each early look point, and the end of each window that ends before the last point.
        return len(EARLY_LOOK_FRACTIONS) + self.max_extensions + 1

    @property
    def z(self) -> float:
        """Normal quantile of every bound: the false-alarm budget over all possible looks."""
        looks = self.looks_per_step * (self.max_steps + int(self.shadow_first))
        return z_for(self.false_alarm_rate / (looks * CHECKS_PER_LOOK))

    @property
    def required_samples(self) -> int:
        """Candidate samples (executions and compared rows) a step needs before it may pass:
        enough that a candidate as bad as the detect_* settings would have failed it."""
        z_power = z_for(1 - self.power)
        bad_error_rate = min(0.5, self.detect_error_increase)
        errors = samples_to_detect(
            self.detect_error_increase,
            math.sqrt(bad_error_rate * (1 - bad_error_rate)),
            self.z,
            z_power,
            self.error_rate_margin,
        )
        bad_agreement = self.min_agreement - self.detect_agreement_drop
        agreement = (
            samples_to_detect(
                self.detect_agreement_drop,
                math.sqrt(max(bad_agreement * (1 - bad_agreement), 1e-4)),
                self.z,
                z_power,
            )
            if self.mirror_percent > 0
            else 0
        )
        return max(self.min_requests, errors, agreement)


def policy_from(values: Mapping[str, object]) -> RolloutPolicy:
    """A policy from user-given values; errors name each bad field."""
    return validated(RolloutPolicy, values, RolloutPolicyError, "rollout policy")
