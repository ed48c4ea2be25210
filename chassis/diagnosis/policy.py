"""What the diagnosis counts as failing: one pydantic model, the `diagnose` flow's
parameter and the CLI's options. Defaults match the shipped alert rules (5xx ratio above
5 %, p99 above 50 ms), so a diagnosis started by an alert judges what the alert judged."""

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chassis.errors import DiagnosisPolicyError
from chassis.policies import validated

# What a recovery action does: on (acts), suggest (the report says what it would do), off.
ActionSwitch = Literal["on", "suggest", "off"]


class DiagnosisPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    observe_seconds: Annotated[float, Field(ge=1, le=600)] = Field(
        default=15.0,
        description="How long each replica's counters are watched to judge the model's "
        "error ratio, latency and shadow agreement (at most: a look every second ends the "
        "watch once a version is surely failing).",
    )
    error_ratio_max: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.05,
        description="A version fails when its server-error ratio is surely above this (the "
        "lower 99% confidence bound of the observed ratio).",
    )
    latency_p99_ms_max: Annotated[float, Field(gt=0)] = Field(
        default=50.0,
        description="A version fails when its p99 latency is surely above this, in ms.",
    )
    agreement_min: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.9,
        description="A shadowed version fails when its agreement with the stable one is "
        "surely below this.",
    )
    value_agreement_tolerance: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.2,
        description="A regressor's shadow answer agrees when within this relative "
        "difference of the stable version's (the rollout policy's default).",
    )
    min_requests: Annotated[int, Field(ge=1)] = Field(
        default=30,
        description="Fewer requests in the window than this: the version is not judged.",
    )
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        default=0.01,
        description="Chance that a healthy version is judged failing, per check, over the "
        "whole watch (half spent on the early looks that end it once a version is surely "
        "failing, half at the window's end).",
    )
    min_feedback_rows: Annotated[int, Field(ge=1)] = Field(
        default=100,
        description="Fewer feedback rows than this (over every replica): a version's live "
        "accuracy is not judged.",
    )
    window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = Field(
        default=15,
        description="Minutes of served rows the data-quality branch reads.",
    )
    missing_share_max: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.01, description="Share of served rows with a missing value that fails."
    )
    out_of_range_share_max: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.05,
        description="Share of a feature's served values outside the reference's range that fails.",
    )

    fallback: ActionSwitch = Field(
        default="on",
        description="When the champion's own performance fails and a @previous exists: roll "
        "back to it (compare-and-set, audited) and have every replica follow.",
    )
    fallback_cooldown_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = Field(
        default=60,
        description="After an automatic fallback, no other one for this long (suggested "
        "instead), unless an alias was moved since, by a person or a release.",
    )
    restart: ActionSwitch = Field(
        default="on",
        description="A replica that answers but is not ready, or does not serve a verified "
        "version: restart it when it runs under the local supervisor (chassis serve "
        "--replicas N), and wait until it is ready again; elsewhere only say so (on "
        "Kubernetes the probes act).",
    )

    sanitize: ActionSwitch = Field(
        default="on",
        description="When the served data fails on missing values or values outside the "
        "reference's ranges: switch the model's gateway sanitization on (audited, every "
        "replica follows); off again once a later diagnosis finds the window clean.",
    )
    sanitize_mode: Literal["clip", "refuse"] = Field(
        default="clip",
        description="What sanitization does: clip (values to the reference's ranges, missing "
        "ones filled with its median) or refuse (a request with such a row gets a 422).",
    )


def diagnosis_policy_from(values: Mapping[str, object]) -> DiagnosisPolicy:
    """A diagnosis policy from user-given values; errors name each bad field."""
    return validated(DiagnosisPolicy, values, DiagnosisPolicyError, "diagnosis policy")
