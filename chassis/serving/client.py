"""A typed client of the gateway's admin API, for the rollout flow and the CLI."""

from typing import Any

import httpx

from chassis.errors import GatewayError


class GatewayClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, json=json)
        except httpx.HTTPError as error:
            raise GatewayError(f"gateway at {self.base_url} unreachable: {error}") from error
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise GatewayError(
                f"gateway refused {method} {path} ({response.status_code}): {detail}"
            )
        return dict(response.json())

    def ready(self) -> bool:
        try:
            return self.client.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self, model: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/models/{model}")

    def set_rollout(
        self,
        model: str,
        mode: str,
        candidate: int | None,
        percent: float = 0.0,
        mirror_percent: float = 0.0,
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/admin/models/{model}/rollout",
            {
                "mode": mode,
                "candidate_version": candidate,
                "percent": percent,
                "mirror_percent": mirror_percent,
            },
        )

    def metrics(self) -> str:
        """The gateway's Prometheus exposition (unauthenticated, as Prometheus scrapes it)."""
        try:
            response = self.client.get("/metrics")
        except httpx.HTTPError as error:
            raise GatewayError(f"gateway at {self.base_url} unreachable: {error}") from error
        if response.status_code != 200:
            raise GatewayError(f"gateway at {self.base_url} /metrics: {response.status_code}")
        return response.text

    def predict(self, model: str, rows: list[list[float]], preview: bool = False) -> Any:
        """Predictions for `rows` (the preview route answers with blue-green's idle color)."""
        path = f"/v1/models/{model}/{'preview/' if preview else ''}predict"
        try:
            response = self.client.post(path, json={"instances": rows})
        except httpx.HTTPError as error:
            raise GatewayError(f"gateway at {self.base_url} unreachable: {error}") from error
        if response.status_code != 200:
            raise GatewayError(f"{path} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def sync(self, model: str) -> dict[str, Any]:
        """Apply the registry's rollout record now (replicas also poll it)."""
        return self._call("POST", f"/admin/models/{model}/sync")

    def follow_champion(self, model: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/follow-champion")

    def reset_stats(self, model: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/reset-stats")

    def switch(self, model: str, mirror_percent: float = 0.0) -> dict[str, Any]:
        return self._call(
            "POST", f"/admin/models/{model}/switch", {"mirror_percent": mirror_percent}
        )

    def rollback(self, model: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/rollback")

    def promote(self, model: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/promote")

    def restart(self) -> dict[str, Any]:
        """Drain and exit for the local supervisor to start it again (202; 409 when the
        replica is not supervised)."""
        return self._call("POST", "/admin/restart")

    def close(self) -> None:
        self.client.close()
