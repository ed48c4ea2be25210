"""Retraining guards and hand-set challengers, against a real MLflow registry."""

import mlflow

from chassis import registry
from chassis.settings import ChassisSettings
from chassis.tracking import connect
from flows.release import release
from flows.retraining import registry_watch, retrain

MODEL = "test-blobs"


def test_cooldown_allows_one_retraining(chassis_home):
    connect(ChassisSettings())
    mlflow.MlflowClient().create_registered_model("cool-model")
    first = registry.claim_retrain("cool-model", 3600, "test")
    second = registry.claim_retrain("cool-model", 3600, "test")
    assert first == (True, "claimed")
    assert second[0] is False and "cooldown is 3600 s" in second[1]
    assert registry.claim_retrain("cool-model", 0, "test")[0] is True


def test_retrain_skips_within_cooldown(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    connect(ChassisSettings())
    registry.claim_retrain(MODEL, 3600, "test: a retraining just ran")
    outcome = retrain(model_name=MODEL, champion_version=1, drifted_share=0.75)
    assert not outcome.retrained and "cooldown" in outcome.reason
    assert registry.list_versions(MODEL) == [1]


def test_challenger_set_by_hand_is_rolled_out(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    release(spec="tests.fixtures.specs:good", seed=1, compression="off", rollout_strategy="none")
    connect(ChassisSettings())
    assert registry.unaudited_challenger(MODEL) is None  # Chassis set it: audited
    # Someone moves the alias in the MLflow UI (outside Chassis, so no audit record).
    client = mlflow.MlflowClient()
    client.delete_registered_model_alias(MODEL, "challenger")
    release(spec="tests.fixtures.specs:good", seed=2, compression="off", rollout_strategy="none")
    client.set_registered_model_alias(MODEL, "challenger", "2")
    assert registry.unaudited_challenger(MODEL) == 2
    started = registry_watch(model_names=[MODEL])
    assert started == {MODEL: 2}
    assert registry.current_aliases(MODEL)["champion"] == 2
    assert registry.unaudited_challenger(MODEL) is None
