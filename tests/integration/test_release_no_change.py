"""A release whose model equals the champion's bytes is "no change": real Prefect API, real
MLflow registry on SQLite."""

import json

from chassis.registry import tags
from chassis_cli.main import main
from flows.release import release
from tests.fixtures.registries import home_registry, home_tracking
from tests.integration.test_training_flow import latest_artifact
from tests.unit.test_traffic_preflight import closed_port

SPEC = "tests.fixtures.specs:good"
KIND = "mlflow.experimentKind"
MODEL = "test-blobs"


def test_a_release_equal_to_the_champion_registers_nothing_and_moves_no_alias(chassis_home, capsys):
    # The experiment exists already, made by an older Chassis without MLflow 3's kind tag
    # (the MLflow UI then opens it as a GenAI experiment, on traces).
    tracking = home_tracking()
    client = tracking.client
    older = client.create_experiment(MODEL, artifact_location=f"{tracking.artifact_root}/{MODEL}")
    chosen = client.create_experiment("someone-elses", tags={KIND: "genai_development"})
    first = release(spec=SPEC, compression="off")
    assert client.get_experiment(older).tags[KIND] == "custom_model_development"
    # A kind someone chose is left alone.
    assert tracking.ensure_experiment("someone-elses") == chosen
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"
    assert first.alias is not None
    assert first.no_change is None and first.alias.aliases_after == {"champion": 1}
    history = home_registry().history(MODEL)

    # The same spec and seed train the same bytes again (training is deterministic).
    capsys.readouterr()
    code = main(["release", "--spec", SPEC, "--compression", "off", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err  # ends successfully
    document = json.loads(captured.out)  # stdout is the one document, nothing else
    assert "no change: the new ONNX bytes" in document["no_change"]
    assert "equal test-blobs v1's, the champion; nothing was registered" in document["no_change"]
    assert document["training"]["registered"] is False
    assert document["training"]["version"] == 1  # the version its bytes equal
    assert document["gates"] is None and document["alias"] is None
    assert document["training"]["onnx_sha256"] == first.training.onnx_sha256
    assert document["prefect_flow_run_url"].startswith("http")

    # The registry's side, as a script reads it.
    assert main(["versions", "--model", MODEL, "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, ["champion"])]
    assert main(["history", "--model", MODEL, "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["records"]
    assert (record["action"], record["version"]) == ("promote", 1)
    assert record["moves"] == [{"alias": "champion", "from_version": None, "to_version": 1}]

    assert home_registry().list_versions(MODEL) == [1]  # nothing registered ...
    assert home_registry().current_aliases(MODEL) == {"champion": 1}  # ... no alias moved ...
    assert home_registry().history(MODEL) == history  # ... and no audit record
    summary = latest_artifact("release-summary-test-blobs").data
    assert "no change" in summary and "Nothing was registered, gated or rolled out" in summary

    # Traffic for the champion, to an address where no gateway listens: one error saying so.
    nowhere = f"http://127.0.0.1:{closed_port()}"
    assert main(["traffic", "--model", MODEL, "--gateway-url", nowhere, "--json"]) == 1
    failure = json.loads(capsys.readouterr().out)
    assert failure["kind"] == "gateway_error"
    assert failure["error"].startswith(f"no gateway answers at {nowhere}")
    # The training run is kept, and says which version it equals.
    runs = home_registry().client.search_runs(
        [e.experiment_id for e in home_registry().client.search_experiments()]
    )
    assert sorted(r.data.tags.get("chassis.unchanged_from", "-") for r in runs) == ["-", "1"]

    # The registry itself still registers identical bytes when asked explicitly (an A/A
    # benchmark does so on purpose): train on its own registers what it trained, and says so.
    capsys.readouterr()
    assert main(["train", "--spec", SPEC]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "test-blobs version 2 registered" in printed
    assert "note: the same ONNX bytes as v1 (registered anyway; tagged chassis.identical_to)" in (
        printed
    )
    v2 = home_registry().client.get_model_version(MODEL, "2")
    assert (
        v2.tags["chassis.onnx_sha256"]
        == home_registry().version_tags(MODEL, 1)["chassis.onnx_sha256"]
    )
    assert v2.tags[tags.TAG_IDENTICAL_TO] == "1"
    described = v2.description or ""
    assert described.startswith("Same ONNX bytes as v1 (sha256 ")
    assert "Trained by Chassis from tests.fixtures.specs:good" in described
    # The deliberate A/A copy is registered too, and points at the earliest equal version.
    copy = home_registry().register_copy(MODEL, 2, "A/A check")
    assert home_registry().version_tags(MODEL, copy)[tags.TAG_IDENTICAL_TO] == "1"


def test_a_release_equal_to_the_bytes_the_champion_was_compressed_from_is_no_change(
    chassis_home,
):
    first = release(spec=SPEC, compression="off")  # v1
    # v2: a compressed child of v1 (other bytes), gated and promoted to champion.
    v1 = home_registry().version_tags(MODEL, 1)
    v1_source = home_registry().client.get_model_version(MODEL, "1").source
    assert v1_source is not None
    child = home_registry().register_version(
        name=MODEL,
        model_uri=v1_source,
        model_id=None,
        run_id=first.training.run_id,
        tags={
            **{k: v for k, v in v1.items() if not k.startswith("chassis.gate")},
            tags.TAG_ONNX_SHA256: "0" * 64,  # stands for the int8 file's digest
            tags.TAG_PARENT_VERSION: "1",
        },
        description="",
    )
    home_registry().record_gate_report(MODEL, child.version, True, "test: compressed child of v1")
    home_registry().promote(MODEL, 2, expected_champion=1, actor="test", reason="compressed child")
    aliases = home_registry().current_aliases(MODEL)
    assert aliases == {"champion": 2, "previous": 1}

    outcome = release(spec=SPEC)  # compression on: it would only compress v1's model again
    assert outcome.no_change is not None
    assert "equal test-blobs v1's, the version champion v2 was compressed from" in (
        outcome.no_change
    )
    assert outcome.candidate_version == 1 and outcome.compression is None
    assert outcome.gates is None and outcome.alias is None and outcome.rollout is None
    assert home_registry().list_versions(MODEL) == [1, 2]
    assert home_registry().current_aliases(MODEL) == aliases
