"""Replays rows against the gateway: bounded in request count and in time, always.

Used by `chassis traffic` and by the release flow to give a canary real requests on the
embedded default. Loopback only by design: the URL comes from Chassis's own settings.
"""

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import numpy as np

from chassis import progress
from chassis.errors import GatewayError


@dataclass
class TrafficReport:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


def require_served(url: str, model: str, timeout: float = 10.0) -> None:
    """Raise GatewayError unless a gateway at `url` answers and serves `model`: sent to
    nobody, every request would only be counted as "no answer"."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=timeout)
    except httpx.HTTPError as error:
        raise GatewayError(
            f"no gateway answers at {url} ({type(error).__name__}: {error}); "
            "start one with `chassis serve`, or give its address with --gateway-url"
        ) from None
    served = _served_models(answer)
    if served is None:
        raise GatewayError(
            f"{url} is not a Chassis gateway: GET /v1/models answered "
            f"{answer.status_code} without a list of models"
        )
    if model not in served:
        raise GatewayError(
            f"the gateway at {url} does not serve {model} "
            f"(it serves: {', '.join(served) or 'nothing'})"
        )


def _served_models(answer: httpx.Response) -> list[str] | None:
    if answer.status_code != 200:
        return None
    try:
        body: object = answer.json()
    except ValueError:
        return None
    models: object = cast(dict[str, object], body).get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        return None
    return [str(m) for m in cast(list[object], models)]


def replay(
    url: str,
    model: str,
    rows: "Sequence[Any] | np.ndarray",
    *,
    max_requests: int,
    max_seconds: float,
    concurrency: int = 4,
    stop: threading.Event | None = None,
    sticky_keys: int = 0,
    counted_to_total: bool = True,
) -> TrafficReport:
    """Send one row per request (a list of numbers, or a text model's string), cycling
    through `rows`, until a bound or `stop` is hit. Progress shows requests sent of
    `max_requests` and their rate (`counted_to_total=False`: a count and rate only, for a
    replay that a `stop` ends rather than its request bound)."""
    report = TrafficReport()
    lock = threading.Lock()
    counter = itertools.count()
    deadline = time.monotonic() + max_seconds
    stop = stop or threading.Event()
    endpoint = f"{url.rstrip('/')}/v1/models/{model}/predict"
    if isinstance(rows, np.ndarray):  # numeric rows as an array: JSON needs plain lists
        rows = rows.astype(np.float64).tolist()
    payloads = [{"instances": [row]} for row in rows]

    def worker() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                index = next(counter)
                if index >= max_requests:
                    return
                headers = {"x-request-key": f"user-{index % sticky_keys}"} if sticky_keys else {}
                try:
                    response = client.post(
                        endpoint, json=payloads[index % len(payloads)], headers=headers
                    )
                    status = response.status_code
                    version = int(response.headers.get("x-model-version", 0))
                except httpx.HTTPError:
                    status, version = 0, 0  # connection failure: counted, never raised
                with lock:
                    report.sent += 1
                    report.statuses[status] += 1
                    if version:
                        report.versions[version] += 1
                    failed = report.failed if status != 200 else None
                bar.advance(1, detail=None if failed is None else f"{failed} not answered 200")

    started = time.monotonic()
    total = max_requests if counted_to_total else None
    with progress.track(f"requests to {model}", total, "requests", rate=True) as bar:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max_seconds + 15)
    report.seconds = time.monotonic() - started
    return report


DRIFT_SCENARIOS = ("shift", "scale", "noise", "missing")


def apply_drift(rows: np.ndarray, scenario: str, seed: int = 0) -> np.ndarray:
    """Rows as a broken or changing upstream would send them, for demos and tests.

    shift: half of the features move by one standard deviation; scale: every feature is
    1.5x larger (a unit change); noise: Gaussian noise of half a standard deviation;
    missing: a third of the values arrive as 0 (an imputation bug: NaN itself is refused by
    the gateway and never reaches the model). `missing` once zeroed half of the features
    only: on digits that half holds the image's always-blank border, so at most 25 of 64
    columns could move and the check rightly said no dataset drift (50% of columns needed).
    """
    if scenario not in DRIFT_SCENARIOS:
        raise ValueError(
            f"unknown drift scenario {scenario!r}; one of {', '.join(DRIFT_SCENARIOS)}"
        )
    rng = np.random.default_rng(seed)
    drifted = rows.astype(np.float64).copy()
    std = drifted.std(axis=0) + 1e-9
    columns = int(drifted.shape[1])
    half = np.arange(columns) < max(1, columns // 2)

    if scenario == "shift":
        drifted[:, half] += std[half]
    elif scenario == "scale":
        drifted *= 1.5
    elif scenario == "noise":
        drifted += rng.normal(size=drifted.shape) * std * 0.5
    else:
        drifted[rng.random(drifted.shape) < 1 / 3] = 0.0
    return drifted.astype(np.float32)


TEXT_DRIFT_SCENARIOS = ("typos", "topic")
# A letter in seven replaced: enough for the text drift check to see on a few hundred rows
# (at one in ten its p-value on 150 rows hovers near 0.01), still legible to a person.
TYPO_RATE = 0.15
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def apply_text_drift(
    texts: Sequence[str], scenario: str, seed: int = 0, replacements: Sequence[str] = ()
) -> list[str]:
    """Texts as a changing world would send them, for demos and tests.

    typos: letters replaced by random ones at TYPO_RATE (sloppy input, a broken OCR or
    encoding step); topic: the texts replaced by `replacements` (texts of another topic,
    one for each text, cycling), as when users start asking about something else.
    """
    if scenario not in TEXT_DRIFT_SCENARIOS:
        raise ValueError(
            f"unknown text drift scenario {scenario!r}; one of {', '.join(TEXT_DRIFT_SCENARIOS)}"
        )
    if scenario == "topic":
        others = [t for t in replacements if t.strip()]
        if not others:
            raise ValueError("the topic scenario needs texts of another topic to send")
        return [others[i % len(others)] for i in range(len(texts))]
    rng = random.Random(seed)
    return [
        "".join(
            rng.choice(_LETTERS) if c.isalpha() and rng.random() < TYPO_RATE else c for c in text
        )
        for text in texts
    ]
