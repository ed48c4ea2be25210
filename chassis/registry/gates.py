"""Gate verdicts on versions: recorded signed, and required before a version takes traffic."""

import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from chassis import attestation
from chassis.errors import IntegrityError, RegistryError
from chassis.registry.failures import lookup_failed
from chassis.registry.fetch import fetch_version
from chassis.registry.reads import no_version, version_tags
from chassis.registry.tags import (
    TAG_ACCURACY_GATE,
    TAG_ATTESTATION,
    TAG_GATE_REPORT,
    TAG_GATES,
    TAG_ONNX_SHA256,
)


def require_passed_gates(
    client: MlflowClient, signing_key: str, name: str, version: int
) -> dict[str, str]:
    """A version may take traffic only with a stored gate report that passed."""
    try:
        tags = dict(client.get_model_version(name, str(version)).tags)
    except MlflowException as error:
        missing = f"{no_version(name, version)}; nothing was changed"
        raise lookup_failed(error, missing) from None
    verdict = tags.get(TAG_GATES)
    if verdict is None:
        raise RegistryError(
            f"{name} v{version} has no gate report; run `chassis gates --model {name} "
            f"--version {version}` first; nothing was changed"
        )
    if verdict != "passed":
        raise RegistryError(
            f"{name} v{version} failed its gates (report: {tags.get(TAG_GATE_REPORT, '?')}); "
            "it cannot be promoted; nothing was changed"
        )
    attestation.check(signing_key, name, version, tags, TAG_ONNX_SHA256, TAG_GATES)
    return tags


def verify_for_champion(
    client: MlflowClient, signing_key: str, name: str, version: int
) -> dict[str, str]:
    """What is about to become champion must have passed its gates and its stored ONNX
    file must still match the sha256 recorded at registration. Returns the version's tags."""
    tags = require_passed_gates(client, signing_key, name, version)
    with tempfile.TemporaryDirectory(prefix="chassis-verify-") as workdir:
        try:
            fetch_version(client, name, version, Path(workdir))
        except IntegrityError as error:
            raise IntegrityError(f"{error}; nothing was changed") from None
    return tags


def record_gate_report(
    client: MlflowClient,
    signing_key: str,
    name: str,
    version: int,
    passed: bool,
    report_uri: str,
    accuracy_gate: float | None = None,
) -> None:
    """The verdict, signed, with where its report is; `accuracy_gate`: the live accuracy
    the version must keep (chassis/live_accuracy.py); None (a regressor, or a report
    recorded by hand) leaves the tag as it is."""
    verdict = "passed" if passed else "failed"
    digest = version_tags(client, name, version).get(TAG_ONNX_SHA256, "")
    client.set_model_version_tag(name, str(version), TAG_GATE_REPORT, report_uri)
    # Before the verdict, so a gateway that verifies the version reads its gate with it.
    if accuracy_gate is not None:
        client.set_model_version_tag(name, str(version), TAG_ACCURACY_GATE, f"{accuracy_gate:.6f}")
    # Signature before verdict: a crash between the two leaves a verdict that does not
    # verify (refused), never a verdict that passes unsigned.
    signature = attestation.sign(signing_key, name, version, digest, verdict)
    client.set_model_version_tag(name, str(version), TAG_ATTESTATION, signature)
    client.set_model_version_tag(name, str(version), TAG_GATES, verdict)
