"""A registered text model served by `chassis serve` over HTTP: texts answered with labels,
unreadable ones refused with a 422 naming the row and counted, the texts in the prediction
log once the gateway stops."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from chassis.serving.prediction_log import read_window
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from flows.release import release
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.text_models import TEXT_MODEL_DIR_ENV, write_review_model

MODEL = "test-reviews"


def test_a_registered_text_model_is_served_over_http(
    chassis_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(TEXT_MODEL_DIR_ENV, str(write_review_model(tmp_path / "reviews")))
    release(spec="tests.fixtures.text_models:reviews", seed=0, compression="off")
    gateway = GatewayProcess(
        chassis_home, env={"CHASSIS_PREDICTION_LOG_FLUSH_SECONDS": "3600"}, models=(MODEL,)
    )
    gateway.start()
    predict = f"{gateway.url}/v1/models/{MODEL}/predict"
    texts = ["a good film", "awful plot bad film", "great"]
    try:
        answer = httpx.post(predict, json={"instances": texts}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [1, 0, 1]

        too_long = httpx.post(predict, json={"instances": ["good " * 9]}, timeout=30)
        assert too_long.status_code == 422
        assert "row 0 has 9 tokens; the model reads at most 8" in too_long.json()["error"]
        numbers = httpx.post(predict, json={"instances": [[1.0, 2.0]]}, timeout=30)
        assert numbers.status_code == 422 and "this model reads texts" in numbers.json()["error"]

        metrics = httpx.get(f"{gateway.url}/metrics", timeout=30).text
        assert f'chassis_text_refused_total{{model="{MODEL}",reason="too_long"}} 1.0' in metrics
        assert f'chassis_text_refused_total{{model="{MODEL}",reason="not_text"}} 1.0' in metrics
        document = httpx.get(f"{gateway.url}/openapi.json", timeout=30).json()
        schema = document["paths"][f"/v1/models/{MODEL}/predict"]["post"]["requestBody"]
        items = schema["content"]["application/json"]["schema"]["properties"]["instances"]
        assert items["items"]["type"] == "string"
    finally:
        gateway.stop()  # writes the prediction log

    settings = ChassisSettings(home=chassis_home)
    now = datetime.now(UTC)
    logged = read_window(
        BlobStore(settings, settings.resolved_prediction_log_root()),
        MODEL,
        now - timedelta(minutes=10),
        now + timedelta(minutes=1),
    )
    assert logged["review"].tolist() == texts
    assert logged["prediction"].tolist() == [1, 0, 1]
