"""Gates, promotion and rollback flows end to end: real Prefect API, real MLflow store."""

import json
import re
from pathlib import Path

import mlflow
import mlflow.artifacts
import pytest
from prefect.settings import PREFECT_API_URL

from chassis.errors import GatesFailed, IntegrityError, RegistryError, RetiredChallenger
from chassis.gates import GatePolicy
from chassis.mlflow_links import MlflowLinks
from chassis.settings import ChassisSettings
from flows.promotion import gates, promote, rollback
from flows.release import release
from tests.fixtures.cli import chassis
from tests.fixtures.registries import home_registry, version_signature
from tests.integration.test_training_flow import latest_artifact

SPEC = "tests.fixtures.specs:good"
MODEL = "test-blobs"


def test_release_gates_promote_rollback_round_trip(chassis_home):
    first = release(spec=SPEC, compression="off")
    assert first.alias is not None and first.gates is not None
    assert first.alias.aliases_after == {"champion": 1}
    assert first.gates.passed
    second = release(spec=SPEC, seed=1, rollout_strategy="none", compression="off")
    assert second.alias is not None
    assert second.alias.aliases_after == {"champion": 1, "challenger": 2}

    tags = home_registry().version_tags(MODEL, 2)
    assert tags["chassis.gates"] == "passed"
    report = Path(mlflow.artifacts.download_artifacts(artifact_uri=tags["chassis.gate_report"]))
    assert '"champion_version": 1' in report.read_text()
    assert "Gates for test-blobs v2: PASSED" in latest_artifact("gates-test-blobs").data

    promoted = promote(model_name=MODEL, version=2, reason="canary was clean")
    assert promoted.aliases_after == {"champion": 2, "previous": 1}
    assert promote(model_name=MODEL, version=2, expected_champion=1).noop

    described = home_registry().client.get_registered_model(MODEL).description or ""
    assert "| 3 | " in described and "| promote | v2 | champion: v1 → v2; previous: none → v1" in (
        described
    )
    rolled = rollback(model_name=MODEL, reason="latency regression")
    assert rolled.aliases_after == {"champion": 1}
    # The MLflow UI shows the trail as a table in the model's description, newest first.
    described = home_registry().client.get_registered_model(MODEL).description or ""
    assert "### Alias history" in described
    rows = [line for line in described.splitlines() if line[:3].strip("| ").isdigit()]
    assert [row.split(" | ")[3] for row in rows] == [
        "rollback",
        "promote",
        "set-challenger",
        "promote",
    ]
    assert rows[0].endswith("| v1 | champion: v2 → v1; previous: v1 → none | latency regression |")
    assert "via flow run" in rows[0]
    # The experiment is one of models, not GenAI, and versions carry their ONNX signature.
    experiment = home_registry().client.get_experiment_by_name(MODEL)
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    signature = version_signature(MODEL, 1)
    assert [(i["name"], i["type"], i["tensor-spec"]) for i in signature["inputs"]] == [
        ("features", "tensor", {"dtype": "float32", "shape": [-1, 4]})
    ]
    assert [(o["name"], o["tensor-spec"]) for o in signature["outputs"]] == [
        ("logits", {"dtype": "float32", "shape": [-1, 3]})
    ]
    actions = [(r.action, r.reason) for r in home_registry().history(MODEL)]
    assert actions == [
        ("promote", "first version to pass its gates: no champion to compare with"),
        ("set-challenger", "passed its gates against champion v1; awaiting rollout"),
        ("promote", "canary was clean"),
        ("rollback", "latency regression"),
    ]
    audit = home_registry().history(MODEL)[2]
    assert audit.evidence["gate_report"] == tags["chassis.gate_report"]
    # The promote flow's link names the harness's Prefect server (a free port), not 4200.
    harness_ui = PREFECT_API_URL.value().removesuffix("/api")
    assert audit.evidence["flow_run"].startswith(f"{harness_ui}/runs/flow-run/")
    assert "via flow run" in audit.actor
    rolled_back = latest_artifact("alias-change-test-blobs").data
    assert "audit #4" in rolled_back
    # The rollback moved v2 and v1: the artifact links both versions' MLflow pages.
    links = MlflowLinks.of(ChassisSettings())
    assert f"[v1]({links.model_version(MODEL, 1)})" in rolled_back
    assert f"[v2]({links.model_version(MODEL, 2)})" in rolled_back
    with pytest.raises(RegistryError, match="no `previous` version"):
        rollback(model_name=MODEL)


