"""A model trained elsewhere is checked against its dataset before it can be registered:
each way it can fail to fit is refused with a message naming the problem."""

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from chassis.errors import ModelImportError, SpecError
from chassis.model_import import imported_module, imported_onnx
from chassis.modelspec import ModelSpec, load_spec
from chassis.runtime import create_session, run_batches
from tests.fixtures.import_specs import linear_onnx, trained_elsewhere
from tests.fixtures.specs import blob_dataset, small_mlp


def onnx_spec(path: Path) -> ModelSpec:
    return ModelSpec(name="imported", load_data=blob_dataset, onnx_file=str(path))


def torch_spec(module: nn.Module) -> ModelSpec:
    return ModelSpec(name="imported", load_data=blob_dataset, load_model=lambda: module)


def test_torch_module_is_kept_as_it_is_with_its_own_preprocessing() -> None:
    dataset = blob_dataset()
    module = trained_elsewhere()
    imported = imported_module(torch_spec(module), dataset)
    assert imported.module is module  # no standardization layer added around it
    assert (imported.n_features, imported.n_classes, imported.best_epoch) == (4, 3, 0)
    assert imported.best_validation_accuracy > 0.9


def test_onnx_file_is_kept_byte_for_byte_with_its_own_input_name(tmp_path: Path) -> None:
    source = linear_onnx(tmp_path / "theirs.onnx")
    imported = imported_onnx(onnx_spec(source), blob_dataset(), tmp_path / "kept" / "model.onnx")
    assert imported.path.read_bytes() == source.read_bytes()
    assert imported.parity_max_abs_diff is None  # no torch twin to compare with
    rows = np.zeros((3, 4), dtype=np.float32)
    assert run_batches(create_session(imported.path), rows).shape == (3, 3)


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a protobuf")
    with pytest.raises(ModelImportError, match=r"model\.onnx is not a valid ONNX model"):
        imported_onnx(onnx_spec(fake), blob_dataset(), tmp_path / "kept.onnx")
    assert not (tmp_path / "kept.onnx").exists()


def test_a_missing_onnx_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match=r"onnx_file .*nowhere\.onnx does not exist"):
        imported_onnx(onnx_spec(tmp_path / "nowhere.onnx"), blob_dataset(), tmp_path / "k.onnx")


def test_onnx_input_width_that_does_not_match_the_dataset_is_refused(tmp_path: Path) -> None:
    source = linear_onnx(tmp_path / "wide.onnx", width=6)
    with pytest.raises(ModelImportError, match="takes 6 features per row; the dataset has 4"):
        imported_onnx(onnx_spec(source), blob_dataset(), tmp_path / "kept.onnx")


def test_onnx_with_a_fixed_batch_of_one_is_refused(tmp_path: Path) -> None:
    path = linear_onnx(tmp_path / "fixed.onnx", batch=1)
    with pytest.raises(ModelImportError, match="batch dimension is fixed at 1"):
        imported_onnx(onnx_spec(path), blob_dataset(), tmp_path / "kept.onnx")


def test_onnx_outputs_that_do_not_fit_the_classes_are_refused(tmp_path: Path) -> None:
    source = linear_onnx(tmp_path / "two.onnx", outputs=2)
    with pytest.raises(ModelImportError, match=r"gives 2 scores per row; .* 3 classes"):
        imported_onnx(onnx_spec(source), blob_dataset(), tmp_path / "kept.onnx")


def test_torch_module_of_the_wrong_width_is_refused_naming_the_width() -> None:
    with pytest.raises(ModelImportError, match="fails on 20 test rows of 4 features"):
        imported_module(torch_spec(nn.Linear(7, 3)), blob_dataset())


def test_torch_module_with_too_few_outputs_is_refused() -> None:
    with pytest.raises(ModelImportError, match=r"gives 2 scores per row; .* 3 classes"):
        imported_module(torch_spec(nn.Linear(4, 2)), blob_dataset())


def test_load_model_that_returns_no_module_is_refused() -> None:
    not_a_module = lambda: "weights.pt"  # noqa: E731 (what a user's loader might return)
    spec = ModelSpec(name="imported", load_data=blob_dataset, load_model=not_a_module)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ModelImportError, match=r"must return a torch\.nn\.Module, got str"):
        imported_module(spec, blob_dataset())


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({}, "gives no model; give exactly one of"),
        (
            {"build_model": small_mlp, "onnx_file": "m.onnx"},
            "gives build_model .* and onnx_file .*; give exactly one",
        ),
    ],
    ids=["none", "two"],
)
def test_a_spec_gives_exactly_one_model_form(parts: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ModelSpec(name="imported", load_data=blob_dataset, **parts)


def test_spec_forms_are_named() -> None:
    assert load_spec("tests.fixtures.specs:good").form == "train"
    assert load_spec("tests.fixtures.import_specs:torch_module").form == "torch"
    relative = ModelSpec(name="m", load_data=blob_dataset, onnx_file="models/m.onnx")
    assert relative.onnx_path() == Path.cwd() / "models" / "m.onnx"


def regression_spec(module: nn.Module) -> ModelSpec:
    from tests.unit.test_regression_training import linear_dataset

    return ModelSpec(
        name="imported-regressor",
        load_data=linear_dataset,
        load_model=lambda: module,
        task="regression",
    )


def test_a_regressor_trained_elsewhere_is_imported_with_its_validation_rmse() -> None:
    import torch

    from tests.unit.test_regression_training import linear_dataset

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    imported = imported_module(regression_spec(module), linear_dataset())
    assert (imported.task, imported.n_outputs, imported.n_classes) == ("regression", 1, None)
    assert imported.validation_metric == "rmse" and imported.best_validation > 0


def test_a_regressor_import_with_more_than_one_output_is_refused() -> None:
    from tests.unit.test_regression_training import linear_dataset

    module = nn.Sequential(nn.Linear(3, 2)).eval()
    with pytest.raises(
        ModelImportError,
        match=r"gives 2 values per row; a regressor \(task='regression'\) gives one predicted",
    ):
        imported_module(regression_spec(module), linear_dataset())
