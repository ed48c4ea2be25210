"""A model's sanitization setting: what its gateways do with a row whose values fall
outside the reference's ranges or are missing (null in the request's JSON).

`off`: nothing (a null is refused as before, an out-of-range value is served as sent).
`clip`: each value is clipped to the reference's [min, max] of its feature and a missing
value is filled with the reference's median. `refuse`: a request with such a row gets a
422 naming the row and the feature.

The setting lives on the registered model (tag `chassis.sanitization`, see
chassis/registry/sanitization.py) so that every replica follows it and a restart keeps it;
the ranges and fill values are derived once, from the reference sample of the champion the
setting was made for, and travel with it (a gateway never reads the reference itself).
"""

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal, cast, get_args

import pandas as pd

from chassis.errors import SanitizationError

SanitizationMode = Literal["off", "clip", "refuse"]
MODES: tuple[SanitizationMode, ...] = get_args(SanitizationMode)
# Its audit records' actions, in the alias audit trail (they move no alias).
SANITIZATION_ON = "sanitization-on"
SANITIZATION_OFF = "sanitization-off"
SANITIZATION_ACTIONS = (SANITIZATION_ON, SANITIZATION_OFF)


@dataclass(frozen=True)
class Sanitization:
    mode: SanitizationMode
    features: list[str] = field(default_factory=list[str])  # the model's input order
    low: list[float] = field(default_factory=list[float])
    high: list[float] = field(default_factory=list[float])
    fill: list[float] = field(default_factory=list[float])
    version: int | None = None  # the version whose reference the ranges come from
    at: str = ""  # when it was set (UTC, ISO 8601), by whom and why
    by: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SanitizationError(
                f"sanitization mode must be one of {', '.join(MODES)}, not {self.mode!r}"
            )
        widths = {len(self.features), len(self.low), len(self.high), len(self.fill)}
        if len(widths) != 1:
            raise SanitizationError("sanitization features, ranges and fills differ in length")
        if self.mode != "off" and not self.features:
            raise SanitizationError(f"sanitization mode {self.mode} needs the features' ranges")
        for name, low, high, fill in zip(
            self.features, self.low, self.high, self.fill, strict=True
        ):
            if not all(math.isfinite(v) for v in (low, high, fill)) or not low <= fill <= high:
                raise SanitizationError(
                    f"sanitization of {name!r}: need finite low <= fill <= high, got "
                    f"{low}, {fill}, {high}"
                )

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def same_setting(self, other: "Sanitization | None") -> bool:
        """Whether `other` does the same to requests (who set it, when and why aside)."""
        if other is None:
            return not self.on
        if not self.on:
            return not other.on
        return (self.mode, self.features, self.low, self.high, self.fill, self.version) == (
            other.mode,
            other.features,
            other.low,
            other.high,
            other.fill,
            other.version,
        )

    def describe(self) -> str:
        if not self.on:
            return "off"
        source = f" from v{self.version}'s reference" if self.version is not None else ""
        return f"{self.mode} ({len(self.features)} features{source})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Sanitization":
        try:
            data = dict(json.loads(text))
            return cls(
                mode=cast(SanitizationMode, data["mode"]),
                features=[str(f) for f in data.get("features", [])],
                low=[float(v) for v in data.get("low", [])],
                high=[float(v) for v in data.get("high", [])],
                fill=[float(v) for v in data.get("fill", [])],
                version=None if data.get("version") is None else int(data["version"]),
                at=str(data.get("at", "")),
                by=str(data.get("by", "")),
                reason=str(data.get("reason", "")),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise SanitizationError(f"unreadable sanitization setting: {error}") from None


def derive(
    reference: pd.DataFrame,
    features: list[str],
    mode: SanitizationMode,
    version: int | None,
    *,
    at: str = "",
    by: str = "",
    reason: str = "",
) -> Sanitization:
    """The setting for `mode` with each feature's range (min, max) and fill (median) read
    from the reference sample."""
    if mode == "off":
        return Sanitization("off", version=version, at=at, by=by, reason=reason)
    low: list[float] = []
    high: list[float] = []
    fill: list[float] = []
    for feature in features:
        if feature not in reference.columns:
            raise SanitizationError(f"the reference has no column {feature!r}")
        known = pd.to_numeric(reference[feature], errors="coerce").dropna()
        if known.empty:
            raise SanitizationError(f"the reference has no numeric value of {feature!r}")
        low.append(float(known.min()))
        high.append(float(known.max()))
        fill.append(float(known.median()))
    return Sanitization(mode, list(features), low, high, fill, version, at, by, reason)
