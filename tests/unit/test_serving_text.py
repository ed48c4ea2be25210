"""The gateway serves a text model end to end: texts in, each tokenized by the answering
version's own tokenizer, labels out; unreadable texts refused with a 422 naming the row;
the texts logged; a restart with the registry unreachable serves text from the verified
local copy. Requests go through the ASGI app in process (no server)."""

import asyncio
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
import pytest

from chassis.digests import sha256_file
from chassis.errors import RegistryUnreachable
from chassis.registry import Registry
from chassis.registry.fetch import VersionFiles
from chassis.registry.tags import (
    TAG_ONNX_SHA256,
    TAG_TEXT_INPUT,
    TAG_TOKENIZER_SHA256,
    TOKENIZER_FILE,
)
from chassis.sanitization import Sanitization
from chassis.serving import batching, verified_cache
from chassis.serving.asgi import GatewayApp
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.openapi import openapi_document
from chassis.serving.prediction_log import PredictionLogger
from chassis.serving.state import RolloutState, save_state
from chassis.text_input import TextEncoder
from tests.fixtures.text_models import text_settings, write_classifier, write_tokenizer

MODEL = "reviews"
TOKEN = "t" * 32
# Class 1: praise, class 0: complaints. v2's tokenizer numbers the same words in another
# order (and knows one more), and reads shorter texts.
WORDS_V1 = ["good", "great", "bad", "awful", "film"]
WORDS_V2 = ["awful", "film", "bad", "superb", "great", "good"]
CLASSES = {"good": 1, "great": 1, "superb": 1, "bad": 0, "awful": 0}


class Version:
    def __init__(self, folder: Path, words: list[str], max_length: int, truncate: bool = False):
        folder.mkdir(parents=True)
        self.onnx = write_classifier(folder / "model.onnx", words, CLASSES, 2, max_length)
        self.tokenizer = write_tokenizer(folder / "tokenizer.json", words)
        self.settings = text_settings(max_length, truncate)

    def tags(self) -> dict[str, str]:
        return {
            TAG_ONNX_SHA256: sha256_file(self.onnx),
            TAG_TOKENIZER_SHA256: sha256_file(self.tokenizer),
            TAG_TEXT_INPUT: self.settings,
        }

    def encoder(self) -> TextEncoder:
        return TextEncoder.from_settings(self.tokenizer, self.settings)


class FakeRegistry:
    """What the gateway asks a registry while loading, answered from local files (or, once
    `reachable` is False, with RegistryUnreachable, as during an outage)."""

    def __init__(self, versions: dict[int, Version], champion: int = 1) -> None:
        self.versions = versions
        self.champion = champion
        self.reachable = True
        self.sanitization: Sanitization | None = None  # what the registry says (None: off)

    def _answer(self) -> None:
        if not self.reachable:
            raise RegistryUnreachable("registry unreachable: connection refused")

    def model_exists(self, name: str) -> bool:
        self._answer()
        return name == MODEL

    def read_rollout_record(self, name: str) -> None:
        self._answer()

    def read_sanitization(self, name: str) -> Sanitization | None:
        self._answer()
        return self.sanitization

    def version_for_alias(self, name: str, alias: str) -> int | None:
        self._answer()
        return self.champion if alias == "champion" else None

    def require_passed_gates(self, name: str, version: int) -> dict[str, str]:
        self._answer()
        return self.versions[version].tags()

    def feature_columns(self, name: str, version: int) -> list[str]:
        self._answer()
        return ["review"]

    def fetch_version(self, name: str, version: int, destination: Path) -> VersionFiles:
        self._answer()
        source = self.versions[version]
        destination.mkdir(parents=True, exist_ok=True)
        onnx = Path(shutil.copy(source.onnx, destination / "model.onnx"))
        tokenizer = Path(shutil.copy(source.tokenizer, destination / "tokenizer.json"))
        return VersionFiles(name, version, onnx, source.tags(), {TOKENIZER_FILE: tokenizer})


def gateway_for(
    tmp_path: Path, registry: object, prediction_log: Any = None, **config: Any
) -> Gateway:
    settings = GatewayConfig(
        tmp_path / "state", tmp_path / "cache", prediction_log=prediction_log, **config
    )
    return Gateway(cast(Registry, registry), settings, [MODEL])


