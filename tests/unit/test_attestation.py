import pytest

from chassis import attestation
from chassis.errors import RegistryError

SHA = "ab" * 32
KEY = "k" * 32


def signed_tags(name: str = "m", version: int = 3, verdict: str = "passed") -> dict[str, str]:
    return {
        "chassis.onnx_sha256": SHA,
        "chassis.gates": verdict,
        attestation.TAG_ATTESTATION: attestation.sign(KEY, name, version, SHA, verdict),
    }


def check(tags: dict[str, str], name: str = "m", version: int = 3, key: str = KEY) -> None:
    attestation.check(key, name, version, tags, "chassis.onnx_sha256", "chassis.gates")


def test_a_verdict_signed_as_it_stands_verifies():
    check(signed_tags())


@pytest.mark.parametrize(
    ("edit", "value"),
    [("chassis.gates", "passed"), ("chassis.onnx_sha256", "cd" * 32)],
    ids=["verdict-flipped-to-passed", "digest-swapped"],
)
def test_a_tag_edited_outside_chassis_is_refused(edit, value):
    tags = signed_tags(verdict="failed")
    tags[edit] = value
    if edit == "chassis.onnx_sha256":
        tags["chassis.gates"] = "failed"
    with pytest.raises(RegistryError, match="do not match their signature"):
        check(tags)


def test_a_signature_copied_to_another_version_is_refused():
    with pytest.raises(RegistryError, match="do not match their signature"):
        check(signed_tags(version=3), version=4)


def test_a_missing_signature_is_refused_with_the_fix():
    tags = signed_tags()
    del tags[attestation.TAG_ATTESTATION]
    with pytest.raises(RegistryError, match=r"no signed gate verdict.*chassis gates --model m"):
        check(tags)


def test_a_verdict_signed_with_another_key_is_refused():
    tags = signed_tags()
    with pytest.raises(RegistryError, match="signed with another key"):
        check(tags, key="other-key-" * 3)
