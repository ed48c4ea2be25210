"""Errors a user can act on. Each message names the problem and what to do about it.

The CLI prints `str(error)` as its one-line cause and exits non-zero; anything that is not a
`ChassisError` is a bug in Chassis and is reported as such.
"""


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


class ExportError(ChassisError):
    """A model could not be exported to ONNX."""


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
    """A stored artifact's sha256 differs from the digest recorded at registration."""


class CompressionError(ChassisError):
    """A compression candidate could not be built, or its options are unusable."""


class CalibrationDataError(CompressionError):
    """Calibration data for static quantization is empty, misshapen or not finite."""


class SelectionPolicyError(CompressionError):
    """A selection tolerance, tolerance mode or objective is outside what Chassis accepts."""
