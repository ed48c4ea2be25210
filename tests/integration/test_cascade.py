"""Cascade serving over HTTP: a cascade built with `chassis cascade`, gated like any
version, served by a real gateway (full tier loaded there) and by a second one whose full
tier is the first gateway (its upstream). Every answer must follow the rule: the small
tier's label where its calibrated confidence reaches the threshold, the full tier's
elsewhere; the tier metrics count exactly those rows. Bad input registers nothing."""

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
from tests.fixtures import specs
from tests.fixtures.cli import chassis, chassis_in_process
from tests.fixtures.fault_gateway import metric_sum
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

SPEC = "tests.fixtures.specs:good"


def logits_of(version: int, rows: np.ndarray, workdir: Path) -> np.ndarray:
    files = home_registry().fetch_version(MODEL, version, workdir / f"v{version}")
    return run_batches(create_session(files.onnx_path), rows)


@pytest.fixture(scope="module")
def cascade_home(tmp_path_factory) -> Iterator[tuple[Path, int, int, CascadeSpec]]:
    """A full tier (v1, trained well), a small tier (v2, one epoch) and their cascade,
    built by the CLI for at most half the validation rows escalated, then gated."""
    from flows.promotion import gates
    from flows.training import train

    home = tmp_path_factory.mktemp("cascade") / "chassis"
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        full = train(spec=SPEC, epochs=20).version
        small = train(spec=SPEC, epochs=1, seed=3).version
        gates(model_name=MODEL, version=full)
        built = chassis(
            "cascade", "--model", MODEL, "--small", str(small), "--full", str(full),
            "--max-escalation-share", "0.5", "--json",
            env={"CHASSIS_HOME": str(home)},
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        document = json.loads(built.stdout)
        cascade = int(document["version"])
        assert document["validation_escalation_share"] <= 0.5
        assert 0 < document["threshold"] <= 1
        gates(model_name=MODEL, version=cascade)
        registry = home_registry()
        registry.promote(MODEL, cascade, expected_champion=None, actor="test", reason="cascade")
        spec = CascadeSpec.from_json(registry.version_tags(MODEL, cascade)[TAG_CASCADE])
        assert spec.full_version == full
    finally:
        if previous is not None:
            os.environ["CHASSIS_HOME"] = previous
    yield home, small, cascade, spec


def test_cascade_answers_follow_the_rule_locally_and_through_an_upstream(
    cascade_home, tmp_path, monkeypatch
) -> None:
    home, _, cascade, spec = cascade_home
    rows = specs.blob_traffic(seed=5, rows=200)
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    small_logits = logits_of(cascade, rows, tmp_path)  # the cascade's bytes: the small tier's
    full_logits = logits_of(spec.full_version, rows, tmp_path)
    confident = cascade_answer(small_logits, spec.temperature, spec.threshold)
    expected = np.where(confident, small_logits.argmax(axis=1), full_logits.argmax(axis=1))
    # The rule splits these rows, and the tiers disagree somewhere: the test can tell them apart.
    assert 0 < confident.sum() < len(rows)
    assert (small_logits.argmax(axis=1) != full_logits.argmax(axis=1)).any()

    cloud = GatewayProcess(home)
    cloud.start()
    edge = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_UPSTREAM": cloud.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "edge"),
        },
    )
    try:
        edge.start()
        for gateway in (cloud, edge):
            answer = httpx.post(
                f"{gateway.url}/v1/models/{MODEL}/predict",
                json={"instances": rows.tolist()},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == cascade
            assert answer.json()["predictions"] == expected.tolist()
            labels = {"model": MODEL, "version": str(cascade)}
            small_rows = metric_sum(
                gateway.url, "chassis_cascade_rows_total", tier="small", **labels
            )
            full_rows = metric_sum(gateway.url, "chassis_cascade_rows_total", tier="full", **labels)
            if gateway is cloud:
                assert (small_rows, full_rows) == (confident.sum(), (~confident).sum())
                # The edge's escalated rows reach the cloud as a cascade request of their own.
            timed = metric_sum(
                gateway.url, "chassis_cascade_tier_seconds_count", tier="full", **labels
            )
            assert timed >= 1
        edge_small = metric_sum(edge.url, "chassis_cascade_rows_total", tier="small", **labels)
        edge_full = metric_sum(edge.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert (edge_small, edge_full) == (confident.sum(), (~confident).sum())
        # The cloud saw the edge's escalated rows: all escalated again (same rule, same rows).
        cloud_full = metric_sum(cloud.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert cloud_full == 2 * (~confident).sum()
    finally:
        edge.stop()
        cloud.stop()
    # Restarted while the registry is unreachable, from the cloud's verified local copies:
    # still the cascade (its full tier from its own verified copy), not its small tier alone.
    offline = GatewayProcess(home, env={"CHASSIS_TRACKING_URI": "http://127.0.0.1:9"})
    try:
        offline.start()
        answer = httpx.post(
            f"{offline.url}/v1/models/{MODEL}/predict",
            json={"instances": rows.tolist()},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected.tolist()
        escalated = metric_sum(offline.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert escalated == (~confident).sum()
    finally:
        offline.stop()


def test_an_upstream_gone_after_start_is_a_503_naming_it(cascade_home, tmp_path) -> None:
    home = cascade_home[0]
    cloud = GatewayProcess(home)
    cloud.start()  # the upstream must answer when the edge starts (chassis serve checks it)
    edge = GatewayProcess(
        home,
        env={"CHASSIS_GATEWAY_UPSTREAM": cloud.url, "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path)},
    )
    try:
        edge.start()
        cloud.stop()
        rows = specs.blob_traffic(seed=6, rows=200).tolist()
        answer = httpx.post(
            f"{edge.url}/v1/models/{MODEL}/predict", json={"instances": rows}, timeout=30
        )
        assert answer.status_code == 503, answer.text
        assert f"upstream {cloud.url} unreachable" in answer.text
    finally:
        edge.stop()
        cloud.stop()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "0"], r"threshold must be in (0, 1]"),
        (["--threshold", "1.5"], r"threshold must be in (0, 1]"),
        (["--max-escalation-share", "2"], "escalation share must be in [0, 1]"),
    ],
)
def test_bad_targets_register_nothing(cascade_home, extra, message, monkeypatch) -> None:
    home, small, _, spec = cascade_home
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    before = home_registry().list_versions(MODEL)
    # In this process: refused before anything is downloaded, in milliseconds.
    code, _, stderr = chassis_in_process(
        "cascade", "--model", MODEL, "--small", str(small), "--full", str(spec.full_version), *extra
    )
    assert code == 1
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert home_registry().list_versions(MODEL) == before


def test_tiers_that_do_not_fit_register_nothing(cascade_home, monkeypatch) -> None:
    home, _, _, spec = cascade_home
    env = {"CHASSIS_HOME": str(home)}
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    (narrow,) = register_tiny_versions(MODEL, 1)  # reads 1 number, answers 1 output
    before = home_registry().list_versions(MODEL)
    cases = [
        (str(narrow), "input widths: small tier test-blobs v"),
        ("99", "has no version 99"),
    ]
    for small, message in cases:
        result = chassis(
            "cascade", "--model", MODEL, "--small", small, "--full", str(spec.full_version), env=env
        )
        assert result.returncode == 1, result.stdout
        assert message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert home_registry().list_versions(MODEL) == before
