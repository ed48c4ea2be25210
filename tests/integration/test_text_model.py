"""A text model goes through the loop like any other: imported with its own tokenizer, which
is stored with every version (compressed ones too) and used wherever the version is judged,
so changing the tokenizer file afterwards changes nothing about the versions registered.

Real Prefect harness and MLflow store; a small word-level model (tests/fixtures/text_specs).
"""

from pathlib import Path

import httpx
import pytest

from chassis.compression.policy import CompressionPolicy
from chassis.errors import DatasetError
from chassis.registry.tags import (
    TAG_PROGRAM_SHA256,
    TAG_TEXT_INPUT,
    TAG_TOKENIZER_SHA256,
)
from chassis.runtime import create_session, run_batches
from chassis.settings import ChassisSettings
from chassis.text_input import TEXT_INPUT_NAME
from chassis.traffic import apply_text_drift, replay
from flows.compression import compress
from flows.monitoring import drift_check
from flows.promotion import gates
from flows.release import release
from flows.rollout import rollout
from flows.training import import_model
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.prediction_log import logged_rows, wait_until_logged
from tests.fixtures.registries import home_registry, version_signature
from tests.fixtures.text_specs import (
    MAX_LENGTH,
    TOKENIZER_ENV,
    VOCABULARY,
    texts,
    write_tokenizer,
)

MODEL = "test-texts"
SPEC = "tests.fixtures.text_specs:spec"


@pytest.fixture
def tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_tokenizer(tmp_path / "tokenizer.json")
    monkeypatch.setenv(TOKENIZER_ENV, str(path))
    return path


def test_text_model_is_imported_gated_and_compressed_with_its_own_tokenizer(
    chassis_home: Path, tmp_path: Path, tokenizer: Path
) -> None:
    imported = import_model(spec=SPEC)
    assert imported.metrics["test_accuracy"] > 0.9
    registry = home_registry()
    tags = registry.version_tags(MODEL, imported.version)
    assert tags[TAG_TEXT_INPUT] == '{"max_length": 12, "truncate": false}'
    assert TAG_TOKENIZER_SHA256 in tags and TAG_PROGRAM_SHA256 in tags

    files = registry.fetch_version(MODEL, imported.version, tmp_path / "v1")
    assert files.tokenizer_path is not None
    assert files.tokenizer_path.read_bytes() == tokenizer.read_bytes()
    encoder = files.text_encoder()
    assert encoder is not None and encoder.max_length == MAX_LENGTH
    session = create_session(files.onnx_path)
    assert session.get_inputs()[0].name == TEXT_INPUT_NAME
    scores = run_batches(session, encoder.encode(["the old owl near a fox", "my red tram"]))
    assert scores.argmax(axis=1).tolist() == [0, 1]

    first = gates(model_name=MODEL, version=imported.version)
    assert first.passed

    # The spec's tokenizer file changes (a new vocabulary, other ids): registered versions
    # keep reading text through the one stored with them.
    write_tokenizer(tokenizer, tuple(reversed(VOCABULARY)))
    compressed = compress(
        model_name=MODEL,
        version=imported.version,
        policy=CompressionPolicy(
            tolerance=0.5, candidates=["dynamic-int8", "static-int8"], repeats=3, objective="size"
        ),
    )
    assert compressed.selected == "dynamic-int8" and compressed.registered
    assert "takes token ids" in compressed.skipped["static-int8"]
    assert compressed.version is not None
    int8_tags = registry.version_tags(MODEL, compressed.version)
    assert int8_tags[TAG_TOKENIZER_SHA256] == tags[TAG_TOKENIZER_SHA256]
    assert int8_tags[TAG_TEXT_INPUT] == tags[TAG_TEXT_INPUT]
    # In MLflow both versions take int64 token ids, one row of MAX_LENGTH per text.
    signature = version_signature(MODEL, compressed.version)
    assert signature == version_signature(MODEL, imported.version)
    assert [(i["name"], i["tensor-spec"]) for i in signature["inputs"]] == [
        (TEXT_INPUT_NAME, {"dtype": "int64", "shape": [-1, MAX_LENGTH]})
    ]

    # Read through the new vocabulary, the texts would be other ids and the int8 version's
    # accuracy would fall far below its baseline's: the gate against the baseline holds.
    judged = gates(model_name=MODEL, version=compressed.version)
    assert judged.passed, judged.report
    assert judged.report["baseline_version"] == imported.version
    results = {r["gate"]: r for r in judged.report["gates"]}  # pyright: ignore[reportGeneralTypeIssues]
    assert results[f"accuracy vs baseline v{imported.version} relative change"]["passed"]