def test_failed_gates_block_promotion_and_tampering_is_refused(chassis_home):
    release(spec=SPEC, compression="off")
    release(spec=SPEC, seed=2, rollout_strategy="none", compression="off")
    strict = GatePolicy(size_mb_budget=1e-6, latency_p99_ms_budget=1e-6)
    with pytest.raises(GatesFailed, match="failed 2 gate"):
        gates(model_name=MODEL, version=2, thresholds=strict)
    assert home_registry().version_tags(MODEL, 2)["chassis.gates"] == "failed"
    with pytest.raises(RegistryError, match="failed its gates"):
        promote(model_name=MODEL, version=2)
    with pytest.raises(RegistryError, match="has no version 7"):
        promote(model_name=MODEL, version=7)

    # Re-gate v2 with default thresholds, then corrupt its stored ONNX file.
    gates(model_name=MODEL, version=2)
    stored = Path(home_registry().version_artifact_uri(MODEL, 2)[len("file://") :]) / "model.onnx"
    stored.write_bytes(stored.read_bytes() + b"\x00")
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        promote(model_name=MODEL, version=2)
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}


def test_a_version_hundreds_of_times_slower_than_the_champion_fails_its_gates(chassis_home):
    release(spec=SPEC, compression="off")  # v1: the champion, ~0.01 ms at batch 1
    # Quality thresholds out of the way: this version is judged on latency alone. The
    # absolute budget is a lax one (1 s), as a user might set: its ~10 ms of compute can
    # exceed the default 50 ms at p99 on a busy machine, and the point is that the
    # comparison with the champion catches what an absolute budget lets through.
    lenient = {
        "min_absolute_change_vs_champion": -0.99,
        "per_class_recall_floor": None,
        "latency_p99_ms_budget": 1000.0,
    }
    with pytest.raises(GatesFailed, match=r"failed 1 gate\(s\): model CPU p50 vs champion v1"):
        release(
            spec="tests.fixtures.specs:hundreds_slower",
            compression="off",
            rollout_strategy="none",
            thresholds=GatePolicy(**lenient),
        )
    tags = home_registry().version_tags(MODEL, 2)
    assert tags["chassis.gates"] == "failed"
    report = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(artifact_uri=tags["chassis.gate_report"])
        ).read_text()
    )
    gates_by_name = {g["gate"]: g for g in report["gates"]}
    # The absolute budget alone would have let it through ...
    assert gates_by_name["latency p99 @ batch 1"]["passed"]
    # ... the comparison with the champion does not: it is far slower than 1.5x + 1 ms.
    against_champion = gates_by_name["model CPU p50 vs champion v1"]
    assert not against_champion["passed"]
    ratio = re.search(r"\(([\d.]+)x\)", against_champion["observed"])
    assert ratio, against_champion
    times = float(ratio.group(1))
    assert times > 100, against_champion  # the premise: hundreds of times slower
    assert home_registry().current_aliases(MODEL) == {"champion": 1}  # nothing moved

    # The threshold is a flow parameter: switched off, the same version passes its gates.
    switched_off = GatePolicy(**lenient, max_latency_ratio_vs_champion=None)
    assert gates(model_name=MODEL, version=2, thresholds=switched_off).passed


def test_a_retired_challenger_is_refused_unless_the_override_is_given(chassis_home, capsys):
    from chassis_cli.main import main

    release(spec=SPEC, compression="off")  # v1 champion
    release(spec=SPEC, seed=1, rollout_strategy="none", compression="off")  # v2 challenger
    home_registry().retire_challenger(
        MODEL, 2, actor="rollout run", reason="canary failed at shadow: agreement 0.61 < 0.9"
    )
    records = len(home_registry().history(MODEL))

    # The flow (and its set-challenger task) refuses, naming the version and why ...
    with pytest.raises(RetiredChallenger, match=r"test-blobs v2 was retired as challenger"):
        promote(model_name=MODEL, version=2, to="challenger")
    # ... and so does the command, with one line and exit 1.
    capsys.readouterr()
    assert main(["promote", "--model", MODEL, "--version", "2", "--to", "challenger"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: test-blobs v2 was retired as challenger (audit #3, ")
    assert "agreement 0.61 < 0.9" in error and "--allow-retired" in error
    assert home_registry().current_aliases(MODEL) == {"champion": 1}  # nothing moved
    assert len(home_registry().history(MODEL)) == records

    # As a user's process: a flow that fails (here in its task) prints no traceback, only
    # the error line; Prefect's run keeps its failure logs. --json: one error document.
    result = chassis(
        *("promote", "--model", MODEL, "--version", "2", "--to", "challenger", "--json"),
        env={"PREFECT_API_URL": PREFECT_API_URL.value()},  # the harness: no second server
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Failed" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: {json.loads(result.stdout)['error']}"], result.stderr
    assert json.loads(result.stdout)["kind"] == "retired_challenger"

    argv = ["promote", "--model", MODEL, "--version", "2", "--to", "challenger"]
    assert main([*argv, "--allow-retired", "--reason", "gateway fixed; try again"]) == 0
    assert home_registry().current_aliases(MODEL) == {"champion": 1, "challenger": 2}
    record = home_registry().history(MODEL)[-1]
    assert record.reason == "gateway fixed; try again [override allow_retired: retired at audit #3]"
    assert record.evidence["override"].startswith("allow_retired: v2 was retired as challenger")
    assert "via flow run" in record.actor
