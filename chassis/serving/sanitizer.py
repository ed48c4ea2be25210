"""A model's sanitization (chassis/sanitization.py) applied to a request's rows.

Only built while sanitization is on: with it off the gateway holds None and the predict
path does nothing more than look that up. A clean request (the usual case even with it on)
costs two comparisons and a NaN check over its rows and is returned as it came.
"""

from collections.abc import Callable

import numpy as np

from chassis.errors import RequestError
from chassis.sanitization import Sanitization

# (feature, action, values) and (reason, rows): the counters the gateway keeps.
CountValues = Callable[[str, str, int], None]
CountRefused = Callable[[str, int], None]


class Sanitizer:
    def __init__(
        self, setting: Sanitization, count_values: CountValues, count_refused: CountRefused
    ) -> None:
        self.setting = setting
        self.features = setting.features
        self.low = np.asarray(setting.low, dtype=np.float32)
        self.high = np.asarray(setting.high, dtype=np.float32)
        self.fill = np.asarray(setting.fill, dtype=np.float32)
        self.refuse = setting.mode == "refuse"
        self.count_values = count_values
        self.count_refused = count_refused

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """The rows to run: `rows` itself when clean, else a sanitized copy (the caller
        logs `rows`, as received). Refuse mode: a RequestError 422 naming the first bad
        row and feature."""
        missing = np.isnan(rows)  # JSON has no NaN: only a null is NaN here
        # NaN compares False: a missing value is never also counted as out of range.
        outside = (rows < self.low) | (rows > self.high)
        bad = missing | outside
        if not bad.any():
            return rows
        if self.refuse:
            raise self._refusal(rows, missing, outside, bad)
        sanitized = np.clip(rows, self.low, self.high)
        np.copyto(sanitized, np.broadcast_to(self.fill, rows.shape), where=missing)
        for action, flags in (("clipped", outside), ("filled", missing)):
            per_feature = flags.sum(axis=0)
            for index in np.flatnonzero(per_feature):
                self.count_values(self.features[index], action, int(per_feature[index]))
        return sanitized

    def _refusal(
        self, rows: np.ndarray, missing: np.ndarray, outside: np.ndarray, bad: np.ndarray
    ) -> RequestError:
        missing_rows = int(missing.any(axis=1).sum())
        outside_rows = int((outside.any(axis=1) & ~missing.any(axis=1)).sum())
        if missing_rows:
            self.count_refused("missing", missing_rows)
        if outside_rows:
            self.count_refused("out_of_range", outside_rows)
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        index = int(np.flatnonzero(bad[row])[0])
        feature = self.features[index]
        if missing[row, index]:
            problem = "is missing (null)"
        else:
            problem = (
                f"is {float(rows[row, index]):g}, outside the reference's range "
                f"[{float(self.low[index]):g}, {float(self.high[index]):g}]"
            )
        return RequestError(
            422,
            f"row {row} feature {feature!r} {problem}: sanitization refuses such rows "
            f"({int(bad.any(axis=1).sum())} of {len(rows)} rows in this request)",
        )
