"""Another gateway (the cloud) that answers what this one does not: a whole predict request
forwarded as it came, its answer passed back as the upstream gave it.

One client for every forward (`forward_predict`): the edge gateway forwards a model it does
not hold (chassis/serving/edge.py), and a cascade can send its escalated rows the same way.
The upstream is checked once at start (`probe`): an address that does not answer then is a
deployment mistake, better refused with its name than found by the first forwarded request.
"""

from typing import NamedTuple
from urllib.parse import quote, urlsplit

import httpx

from chassis.errors import SettingsError, UpstreamUnavailable

SERVED_BY = b"x-chassis-served-by"  # on an answer the upstream gave: "upstream"
UPSTREAM = b"upstream"
VERSION_HEADER = "x-model-version"
# Passed on with a forwarded request: the key that keeps a client on one canary side there.
REQUEST_KEY = "x-request-key"
PROBE_TIMEOUT_SECONDS = 5.0


class Forwarded(NamedTuple):
    """The upstream's answer, as it gave it."""

    status: int
    body: bytes
    content_type: str
    version: str | None  # its x-model-version header (None: it named no version)


def parse_upstream(url: str, source: str = "--upstream") -> str:
    """`url` as the base every forward is made under (no trailing slash); SettingsError
    naming `source` when it is not an http(s) URL of a host (a path prefix is kept, for a
    gateway behind a proxy; a query or fragment would be dropped silently, so is refused)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError on a port out of range or not a number)
    except ValueError as error:
        raise SettingsError(f"{source} {url!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{source} {url!r} is not a gateway URL: expected http(s)://host:port, like "
            "http://cloud-gateway:8000"
        )
    if parts.query or parts.fragment:
        raise SettingsError(f"{source} {url!r}: a gateway URL has no query or fragment")
    return url.strip().rstrip("/")


def probe(upstream: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Check that the upstream answers GET /healthz with 200; SettingsError naming it
    otherwise (at start: nothing is served half-configured)."""
    try:
        response = httpx.get(f"{upstream}/healthz", timeout=timeout)
    except httpx.HTTPError as error:
        raise SettingsError(
            f"upstream {upstream} does not answer (GET /healthz: {type(error).__name__}: "
            f"{str(error) or 'no answer'}); start it first, or fix --upstream / "
            "CHASSIS_GATEWAY_UPSTREAM"
        ) from None
    if response.status_code != 200:
        raise SettingsError(
            f"upstream {upstream} is not a healthy gateway (GET /healthz answered "
            f"{response.status_code}); fix --upstream / CHASSIS_GATEWAY_UPSTREAM"
        )


async def healthy(client: httpx.AsyncClient, upstream: str, timeout: float) -> bool:
    """Whether the upstream answers GET /healthz with 200 within `timeout`."""
    try:
        response = await client.get(f"{upstream}/healthz", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def predict_url(upstream: str, name: str, preview: bool = False) -> str:
    """Where the upstream answers `name`'s predictions (the name quoted: a client's text)."""
    route = "preview/predict" if preview else "predict"
    return f"{upstream}/v1/models/{quote(name, safe='')}/{route}"


def feedback_url(upstream: str, name: str) -> str:
    """Where the upstream takes feedback on `name`'s answers it gave."""
    return f"{upstream}/v1/models/{quote(name, safe='')}/feedback"


async def forward_predict(
    client: httpx.AsyncClient,
    upstream: str,
    name: str,
    body: bytes,
    content_type: str,
    timeout: float,
    *,
    request_key: str | None = None,
    preview: bool = False,
) -> Forwarded:
    """POST a predict body to the upstream as it came; its answer whatever its status (a
    404 or 422 there is the client's answer too). UpstreamUnavailable naming the upstream
    when it does not answer (503) or not within `timeout` seconds (504)."""
    url = predict_url(upstream, name, preview)
    return await forward(client, upstream, url, name, body, content_type, timeout, request_key)


async def forward(
    client: httpx.AsyncClient,
    upstream: str,
    url: str,
    name: str,
    body: bytes,
    content_type: str,
    timeout: float,
    request_key: str | None = None,
) -> Forwarded:
    """POST `body` to `url` (a route of `upstream` about model `name`) as it came; the
    answer whatever its status, or UpstreamUnavailable (see `forward_predict`)."""
    headers = {"content-type": content_type or "application/json"}
    if request_key is not None:
        headers[REQUEST_KEY] = request_key
    try:
        response = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise UpstreamUnavailable(
            504, f"upstream {upstream} did not answer {name!r} within {timeout:g} s", "timeout"
        ) from None
    except httpx.HTTPError as error:
        raise UpstreamUnavailable(
            503,
            f"upstream {upstream} is unreachable ({type(error).__name__}: {error})",
            "unreachable",
        ) from None
    return Forwarded(
        response.status_code,
        response.content,
        response.headers.get("content-type", "application/json"),
        response.headers.get(VERSION_HEADER),
    )
