"""Two threads wanting the same version at once (the registry poll and an admin sync) load
it once: the second waits and takes the copy the first verified. CI saw them download into
one directory together, and one read a file the other was still writing."""

import threading
from pathlib import Path

from mlflow import MlflowClient

from chassis.registry import Registry
from chassis.registry.tags import TAG_ONNX_SHA256
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.state import RolloutState
from tests.unit.test_gateway_unload import served


def test_two_threads_loading_one_version_download_it_once(tmp_path: Path, monkeypatch):
    # The registry is never reached: its answers are set below.
    registry = Registry(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/unused.db"), "k")
    gateway = Gateway(registry, GatewayConfig(tmp_path / "state", tmp_path / "cache"), ["m"])
    model = ServedModel("m", RolloutState(model="m", stable_version=1), {})
    verified_copies: dict[int, ServedVersion] = {}
    downloads: list[int] = []
    second_download = threading.Event()

    # Registry is a frozen dataclass: its method is replaced on the class, for this test.
    monkeypatch.setattr(
        Registry, "require_passed_gates", lambda self, name, version: {TAG_ONNX_SHA256: "0" * 64}
    )
    monkeypatch.setattr(
        gateway, "_recall", lambda name, version, tags: verified_copies.get(version)
    )

    def load_version(name: str, version: int) -> ServedVersion:
        downloads.append(version)
        if len(downloads) > 1:
            second_download.set()
        # A download in progress: long enough for the other thread to start one too, if
        # nothing stops it (it then sets the event and both end at once).
        second_download.wait(timeout=1.0)
        verified_copies[version] = served(version)
        return verified_copies[version]

    monkeypatch.setattr(gateway, "load_version", load_version)
    results: list[ServedVersion] = []
    threads = [
        threading.Thread(target=lambda: results.append(gateway._verified(model, 2)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert downloads == [2]
    assert len(results) == 2 and results[0] is results[1]
