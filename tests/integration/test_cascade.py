"""Cascade serving over HTTP: a cascade built with `chassis cascade`, gated like any
version, served by a real gateway (full tier loaded there) and by a second one whose full
tier is the first gateway (its upstream). Every answer must follow the rule: the small
tier's label where its calibrated confidence reaches the threshold, the full tier's
elsewhere; the tier metrics count exactly those rows. Bad input registers nothing."""

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import pytest

from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.registry.tags import TAG_CASCADE
from chassis.runtime import create_session, run_batches
from chassis.settings import ChassisSettings
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


class Tiers(NamedTuple):
    """What each tier answers for some rows, from the registered bytes."""

    expected: np.ndarray  # the cascade's labels, by the rule
    small: np.ndarray  # the small tier's alone
    full: np.ndarray  # the full tier's alone
    confident: np.ndarray  # the rows the small tier answers


def tier_labels(cascade: int, spec: CascadeSpec, rows: np.ndarray, workdir: Path) -> Tiers:
    """CHASSIS_HOME must be the cascade's home."""
    small_logits = logits_of(cascade, rows, workdir)  # the cascade's bytes: the small tier's
    full_logits = logits_of(spec.full_version, rows, workdir)
    confident = cascade_answer(small_logits, spec.temperature, spec.threshold)
    small, full = small_logits.argmax(axis=1), full_logits.argmax(axis=1)
    return Tiers(np.where(confident, small, full), small, full, confident)


def predict(url: str, rows: np.ndarray, path: str = "predict") -> httpx.Response:
    answer = httpx.post(
        f"{url}/v1/models/{MODEL}/{path}", json={"instances": rows.tolist()}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer


@contextlib.contextmanager
def full_tier_live(
    home: Path, cascade: int, spec: CascadeSpec, local_dir: Path
) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """A gateway whose stable version is the cascade's full tier (made champion for the
    test, the cascade champion again after it), and the admin headers to split it."""
    registry = home_registry()
    full = spec.full_version
    registry.promote(MODEL, full, expected_champion=cascade, actor="test", reason="full live")
    # Its own local folder: the split it commits is no other test's saved state.
    gateway = GatewayProcess(home, env={"CHASSIS_GATEWAY_LOCAL_DIR": str(local_dir)})
    try:
        gateway.start()
        yield gateway, {"Authorization": f"Bearer {ChassisSettings().admin_token()}"}
    finally:
        gateway.stop()
        registry.promote(MODEL, cascade, expected_champion=full, actor="test", reason="restored")


def set_split(gateway: GatewayProcess, auth: dict[str, str], mode: str, candidate: int) -> None:
    answer = httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        headers=auth,
        json={"mode": mode, "candidate_version": candidate},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


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
    expected, small, full, confident = tier_labels(cascade, spec, rows, tmp_path)
    # The rule splits these rows, and the tiers disagree somewhere: the test can tell them apart.
    assert 0 < confident.sum() < len(rows)
    assert (small != full).any()

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


def test_the_result_cache_answers_with_the_cascade_on_a_miss_and_on_a_hit(
    cascade_home, tmp_path, monkeypatch
) -> None:
    home, _, cascade, spec = cascade_home
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    rows = specs.blob_traffic(seed=7, rows=200)
    expected, small, _, confident = tier_labels(cascade, spec, rows, tmp_path)
    assert (expected != small).any()  # the small tier alone would answer otherwise
    gateway = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_CACHE_MODELS": MODEL,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "gateway"),
        },
    )
    try:
        gateway.start()
        for level in ("miss", "local"):  # computed, then the kept answer given again
            answer = predict(gateway.url, rows)
            assert answer.headers["x-chassis-cache"] == level
            assert answer.json()["version"] == cascade
            assert answer.json()["predictions"] == expected.tolist()
        labels = {"model": MODEL, "version": str(cascade)}
        # Computed once, by both tiers; the hit ran neither.
        escalated = metric_sum(gateway.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert escalated == (~confident).sum()
    finally:
        gateway.stop()


def test_a_shadowed_cascade_candidate_is_judged_on_the_cascades_answers(
    cascade_home, tmp_path, monkeypatch
) -> None:
    home, _, cascade, spec = cascade_home
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    rows = specs.blob_traffic(seed=8, rows=200)
    expected, small, full, confident = tier_labels(cascade, spec, rows, tmp_path)
    cascade_agreed = int((expected == full).sum())
    # The count tells the cascade from its small tier alone: they agree with the full tier
    # (the stable version here) on different numbers of rows.
    assert cascade_agreed != int((small == full).sum())
    with full_tier_live(home, cascade, spec, tmp_path / "gateway") as (gateway, auth):
        set_split(gateway, auth, "shadow", cascade)
        assert predict(gateway.url, rows).json()["version"] == spec.full_version
        labels = {"model": MODEL, "version": str(cascade)}
        # The mirrored run follows the answer: wait until its rows are compared.
        deadline = time.monotonic() + 30
        family = "chassis_shadow_comparisons_total"
        while metric_sum(gateway.url, family, **labels) < len(rows):
            assert time.monotonic() < deadline, "the shadow comparison never came"
            time.sleep(0.1)
        assert metric_sum(gateway.url, family, **labels) == len(rows)
        assert metric_sum(gateway.url, family, agreed="yes", **labels) == cascade_agreed
        # Each mirrored row is counted once by tier (the mirror's warm-up call is not), so
        # the escalation share the rollout judges rests on the rows actually compared.
        tiers = metric_sum(gateway.url, "chassis_cascade_rows_total", **labels)
        assert tiers == len(rows)
        escalated = metric_sum(gateway.url, "chassis_cascade_rows_total", tier="full", **labels)
        assert escalated == int((~confident).sum()) > 0


def test_a_blue_green_preview_of_a_cascade_answers_with_the_cascade(
    cascade_home, tmp_path, monkeypatch
) -> None:
    home, _, cascade, spec = cascade_home
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    rows = specs.blob_traffic(seed=9, rows=200)
    expected, small, _, _ = tier_labels(cascade, spec, rows, tmp_path)
    assert (expected != small).any()  # the small tier alone would answer otherwise
    with full_tier_live(home, cascade, spec, tmp_path / "gateway") as (gateway, auth):
        set_split(gateway, auth, "blue-green", cascade)
        answer = predict(gateway.url, rows, "preview/predict")
        assert answer.json()["version"] == cascade
        assert answer.json()["predictions"] == expected.tolist()