def opened(gateway: Gateway, version: int, source: Version) -> ServedVersion:
    return gateway._open(
        MODEL, version, source.onnx, "0" * 64, ["review"], "classification", source.encoder()
    )


async def post(
    app: GatewayApp, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One request through the ASGI app, as a server would hand it over."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        assert not received
        received = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    await app(scope, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def predict(app: GatewayApp, body: object, key: str | None = None):
    headers = {"x-request-key": key} if key else None
    return post(app, f"/v1/models/{MODEL}/predict", body, headers)


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


@pytest.fixture
def v1(tmp_path: Path) -> Version:
    return Version(tmp_path / "v1", WORDS_V1, max_length=6)


@pytest.fixture
def v2(tmp_path: Path) -> Version:
    return Version(tmp_path / "v2", WORDS_V2, max_length=4)


def serving(tmp_path: Path, versions: dict[int, Version], state: RolloutState, **config: Any):
    gateway = gateway_for(tmp_path, FakeRegistry(versions), **config)
    model = ServedModel(MODEL, state, {n: opened(gateway, n, v) for n, v in versions.items()})
    gateway._serve(MODEL, model)
    return gateway, GatewayApp(gateway, TOKEN)


def test_texts_are_answered_with_labels(tmp_path: Path, v1: Version):
    async def scenario():
        gateway, app = serving(tmp_path, {1: v1}, RolloutState(model=MODEL, stable_version=1))
        gateway.loop = asyncio.get_running_loop()
        return await predict(app, {"instances": ["a good film", "awful awful film", "bad"]})

    status, answer = run(scenario)
    assert status == 200, answer
    ids = answer.pop("ids")
    assert answer == {"model": MODEL, "version": 1, "predictions": [1, 0, 0]}
    assert len(set(ids)) == 3 and all(i.endswith(f"-{row}") for row, i in enumerate(ids))


def test_a_sanitization_set_on_a_text_model_is_not_applied_and_texts_are_still_answered(
    tmp_path: Path, v1: Version
):
    registry = FakeRegistry({1: v1})
    # Set by hand around the CLI (which refuses a text model): the gateway says so and serves.
    registry.sanitization = Sanitization("clip", ["review"], [0.0], [1.0], [0.5], 1)
    gateway = gateway_for(tmp_path, registry)
    model = ServedModel(
        MODEL, RolloutState(model=MODEL, stable_version=1), {1: opened(gateway, 1, v1)}
    )
    gateway._serve(MODEL, model)
    assert model.sanitizer is None
    assert gateway.status(MODEL)["sanitization"] == "off"
    assert "a text model reads no numbers" in gateway.said[f"sanitization:{MODEL}"]

    async def scenario():
        gateway.loop = asyncio.get_running_loop()
        return await predict(GatewayApp(gateway, TOKEN), {"instances": ["a good film"]})

    status, answer = run(scenario)
    assert status == 200 and answer["predictions"] == [1], answer


def test_a_served_text_version_reads_its_max_length_and_warms_up_on_pad_ids(
    tmp_path: Path, v1: Version
):
    gateway = gateway_for(tmp_path, FakeRegistry({1: v1}))
    served = opened(gateway, 1, v1)
    assert served.n_features == 6
    assert served.encoder is not None and served.encoder.max_length == 6
    # The warm-up call succeeded: on float zeros an int64 graph would have failed it.
    assert served.batcher.answer_now(np.zeros((1, 6), np.int64)) is not None


def test_in_a_canary_each_version_tokenizes_with_its_own_tokenizer(
    tmp_path: Path, v1: Version, v2: Version
):
    texts = ["good film", "bad film", "great", "awful good bad"]
    expected = [1, 0, 1, 0]

    async def scenario() -> tuple[set[int], list[tuple[int, list[int]]], Gateway]:
        state = RolloutState(
            model=MODEL, stable_version=1, candidate_version=2, mode="canary", candidate_percent=50
        )
        gateway, app = serving(tmp_path, {1: v1, 2: v2}, state)
        gateway.loop = asyncio.get_running_loop()
        answers: list[tuple[int, list[int]]] = []
        for key in range(40):
            status, answer = await predict(app, {"instances": texts}, key=f"user-{key}")
            assert status == 200, answer
            answers.append((answer["version"], answer["predictions"]))
        return {version for version, _ in answers}, answers, gateway

    versions, answers, _ = run(scenario)
    assert versions == {1, 2}  # both versions answered
    # v1 numbers "good" 2 and v2 numbers it 7: read with the other's tokenizer, the
    # answers would differ.
    assert all(predictions == expected for _, predictions in answers), answers


def test_shadow_agreement_compares_labels_of_texts_each_version_tokenized(
    tmp_path: Path, v1: Version, v2: Version
):
    async def scenario() -> str:
        state = RolloutState(
            model=MODEL, stable_version=1, candidate_version=2, mode="shadow", mirror_percent=100
        )
        gateway, app = serving(tmp_path, {1: v1, 2: v2}, state)
        gateway.loop = asyncio.get_running_loop()
        for texts in (["good film", "bad film"], ["great"], ["film awful"]):
            status, answer = await predict(app, {"instances": texts})
            assert (status, answer["version"]) == (200, 1), answer
        await asyncio.gather(*gateway.background)
        return gateway.metrics.render().decode()

    metrics = run(scenario)
    assert 'chassis_shadow_comparisons_total{agreed="yes",model="reviews",version="2"} 4.0' in (
        metrics
    )
    assert 'agreed="no",model="reviews",version="2"} 0.0' in metrics


def test_a_text_too_long_for_the_answering_version_is_refused_naming_row_and_tokens(
    tmp_path: Path, v1: Version
):
    async def scenario():
        gateway, app = serving(tmp_path, {1: v1}, RolloutState(model=MODEL, stable_version=1))
        gateway.loop = asyncio.get_running_loop()
        answer = await predict(app, {"instances": ["good", "good film " * 4]})
        return answer, gateway

    (status, answer), gateway = run(scenario)
    assert status == 422
    assert "row 1 has 8 tokens; the model reads at most 6" in answer["error"], answer
    metrics = gateway.metrics.render().decode()
    assert 'chassis_text_refused_total{model="reviews",reason="too_long"} 1.0' in metrics
    # The client's mistake, not the version's error.
    assert "chassis_errors_total{" not in metrics
    assert gateway.models[MODEL].versions[1].stats.errors == 0


def test_a_version_that_truncates_answers_a_long_text_from_its_start(tmp_path: Path):
    truncating = Version(tmp_path / "v1", WORDS_V1, max_length=3, truncate=True)

    async def scenario():
        _, app = serving(tmp_path, {1: truncating}, RolloutState(model=MODEL, stable_version=1))
        return await predict(app, {"instances": ["good good film bad bad bad awful"]})

    status, answer = run(scenario)
    assert status == 200, answer
    assert answer["predictions"] == [1]  # the first three tokens: good good film


@pytest.mark.parametrize(
    ("instances", "expected", "reason"),
    [
        (["good", ""], "row 1 is an empty text", "empty"),
        (["   "], "row 0 is an empty text", "empty"),
        (["good", 3], "row 1 must be a text (a JSON string): this model reads texts", "not_text"),
        ([None], "row 0 must be a text", "not_text"),
        ([[0.5, 1.0]], "row 0 must be a text (a JSON string)", "not_text"),
    ],
)
def test_unreadable_texts_are_refused_naming_the_row(
    tmp_path: Path, v1: Version, instances: list[object], expected: str, reason: str
):
    async def scenario():
        gateway, app = serving(tmp_path, {1: v1}, RolloutState(model=MODEL, stable_version=1))
        return await predict(app, {"instances": instances}), gateway

    (status, answer), gateway = run(scenario)
    assert status == 422
    assert expected in answer["error"], answer
    metrics = gateway.metrics.render().decode()
    assert f'chassis_text_refused_total{{model="reviews",reason="{reason}"}} 1.0' in metrics
    assert gateway.models[MODEL].versions[1].stats.errors == 0


def test_texts_sent_to_a_numeric_model_are_refused_saying_what_it_reads(tmp_path: Path):
    from chassis.serving.batching import MicroBatcher

    async def scenario():
        gateway = gateway_for(tmp_path, FakeRegistry({}))
        numeric = ServedVersion(1, 3, "0" * 64, MicroBatcher(lambda rows: rows), ["a", "b", "c"])
        gateway._serve(MODEL, ServedModel(MODEL, RolloutState(model=MODEL, stable_version=1)))
        gateway.models[MODEL].versions[1] = numeric
        return await predict(GatewayApp(gateway, TOKEN), {"instances": ["good film"]})

    status, answer = run(scenario)
    assert status == 422
    assert "this model reads rows of 3 numbers, not texts" in answer["error"], answer


def test_the_prediction_log_of_a_text_model_holds_the_texts(tmp_path: Path, v1: Version):
    files: dict[str, bytes] = {}

    def prediction_log(model: str, features: list[str], task: Any, text: bool) -> PredictionLogger:
        return PredictionLogger(model, features, files.__setitem__, task=task, text=text)

    texts = ["a good film", "awful", "great great bad"]

    async def scenario() -> None:
        gateway, app = serving(
            tmp_path,
            {1: v1},
            RolloutState(model=MODEL, stable_version=1),
            prediction_log=prediction_log,
        )
        gateway.loop = asyncio.get_running_loop()
        assert (await predict(app, {"instances": texts[:2]}))[0] == 200
        assert (await predict(app, {"instances": texts[2:]}))[0] == 200
        gateway.logs[MODEL].flush()

    run(scenario)
    (payload,) = files.values()
    frame = pd.read_parquet(io.BytesIO(payload))
    assert list(frame.columns[:2]) == ["review", "prediction"]
    assert frame["review"].tolist() == texts
    assert frame["prediction"].tolist() == [1, 0, 1]


def test_a_restart_with_the_registry_unreachable_serves_text_from_the_verified_copy(
    tmp_path: Path, v1: Version
):
    registry = FakeRegistry({1: v1})
    first = gateway_for(tmp_path, registry)
    first.first_pass()
    assert first.models[MODEL].reads_text
    registry.reachable = False

    async def scenario():
        restarted = gateway_for(tmp_path, registry)
        restarted.first_pass()
        restarted.loop = asyncio.get_running_loop()
        answer = await predict(GatewayApp(restarted, TOKEN), {"instances": ["great film", "bad"]})
        return answer, restarted

    (status, answer), restarted = run(scenario)
    assert MODEL in restarted.degraded  # served from the local copy
    assert status == 200, answer
    assert answer["predictions"] == [1, 0]
    encoder = restarted.models[MODEL].versions[1].encoder
    assert encoder is not None and encoder.max_length == 6


def test_a_verified_copy_whose_tokenizer_changed_on_disk_is_refused(tmp_path: Path, v1: Version):
    registry = FakeRegistry({1: v1})
    gateway_for(tmp_path, registry).first_pass()
    cached = verified_cache.recall(tmp_path / "cache", MODEL, 1)
    assert cached is not None and cached.text is not None
    write_tokenizer(cached.text.tokenizer_path, list(reversed(WORDS_V1)))
    registry.reachable = False
    restarted = gateway_for(tmp_path, registry)
    restarted.first_pass()
    assert MODEL not in restarted.models
    assert "local copy changed" in restarted.readiness[MODEL].reason
    assert "tokenizer.json" in restarted.readiness[MODEL].reason


def test_a_copy_kept_without_its_tokenizer_is_downloaded_again(tmp_path: Path, v1: Version):
    registry = FakeRegistry({1: v1})
    gateway = gateway_for(tmp_path, registry)
    directory = verified_cache.version_dir(tmp_path / "cache", MODEL, 1)
    directory.mkdir(parents=True)
    onnx = Path(shutil.copy(v1.onnx, directory / "model.onnx"))
    # As an older gateway kept it: the ONNX bytes only.
    verified_cache.remember(directory, onnx, sha256_file(onnx), ["review"])
    save_state(tmp_path / "state", RolloutState(model=MODEL, stable_version=1))
    gateway.first_pass()
    served = gateway.models[MODEL].versions[1]
    assert served.encoder is not None  # not the tokenizer-less copy
    recalled = verified_cache.recall(tmp_path / "cache", MODEL, 1)
    assert recalled is not None and recalled.text is not None


def test_the_openapi_document_describes_texts_for_a_text_model(tmp_path: Path, v1: Version):
    gateway, _ = serving(tmp_path, {1: v1}, RolloutState(model=MODEL, stable_version=1))
    document = openapi_document(gateway)
    body = document["paths"][f"/v1/models/{MODEL}/predict"]["post"]["requestBody"]
    instances = body["content"]["application/json"]["schema"]["properties"]["instances"]
    assert instances["items"]["type"] == "string"
    assert instances["items"]["pattern"] == "\\S"


def test_the_blue_green_preview_reads_texts_through_the_idle_colors_tokenizer(
    tmp_path: Path, v1: Version, v2: Version
):
    async def scenario():
        state = RolloutState(model=MODEL, stable_version=1, candidate_version=2, mode="blue-green")
        gateway, app = serving(tmp_path, {1: v1, 2: v2}, state)
        gateway.loop = asyncio.get_running_loop()
        path = f"/v1/models/{MODEL}/preview/predict"
        return (
            await post(app, path, {"instances": ["good film", "bad plot"]}),
            await post(app, path, {"instances": ["good film good film good"]}),
        )

    (status, answer), (long_status, long_answer) = run(scenario)
    assert (status, answer["version"], answer["predictions"]) == (200, 2, [1, 0])
    # v2 reads 4 tokens at most (v1, live, would read this one).
    assert long_status == 422
    assert "row 0 has 5 tokens; the model reads at most 4 (reviews v2)" in long_answer["error"]


def test_a_graph_whose_width_is_not_the_versions_max_length_is_not_served(tmp_path: Path):
    from chassis.errors import NotServable

    mismatched = Version(tmp_path / "v1", WORDS_V1, max_length=6)
    write_classifier(mismatched.onnx, WORDS_V1, CLASSES, 2, 8)  # 8 token ids per text
    gateway = gateway_for(tmp_path, FakeRegistry({1: mismatched}))
    with pytest.raises(NotServable, match="reads 8 token ids per text, but its text input"):
        opened(gateway, 1, mismatched)


@pytest.mark.parametrize(("slow", "mirror_calls"), [(False, 2), (True, 1)])
def test_a_mirrored_request_warms_caches_first_only_for_a_fast_model(
    tmp_path: Path,
    v1: Version,
    v2: Version,
    slow: bool,
    mirror_calls: int,
    monkeypatch: pytest.MonkeyPatch,
):
    # X, Y, X, Y evens out warm caches, which matter at microseconds; a model slow enough
    # to be queued runs X, Y once, half the load mirroring puts on the machine.
    if not slow:
        # The live call updates the measured pace; on a busy machine one preempted call
        # could make the tiny model look slow. Any pace is "fast" here.
        monkeypatch.setattr(batching, "INLINE_BUDGET_SECONDS", 3600.0)

    async def scenario() -> dict[int, int]:
        state = RolloutState(
            model=MODEL, stable_version=1, candidate_version=2, mode="shadow", mirror_percent=100
        )
        gateway, app = serving(tmp_path, {1: v1, 2: v2}, state)
        gateway.loop = asyncio.get_running_loop()
        versions = gateway.models[MODEL].versions
        for served in versions.values():
            # The pace the batcher measured (a busy machine can make the tiny model look
            # slow, so it is set): as MiniLM's, ~20 ms a call, or a few microseconds.
            served.batcher.run_seconds = 0.02 if slow else 0.0
        before = {n: served.batcher.batches for n, served in versions.items()}
        status, answer = await predict(app, {"instances": ["good film"]})
        assert (status, answer["version"]) == (200, 1), answer
        await asyncio.gather(*gateway.background)
        return {n: served.batcher.batches - before[n] for n, served in versions.items()}

    calls = run(scenario)
    assert calls == {1: 1 + mirror_calls, 2: mirror_calls}
