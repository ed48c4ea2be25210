"""A cascade of two text classifiers over HTTP: built with `chassis cascade` on the texts'
validation split, gated, served by a real gateway (full tier loaded there) and by a second
one whose full tier is the first gateway (its upstream, sent the escalated *texts*). Every
answer must follow the rule: the small tier's label where its calibrated confidence reaches
the threshold, the full tier's elsewhere, each tier reading the texts through the tokenizer
stored with it. Tiers that read texts through different tokenizer settings register nothing.

A small word-level model (tests/fixtures/text_specs) stands in for MiniLM, which takes
minutes to import on two cores; the MiniLM cascade is measured in benchmarks/cascade.py."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.registry.tags import TAG_CASCADE
from chassis.runtime import create_session, run_batches
from tests.fixtures.cli import chassis
from tests.fixtures.fault_gateway import metric_sum
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.registries import home_registry
from tests.fixtures.text_specs import TOKENIZER_ENV, texts, write_tokenizer

MODEL = "test-texts"


def tier_logits(version: int, request: list[str], workdir: Path) -> np.ndarray:
    """The version's logits for `request`, read through its own stored tokenizer."""
    files = home_registry().fetch_version(MODEL, version, workdir / f"v{version}")
    encoder = files.text_encoder()
    assert encoder is not None
    return run_batches(create_session(files.onnx_path), encoder.encode(request))


@pytest.fixture(scope="module")
def text_cascade(tmp_path_factory) -> Iterator[tuple[Path, int, int, CascadeSpec]]:
    """A full tier (v1, the well-trained bag of words), a small tier (v2, three epochs, the
    same tokenizer) and their cascade, built by the CLI for at most half the validation
    texts escalated, then gated and made champion."""
    from flows.promotion import gates
    from flows.training import import_model

    folder = tmp_path_factory.mktemp("text-cascade")
    home = folder / "chassis"
    saved = {key: os.environ.get(key) for key in ("CHASSIS_HOME", TOKENIZER_ENV)}
    os.environ["CHASSIS_HOME"] = str(home)
    os.environ[TOKENIZER_ENV] = str(write_tokenizer(folder / "tokenizer.json"))
    try:
        full = import_model(spec="tests.fixtures.text_specs:spec").version
        small = import_model(spec="tests.fixtures.text_specs:weak").version
        gates(model_name=MODEL, version=full)
        built = chassis(
            "cascade", "--model", MODEL, "--small", str(small), "--full", str(full),
            "--max-escalation-share", "0.5", "--json",
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        document = json.loads(built.stdout)
        cascade = int(document["version"])
        assert document["validation_rows"] == 80  # the texts' validation split
        assert document["validation_escalation_share"] <= 0.5
        gates(model_name=MODEL, version=cascade)
        registry = home_registry()
        registry.promote(MODEL, cascade, expected_champion=None, actor="test", reason="cascade")
        spec = CascadeSpec.from_json(registry.version_tags(MODEL, cascade)[TAG_CASCADE])
        assert spec.full_version == full
        yield home, small, cascade, spec
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_text_cascade_answers_by_the_rule_locally_and_through_an_upstream(
    text_cascade, tmp_path, monkeypatch
) -> None:
    home, _, cascade, spec = text_cascade
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    request = texts(200, seed=7)["text"].tolist()
    small_logits = tier_logits(cascade, request, tmp_path)  # the small tier's bytes
    full_logits = tier_logits(spec.full_version, request, tmp_path)
    confident = cascade_answer(small_logits, spec.temperature, spec.threshold)
    expected = np.where(confident, small_logits.argmax(axis=1), full_logits.argmax(axis=1))
    # The rule splits these texts, and the tiers disagree on some escalated ones: an answer
    # from the wrong tier would show.
    assert 0 < confident.sum() < len(request)
    disagree = small_logits.argmax(axis=1) != full_logits.argmax(axis=1)
    assert (disagree & ~confident).any()

    labels = {"model": MODEL, "version": str(cascade)}
    cloud = GatewayProcess(home, models=(MODEL,))
    cloud.start()
    edge = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_UPSTREAM": cloud.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "edge"),
        },
        models=(MODEL,),
    )
    try:
        edge.start()
        for gateway in (cloud, edge):
            answer = httpx.post(
                f"{gateway.url}/v1/models/{MODEL}/predict",
                json={"instances": request},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == cascade
            assert answer.json()["predictions"] == expected.tolist()
            small_rows = metric_sum(
                gateway.url, "chassis_cascade_rows_total", tier="small", **labels
            )
            full_rows = metric_sum(gateway.url, "chassis_cascade_rows_total", tier="full", **labels)
            if gateway is cloud:
                assert (small_rows, full_rows) == (confident.sum(), (~confident).sum())
        edge_small = metric_sum(edge.url, "chassis_cascade_rows_total", tier="small", **labels)
        edge_full = metric_sum(edge.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert (edge_small, edge_full) == (confident.sum(), (~confident).sum())
        # The edge sent the cloud its escalated texts (token ids would be a 422 there), which
        # the cloud's cascade read and escalated again: the same rule on the same texts.
        cloud_full = metric_sum(cloud.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert cloud_full == 2 * (~confident).sum()
    finally:
        edge.stop()
        cloud.stop()


def test_text_tiers_with_different_tokenizer_settings_register_nothing(
    text_cascade, monkeypatch
) -> None:
    from flows.training import import_model

    home, _, _, spec = text_cascade
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    # The same tokenizer file, read up to 16 tokens instead of 12: other token ids' rows.
    longer = import_model(spec="tests.fixtures.text_specs:longer").version
    assert longer is not None
    before = home_registry().list_versions(MODEL)
    result = chassis(
        "cascade", "--model", MODEL, "--small", str(longer), "--full", str(spec.full_version)
    )
    assert result.returncode == 1, result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "cascade tiers read text through different tokenizers" in message
    assert f"small tier {MODEL} v{longer} (tokenizer sha256 " in message
    assert f"full tier {MODEL} v{spec.full_version} (tokenizer sha256 " in message
    assert "max_length 16" in message and "max_length 12" in message
    assert home_registry().list_versions(MODEL) == before
