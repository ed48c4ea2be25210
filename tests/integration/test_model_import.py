"""Models trained elsewhere go through the loop like trained ones: a torch module (kept
with its own preprocessing) and an ONNX file (kept byte for byte) are imported, gated,
compressed where possible, served and rolled back.

Real Prefect harness, real MLflow store, the gateway as a real `chassis serve` process.
"""

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from chassis.compression.policy import CompressionPolicy
from chassis.errors import ModelImportError
from chassis.registry.tags import (
    TAG_PROGRAM_MISSING,
    TAG_PROGRAM_SHA256,
    TAG_WEIGHTS_SHA256,
)
from chassis.runtime import create_session, run_batches
from flows.compression import compress
from flows.promotion import gates, promote, rollback
from flows.release import release
from flows.training import import_model, train
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.import_specs import ONNX_FILE_ENV, export_elsewhere, trained_elsewhere
from tests.fixtures.registries import home_registry

MODEL = "test-blobs"
TORCH_SPEC = "tests.fixtures.import_specs:torch_module"
ONNX_SPEC = "tests.fixtures.import_specs:onnx_file"


def served(gateway: GatewayProcess) -> tuple[int, list[int]]:
    response = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict",
        json={"instances": [[0.5, -1.0, 2.0, 0.1], [3.0, 1.0, -2.0, 0.0]]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return int(body["version"]), [int(label) for label in body["predictions"]]


def test_torch_module_is_released_with_its_own_preprocessing_and_compressed(
    chassis_home: Path, tmp_path: Path
) -> None:
    outcome = release(spec=TORCH_SPEC, compression="off")
    assert outcome.alias is not None and outcome.alias.aliases_after == {"champion": 1}
    assert outcome.gates is not None and outcome.gates.passed
    registry = home_registry()
    tags = registry.version_tags(MODEL, 1)
    assert TAG_PROGRAM_SHA256 in tags and TAG_WEIGHTS_SHA256 in tags

    # The served graph is the user's module: no standardization was added around it.
    files = registry.fetch_version(MODEL, 1, tmp_path / "v1")
    rows = np.random.default_rng(3).normal(scale=4.0, size=(16, 4)).astype(np.float32)
    expected = trained_elsewhere()(torch.from_numpy(rows)).detach().numpy()
    assert np.abs(run_batches(create_session(files.onnx_path), rows) - expected).max() < 1e-4

    pruned = compress(
        model_name=MODEL,
        version=1,
        policy=CompressionPolicy(
            tolerance=0.5,
            objective="size",  # smaller for certain; a busy machine can blur latency
            candidates=["pruned"],
            prune_fraction=0.5,
            finetune_epochs=1,
            repeats=3,
        ),
    )
    assert pruned.registered and pruned.selected == "pruned"


def test_onnx_file_is_imported_gated_compressed_to_int8_served_and_rolled_back(
    chassis_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = train(spec="tests.fixtures.specs:good")
    gates(model_name=MODEL, version=champion.version)
    promote(model_name=MODEL, version=champion.version, reason="a champion to compare with")
    source = export_elsewhere(trained_elsewhere(), tmp_path / "from-another-tool.onnx")
    monkeypatch.setenv(ONNX_FILE_ENV, str(source))

    imported = import_model(spec=ONNX_SPEC)
    version = imported.version
    registry = home_registry()
    tags = registry.version_tags(MODEL, version)
    assert tags[TAG_PROGRAM_MISSING].startswith("imported as an ONNX file")
    assert TAG_WEIGHTS_SHA256 not in tags
    files = registry.fetch_version(MODEL, version, tmp_path / "imported")
    assert files.onnx_path.read_bytes() == source.read_bytes()

    judged = gates(model_name=MODEL, version=version)
    assert judged.passed and judged.report["champion_version"] == champion.version

    compressed = compress(
        model_name=MODEL,
        version=version,
        policy=CompressionPolicy(
            tolerance=0.5, candidates=["dynamic-int8", "pruned"], repeats=3, objective="size"
        ),
    )
    assert compressed.skipped["pruned"].startswith("needs a torch module: ")
    assert compressed.selected == "dynamic-int8" and compressed.registered

    gateway = GatewayProcess(chassis_home, models=(MODEL,))
    gateway.start()
    try:
        assert served(gateway)[0] == champion.version
        promote(model_name=MODEL, version=version, reason="the imported model")
        deadline = time.monotonic() + 30
        while (answer := served(gateway))[0] != version:
            assert time.monotonic() < deadline, "the gateway did not follow the champion"
            time.sleep(0.3)  # poll: the gateway follows the registry's champion
        assert all(0 <= label < 3 for label in answer[1])
        rollback(model_name=MODEL, reason="back to the trained one")
        deadline = time.monotonic() + 30
        while served(gateway)[0] != champion.version:
            assert time.monotonic() < deadline, "the gateway did not roll back"
            time.sleep(0.3)
    finally:
        gateway.stop()


def test_an_import_that_does_not_fit_registers_nothing(chassis_home: Path) -> None:
    with pytest.raises(ModelImportError, match="gives 2 scores per row"):
        import_model(spec="tests.fixtures.import_specs:two_classes_for_three")
    assert home_registry().client.search_registered_models() == []
