"""Errors a user can act on. Each message names the problem and what to do about it.

The CLI prints `str(error)` as its one-line cause and exits non-zero; anything that is not a
`ChassisError` is a bug in Chassis and is reported as such.
"""

from typing import Literal


class ChassisError(Exception):
    """Base class of every error whose message is meant for the user."""


class SpecError(ChassisError):
    """A model spec could not be imported or does not satisfy the spec contract."""


class DatasetError(ChassisError):
    """A dataset returned by a spec is unusable (missing columns, empty, non-finite, ...)."""


class ExpectationSuiteError(ChassisError):
    """An expectation suite file is unreadable or holds expectations Great Expectations dropped."""


class DataValidationError(ChassisError):
    """Data failed its Great Expectations suite; the message lists every failing expectation."""


class TextInputError(ChassisError):
    """A text a text model cannot read: not a string, empty, or longer than its tokens."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"text {index} {problem}")
        self.index = index
        self.problem = problem


class ExportError(ChassisError):
    """A model could not be exported to ONNX."""


class ModelImportError(ChassisError):
    """A model trained elsewhere does not fit the dataset or the serving contract."""


class ProgramError(ChassisError):
    """A torch module cannot be stored as a program, or a stored program cannot be rebuilt."""


class ParityError(ChassisError):
    """ONNX Runtime's output differs from torch's by more than the tolerance."""


class RegistryError(ChassisError):
    """The MLflow model registry refused an operation or is in an unexpected state."""


class RegistryUnreachable(RegistryError):  # noqa: N818 (reads as what happened)
    """The registry did not answer (server down, network, database unavailable): nothing
    is known about the model, which is not the same as the model not existing."""


class SettingsError(ChassisError):
    """A setting has an unusable value."""


class IntegrityError(ChassisError):
    """A stored artifact's sha256 differs from the digest recorded at registration.

    `expected` and `actual` are the two digests when a file was hashed (None when there was
    nothing to hash, e.g. no digest recorded): the gateway's log names them as fields."""

    def __init__(
        self, message: str, expected: str | None = None, actual: str | None = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CompressionError(ChassisError):
    """A compression candidate could not be built, or its options are unusable."""


class CalibrationDataError(CompressionError):
    """Calibration data for static quantization is empty, misshapen or not finite."""


class SelectionPolicyError(CompressionError):
    """A selection tolerance, tolerance mode or objective is outside what Chassis accepts."""


class StorageError(ChassisError):
    """The artifact store (S3) is unreachable or refuses an operation."""


class FailpointError(SettingsError):
    """CHASSIS_FAILPOINTS holds an entry that is not `name=action` with a known action."""


# Gates and aliases ------------------------------------------------------------------------


class InjectedFault(ChassisError):  # noqa: N818 (reads as what happened)
    """A fail point armed with `fail` was reached (chassis.failpoints)."""


class GateConfigError(ChassisError):
    """A gate threshold is outside its meaningful range."""


class GatesFailed(ChassisError):  # noqa: N818 (reads as what happened)
    """A version failed at least one gate; the report names each."""


class PromotionConflict(RegistryError):  # noqa: N818 (reads as what happened)
    """Another promotion moved the champion after this one read it: compare-and-set failed."""


class RetiredChallenger(RegistryError):  # noqa: N818 (reads as what happened)
    """The version was retired as challenger; setting it again needs `allow_retired`."""


class WebhookError(ChassisError):
    """A delivery Chassis will not act on; `status` is the HTTP answer for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Rollout ----------------------------------------------------------------------------------


class DiagnosisPolicyError(ChassisError):
    """A diagnosis setting is outside its meaningful range."""


class RecoveryFailed(ChassisError):  # noqa: N818 (reads as what happened)
    """A recovery the diagnosis decided on could not be made; nothing was changed."""


class RolloutPolicyError(ChassisError):
    """A rollout setting is outside its meaningful range."""


class RecordError(ChassisError):
    """A rollout record that cannot be read or applied (newer schema, bad values)."""


class RecordConflict(RecordError):  # noqa: N818 (reads as what happened)
    """Another writer committed a generation after this one read the record."""


class LeaseHeld(RecordConflict):
    """Another owner's rollout holds the split, and its lease has not passed."""


class LeaseLost(RecordConflict):
    """This owner's lease passed: its split is orphaned and replicas serve the champion."""


class CountsError(ChassisError):
    """Counters that cannot be combined (different histogram buckets) or read."""


class FleetError(ChassisError):
    """The replicas did not all reach a committed split in time, or none were given."""


class RolloutFailed(ChassisError):  # noqa: N818 (reads as what happened)
    """The candidate failed a step's analysis; its traffic is 0 and its alias removed."""


class RolloutPaused(ChassisError):  # noqa: N818 (reads as what happened)
    """Too little traffic to judge the candidate: traffic is back on the champion and the
    challenger keeps its alias, so the rollout can simply be run again."""


class RolloutAborted(ChassisError):  # noqa: N818 (reads as what happened)
    """The rollout itself failed mid-step (not the candidate, not the replicas): it was
    ended safely, or its message says what was left and that the lease will end it."""


# Drift ------------------------------------------------------------------------------------


class DriftInputError(ChassisError):
    """The window cannot be compared with the reference (schema mismatch, no reference)."""


class DataQualityFailure(ChassisError):  # noqa: N818 (reads as what happened)
    """The served window is unusable; drift cannot be judged (and is never assumed absent)."""


# Serving ----------------------------------------------------------------------------------


class GatewayError(ChassisError):
    """The gateway refused an admin call or is unreachable."""


class NotServable(ChassisError):  # noqa: N818 (reads as what happened)
    """A model the gateway was told to serve cannot be, as the registry stands: it is not
    registered, has no champion, or the version it would serve is refused (its digest or
    its gate verdict). Waiting alone does not change that, unlike `RegistryUnreachable`:
    registering, promoting or gating a version does."""


class StateError(ChassisError):
    """A rollout state change is invalid (unknown mode, weight out of range, ...)."""


class RequestError(Exception):
    """A prediction request the gateway answers with `status` (4xx) and `message`: the
    caller's mistake, answered over HTTP, never printed by the CLI (so not a ChassisError)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class TextRefused(RequestError):  # noqa: N818 (reads as what happened)
    """A text request refused before any version ran (422), with why, as the
    chassis_text_refused_total counter labels it: "empty" or "not_text" ("too_long" is
    found when a version's own tokenizer reads the text)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(422, message)
        self.reason = reason


class UpstreamUnavailable(RequestError):  # noqa: N818 (reads as what happened)
    """The upstream gateway (edge mode, a cascade's full tier) did not answer (503) or not
    in time (504); `outcome` is the metric's label: unreachable or timeout."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(status, message)
        self.outcome = outcome


# Why feedback is refused: the `reason` label of chassis_feedback_refused_total (see
# chassis/serving/feedback.py).
FeedbackReason = Literal[
    "malformed", "unknown_id", "too_late", "duplicate", "bad_label", "peer_unavailable"
]


class FeedbackRefused(RequestError):  # noqa: N818 (reads as what happened)
    """Feedback the gateway refuses (4xx; 503 `peer_unavailable` when the replica that
    answered a prediction does not answer), with the reason counted and, in a batch, the
    index of the first item refused. Nothing of a refused body is counted. `detail`: the
    message without the item's index."""

    def __init__(
        self, status: int, reason: FeedbackReason, message: str, index: int | None = None
    ) -> None:
        super().__init__(status, message if index is None else f"feedback[{index}]: {message}")
        self.reason: FeedbackReason = reason
        self.index = index
        self.detail = message


class DeadlineExceeded(TimeoutError):  # noqa: N818 (reads as what happened)
    """The request would be answered after its client stops waiting: not computed."""


class SanitizationError(ChassisError):
    """Sanitization cannot be set as asked: a text model, no champion or reference, a bad
    mode, or a stored setting that cannot be read."""


# Cascade ----------------------------------------------------------------------------------


class CascadeError(ChassisError):
    """A cascade that cannot be built or served as asked: tiers that do not fit together
    (input width, label set, task), a threshold outside (0, 1], or a target no threshold
    meets. Nothing is registered or served half-configured."""
