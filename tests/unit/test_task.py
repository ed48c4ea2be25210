"""The model's task: declared by the spec, recorded on the version, read back from there."""

import pytest

from chassis.errors import SpecError
from chassis.modelspec import ModelSpec, coerce_spec
from chassis.registry import tags as tag_names
from chassis.task import TASKS, output_width, parse_task, task_of
from tests.fixtures.specs import blob_dataset, small_mlp


def spec(**extra) -> ModelSpec:
    return ModelSpec(name="t", load_data=blob_dataset, build_model=small_mlp, **extra)


def test_a_spec_is_a_classifier_unless_it_says_otherwise():
    assert spec().task == "classification"
    assert spec(task="regression").task == "regression"


def test_an_unknown_task_is_refused_naming_the_known_ones():
    with pytest.raises(SpecError, match=r"spec 't': unknown task 'forecast'; choose one of "):
        spec(task="forecast")


def test_a_spec_given_as_a_mapping_may_declare_its_task():
    coerced = coerce_spec(
        {"name": "m", "load_data": blob_dataset, "build_model": small_mlp, "task": "regression"},
        "pkg:m",
    )
    assert coerced.task == "regression"


def test_a_version_without_the_task_tag_is_a_classifier():
    assert task_of({}) == "classification"
    assert task_of({tag_names.TAG_TASK: "regression"}) == "regression"


def test_a_version_with_a_task_this_chassis_does_not_know_is_refused():
    with pytest.raises(SpecError, match=r"version tag chassis.task: unknown task 'embedding'"):
        task_of({tag_names.TAG_TASK: "embedding"})


def test_every_task_parses_as_itself():
    assert [parse_task(t, "x") for t in TASKS] == list(TASKS)


def test_a_regressor_has_one_output_and_a_classifier_one_per_class():
    assert output_width("regression", None) == 1
    assert output_width("classification", 7) == 7
    with pytest.raises(SpecError, match="needs its number of classes"):
        output_width("classification", None)
