"""A version stands alone: when the spec's architecture changes under the same reference,
every version still gates, compresses, serves and rolls back from its own artifacts.

Real Prefect harness, real MLflow store, the gateway as a real `chassis serve` process.
"""

import importlib
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from chassis.compression.policy import CompressionPolicy
from chassis.errors import GatesFailed
from chassis.registry.tags import TAG_PROGRAM_SHA256
from flows.compression import compress
from flows.promotion import gates, promote, rollback
from flows.release import release
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.registries import home_registry

MODEL = "test-evolving"
MODULE = "evolving_spec"
SPEC = f"{MODULE}:spec"

SPEC_SOURCE = """
from torch import nn

from chassis.modelspec import ModelSpec
from tests.fixtures.specs import FAST, blob_dataset

{architecture}

spec = ModelSpec(name="{model}", load_data=blob_dataset, build_model=build, training=FAST)
"""
PLAIN_MLP = """
from chassis.models import MLP

def build(n_features, n_classes):
    return MLP(n_features, n_classes, hidden=(16,))
"""
RESIDUAL_WITH_BATCH_NORM = """
class Residual(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.stem = nn.Linear(n_features, 24)
        self.norm = nn.BatchNorm1d(24)
        self.block = nn.Linear(24, 24)
        self.head = nn.Linear(24, n_classes)

    def forward(self, x):
        h = nn.functional.relu(self.norm(self.stem(x)))
        return self.head(h + nn.functional.relu(self.block(h)))

def build(n_features, n_classes):
    return Residual(n_features, n_classes)
"""


def write_spec(folder: Path, architecture: str) -> None:
    """The user edits their spec in place: same file, same reference, another model."""
    source = SPEC_SOURCE.format(architecture=textwrap.dedent(architecture), model=MODEL)
    (folder / f"{MODULE}.py").write_text(source)
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


def served_version(gateway: GatewayProcess) -> int:
    response = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict",
        json={"instances": [[0.5, -1.0, 2.0, 0.1]]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


def wait_until_served(gateway: GatewayProcess, version: int) -> None:
    deadline = time.monotonic() + 30
    while served_version(gateway) != version:
        assert time.monotonic() < deadline, f"the gateway did not move to v{version}"
        time.sleep(0.3)  # poll: the gateway follows the registry's champion


def test_versions_gate_compress_serve_and_roll_back_after_the_spec_changed(
    chassis_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_spec(tmp_path, PLAIN_MLP)
    first = release(spec=SPEC, compression="off")
    assert first.alias is not None and first.alias.aliases_after == {"champion": 1}

    # Another architecture under the same reference: build_model(4, 3) no longer fits v1.
    write_spec(tmp_path, RESIDUAL_WITH_BATCH_NORM)
    second = release(spec=SPEC, seed=1, rollout_strategy="none", compression="off")
    assert second.gates is not None and second.gates.passed  # measured against champion v1
    assert second.alias is not None and second.alias.aliases_after == {
        "champion": 1,
        "challenger": 2,
    }
    registry = home_registry()
    assert TAG_PROGRAM_SHA256 in registry.version_tags(MODEL, 1)
    assert TAG_PROGRAM_SHA256 in registry.version_tags(MODEL, 2)

    # v1 is judged again, with v2 as champion, from its own program and test rows.
    promote(model_name=MODEL, version=2, reason="new architecture")
    regated = gates(model_name=MODEL, version=1)
    assert regated.passed
    assert regated.report["champion_version"] == 2

    # v1's module comes from its stored program: pruning narrows its hidden layer.
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
    assert pruned.selected == "pruned" and pruned.registered and pruned.version == 3

    gateway = GatewayProcess(chassis_home, models=(MODEL,))
    gateway.start()
    try:
        assert served_version(gateway) == 2
        rollback(model_name=MODEL, reason="back to the MLP")
        wait_until_served(gateway, 1)
    finally:
        gateway.stop()


RENAMED_COLUMNS = """
from chassis.models import MLP
from tests.fixtures.specs import blob_dataset as original_blobs, blobs


def blob_dataset():
    frame = blobs().rename(columns={f"f{i}": f"sensor_{i}" for i in range(4)})
    return original_blobs(frame)

def build(n_features, n_classes):
    return MLP(n_features, n_classes, hidden=(16,))
"""


def test_a_version_the_gates_cannot_measure_gets_a_failed_report_saying_why(
    chassis_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_spec(tmp_path, PLAIN_MLP)
    release(spec=SPEC, compression="off")
    # The data's columns were renamed: champion v1 reads columns v2's test rows lack.
    write_spec(tmp_path, RENAMED_COLUMNS)
    with pytest.raises(GatesFailed, match=r"measurable: observed .*reads column\(s\) 'f0'"):
        release(spec=SPEC, seed=1, compression="off")
    tags = home_registry().version_tags(MODEL, 2)
    assert tags["chassis.gates"] == "failed" and tags["chassis.gate_report"].endswith("v2.json")
    assert home_registry().current_aliases(MODEL) == {"champion": 1}
