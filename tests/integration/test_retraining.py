"""Retraining guards and hand-set challengers, against a real MLflow registry."""

import pytest

from chassis.errors import RegistryError
from flows.release import release
from flows.retraining import registry_watch, retrain
from tests.fixtures.registries import home_registry

MODEL = "test-blobs"


def test_cooldown_allows_one_retraining(chassis_home):
    home_registry().client.create_registered_model("cool-model")
    first = home_registry().claim_retrain("cool-model", 3600, "test")
    second = home_registry().claim_retrain("cool-model", 3600, "test")
    assert first == (True, "claimed")
    assert second[0] is False and "cooldown is 3600 s" in second[1]
    assert home_registry().claim_retrain("cool-model", 0, "test")[0] is True


def test_retrain_skips_within_cooldown(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    home_registry().claim_retrain(MODEL, 3600, "test: a retraining just ran")
    outcome = retrain(model_name=MODEL, champion_version=1, drifted_share=0.75)
    assert not outcome.retrained and "cooldown" in outcome.reason
    assert home_registry().list_versions(MODEL) == [1]


def test_challenger_set_by_hand_is_rolled_out(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    release(spec="tests.fixtures.specs:good", seed=1, compression="off", rollout_strategy="none")
    assert home_registry().unaudited_challenger(MODEL) is None  # Chassis set it: audited
    # Someone moves the alias in the MLflow UI (outside Chassis, so no audit record).
    client = home_registry().client
    client.delete_registered_model_alias(MODEL, "challenger")
    release(spec="tests.fixtures.specs:good", seed=2, compression="off", rollout_strategy="none")
    client.set_registered_model_alias(MODEL, "challenger", "2")
    assert home_registry().unaudited_challenger(MODEL) == 2
    started = registry_watch(model_names=[MODEL])
    assert started == {MODEL: 2}
    assert home_registry().current_aliases(MODEL)["champion"] == 2
    assert home_registry().unaudited_challenger(MODEL) is None


def test_a_hand_set_challenger_that_fails_its_gates_is_refused_once(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    release(spec="tests.fixtures.specs:good", seed=1, compression="off", rollout_strategy="none")
    client = home_registry().client
    client.delete_registered_model_alias(MODEL, "challenger")
    release(spec="tests.fixtures.specs:good", seed=2, compression="off", rollout_strategy="none")
    home_registry().record_gate_report(MODEL, 2, False, "test: failed on purpose")
    client.set_registered_model_alias(MODEL, "challenger", "2")  # by hand, as in the UI
    assert home_registry().unaudited_challenger(MODEL) == 2

    with pytest.raises(RegistryError, match=r"test-blobs v2: refused by its gates"):
        registry_watch(model_names=MODEL)  # one name, as the webhook's trigger passes it
    # The alias is gone, with the reason on record; the champion never moved.
    aliases = home_registry().current_aliases(MODEL)
    assert "challenger" not in aliases and aliases["champion"] == 1
    last = home_registry().history(MODEL)[-1]
    assert last.moves == [{"alias": "challenger", "from": 2, "to": None}]
    assert "set by hand as challenger, refused" in last.reason
    # The next poll has nothing left to do: no failed run every minute.
    assert registry_watch(model_names=[MODEL]) == {}
