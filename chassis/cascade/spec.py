"""What a cascade version stores in its registry tag (chassis.cascade): the full tier's
version, the calibration and the threshold, and the figures they were chosen with."""

import json
import math
from dataclasses import asdict, dataclass

from chassis.cascade.threshold import check_threshold
from chassis.errors import CascadeError
from chassis.registry.tags import TAG_CASCADE


@dataclass(frozen=True)
class CascadeSpec:
    full_version: int
    temperature: float
    threshold: float
    ece_before: float
    ece_after: float
    # On the validation split, at `threshold`: share of rows sent to the full tier, and the
    # cascade's accuracy below the full tier's in percentage points (negative: above).
    validation_escalation_share: float
    validation_accuracy_loss_pp: float
    target: str = ""

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CascadeError(f"cascade temperature must be > 0, got {self.temperature!r}")
        if self.full_version < 1:
            raise CascadeError(f"cascade full tier must be a version >= 1, got {self.full_version}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CascadeSpec":
        try:
            values = json.loads(text)
            return cls(
                full_version=int(values["full_version"]),
                temperature=float(values["temperature"]),
                threshold=float(values["threshold"]),
                ece_before=float(values["ece_before"]),
                ece_after=float(values["ece_after"]),
                validation_escalation_share=float(values["validation_escalation_share"]),
                validation_accuracy_loss_pp=float(values["validation_accuracy_loss_pp"]),
                target=str(values.get("target", "")),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise CascadeError(f"unreadable cascade tag {text[:80]!r}: {error}") from None

    def describe(self) -> str:
        return (
            f"cascade to v{self.full_version}: T={self.temperature:.3f}, threshold "
            f"{self.threshold:.4f}, ECE {self.ece_before:.4f} -> {self.ece_after:.4f}, "
            f"validation escalation {self.validation_escalation_share:.1%}, accuracy loss "
            f"{self.validation_accuracy_loss_pp:+.2f} pp"
        )


def validation_escalation_share(tags: dict[str, str]) -> float | None:
    """A version's escalation share on the validation split if it is a cascade, else None."""
    tag = tags.get(TAG_CASCADE)
    return None if tag is None else CascadeSpec.from_json(tag).validation_escalation_share
