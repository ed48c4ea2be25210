"""Signed gate verdicts: a version's tags say it passed its gates; the signature says a
Chassis registry writer said so, about exactly those bytes.

Registry tags are writable by anyone with write access to the registry (the MLflow UI, the
REST API). Without a signature, setting `chassis.gates=passed` on any version, or changing
its `chassis.onnx_sha256` to match other bytes, would put an unvalidated model into traffic.
The attestation is an HMAC-SHA256, with a key only the writers (the release and gate flows)
and the verifiers (gateways) hold, over the model name, version, ONNX digest and verdict: a
tag edit breaks it, and it cannot be copied to another version. Verification fails closed.
"""

import hashlib
import hmac
import json

from chassis.errors import RegistryError
from chassis.registry.tags import TAG_ATTESTATION

SCHEME = "hmac-sha256-v1"


def _statement(name: str, version: int, sha256: str, verdict: str) -> bytes:
    return json.dumps(
        {"model": name, "version": int(version), "onnx_sha256": sha256, "gates": verdict},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def sign(key: str, name: str, version: int, sha256: str, verdict: str) -> str:
    """The signature of a verdict under the installation's key (the Registry carries it)."""
    digest = hmac.new(
        key.encode(), _statement(name, version, sha256, verdict), hashlib.sha256
    ).hexdigest()
    return f"{SCHEME}:{digest}"


def check(
    key: str, name: str, version: int, tags: dict[str, str], sha_tag: str, verdict_tag: str
) -> None:
    """Refuse a version whose verdict and digest tags are not signed as they stand."""
    signed = tags.get(TAG_ATTESTATION)
    fix = (
        f"re-run `chassis gates --model {name} --version {version}` with the registry "
        "signing key, if the version is trusted; nothing was changed"
    )
    if not signed:
        raise RegistryError(
            f"{name} v{version} has no signed gate verdict ({TAG_ATTESTATION}); {fix}"
        )
    expected = sign(key, name, version, tags.get(sha_tag, ""), tags.get(verdict_tag, ""))
    if not hmac.compare_digest(signed, expected):
        raise RegistryError(
            f"{name} v{version}: its gate verdict or digest tags do not match their signature "
            f"({TAG_ATTESTATION}): edited outside Chassis, or signed with another key; {fix}"
        )