def test_a_text_too_long_for_the_model_registers_nothing(
    chassis_home: Path, tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.fixtures.text_specs.MAX_LENGTH", 4)
    with pytest.raises(DatasetError, match=r"text column 'text', row \d+: has \d+ tokens"):
        import_model(spec=SPEC)
    assert home_registry().client.search_registered_models() == []


def test_a_text_model_is_released_served_and_canaried_over_http(
    chassis_home: Path, tokenizer: Path
) -> None:
    # The bag of words is tiny: int8 wins only on size (its embedding table stays float).
    by_size = CompressionPolicy(tolerance=0.5, candidates=["dynamic-int8"], objective="size")
    outcome = release(spec=SPEC, rollout_strategy="none", compression_policy=by_size)
    assert outcome.compression is not None and outcome.candidate_version == 2
    assert outcome.gates is not None and outcome.gates.passed
    registry = home_registry()
    assert registry.current_aliases(MODEL) == {"champion": 1, "challenger": 2}

    gateway = GatewayProcess(chassis_home, models=(MODEL,))
    gateway.start()
    try:
        endpoint = f"{gateway.url}/v1/models/{MODEL}/predict"
        answered = httpx.post(
            endpoint, json={"instances": ["the old owl near a fox", "my red tram"]}, timeout=10
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["predictions"] == [0, 1]
        too_long = httpx.post(endpoint, json={"instances": ["the cat " * 10]}, timeout=10)
        assert too_long.status_code == 422
        assert "has 20 tokens; the model reads at most 12" in too_long.text
        numbers = httpx.post(endpoint, json={"instances": [[1.0, 2.0]]}, timeout=10)
        assert numbers.status_code == 422
    finally:
        gateway.stop()

    # The int8 challenger canaried through a gateway started for the run, the stored test
    # texts replayed: mirrored labels agree, as for any classifier.
    staged = rollout(model_name=MODEL, version=2)
    assert staged.promoted, staged.steps
    agreement = [row for row in staged.steps if row["check"] == "agreement with stable"]
    assert agreement and all(row["result"] == "ok" for row in agreement)
    assert registry.current_aliases(MODEL)["champion"] == 2


def send_texts(gateway: GatewayProcess, texts: list[str]) -> None:
    settings = ChassisSettings(home=gateway.home)
    before = logged_rows(settings, MODEL)
    report = replay(gateway.url, MODEL, texts, max_requests=len(texts), max_seconds=60)
    assert report.failed == 0 and report.sent == len(texts)
    wait_until_logged(settings, MODEL, before + len(texts))  # the gateway flushes every 0.5 s


def test_drift_on_served_texts_is_judged_by_their_content(
    chassis_home: Path, tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_FLUSH_SECONDS", "0.5")
    release(spec=SPEC, compression="off")
    gateway = GatewayProcess(chassis_home, models=(MODEL,))
    gateway.start()
    try:
        # Texts from the training distribution (another seed): nothing fires.
        send_texts(gateway, texts(300, 5)["text"].tolist())
        calm = drift_check(model_name=MODEL, window_minutes=10)
        assert calm.verdict == "no-drift" and not calm.event_emitted, calm
        assert calm.served_rows == 300

        # The same kind of texts typed sloppily: the served text itself has changed.
        send_texts(gateway, apply_text_drift(texts(300, 6)["text"].tolist(), "typos"))
        drifted = drift_check(model_name=MODEL, window_minutes=10)
        assert drifted.verdict == "drift" and drifted.event_emitted
        assert drifted.drifted_columns == ["text"]
    finally:
        gateway.stop()
