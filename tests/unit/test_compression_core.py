"""Compression steps on tiny models and the blob dataset: seconds, no servers."""

import numpy as np
import onnx
import pytest
import torch

from chassis.compression import candidates as names
from chassis.compression.classification import (
    ClassifierSetup,
    CompressionOptions,
    build_classifier_candidates,
)
from chassis.compression.distill import distill_classifier, wrap_like_teacher
from chassis.compression.measure import (
    MeasureSettings,
    classification_task,
    embedding_task,
    latency_against,
    measure_all,
    onnx_parameter_count,
)
from chassis.compression.prune import prune_structured
from chassis.compression.quantize import (
    check_calibration_data,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from chassis.compression.select import SelectionPolicy, select_candidate
from chassis.data import features, labels
from chassis.errors import CalibrationDataError, CompressionError, ExportError
from chassis.models import MLP, Standardized
from chassis.modelspec import TrainingConfig
from chassis.onnx_export import export_onnx
from chassis.runtime import create_session, run_batches
from chassis.training import train_classifier
from tests.fixtures.specs import blob_dataset, blobs

FAST_MEASURE = MeasureSettings(threads=1, batch_sizes=(1, 8), warmup=1, repeats=3)


def wide_mlp(n_features, n_classes):
    return MLP(n_features, n_classes, hidden=(32, 16))


def tiny_student(n_features, n_classes):
    return MLP(n_features, n_classes, hidden=(4,))


@pytest.fixture(scope="module")
def blob_setup(tmp_path_factory):
    dataset = blob_dataset(blobs(rows=300, features=6, classes=3))
    trained = train_classifier(
        wide_mlp, dataset, TrainingConfig(epochs=8, batch_size=16, learning_rate=1e-2)
    )
    workdir = tmp_path_factory.mktemp("blobs")
    onnx_path = export_onnx(trained.module, 6, workdir / "baseline.onnx")
    setup = ClassifierSetup(
        baseline=trained.module,
        baseline_onnx=onnx_path,
        n_features=6,
        n_classes=3,
        x_train=features(dataset.train, dataset),
        y_train=labels(dataset.train, dataset),
        x_val=features(dataset.validation, dataset),
        y_val=labels(dataset.validation, dataset),
        build_student=tiny_student,
    )
    # The fixture's blob split keeps rows 100+ as test; use them all.
    x_test = features(dataset.test, dataset)
    y_test = labels(dataset.test, dataset)
    return setup, x_test, y_test


def agreement(path_a, path_b, x):
    a = run_batches(create_session(path_a), x).argmax(axis=1)
    b = run_batches(create_session(path_b), x).argmax(axis=1)
    return float((a == b).mean())


def test_dynamic_and_static_int8_are_valid_onnx_that_agree_with_fp32(blob_setup, tmp_path):
    setup, x_test, _ = blob_setup
    dynamic = quantize_dynamic_int8(setup.baseline_onnx, tmp_path / "d.onnx")
    static = quantize_static_int8(
        setup.baseline_onnx,
        tmp_path / "s.onnx",
        setup.x_train,
        input_name="features",
        per_channel=True,
        method="minmax",
    )
    for path in (dynamic, static):
        onnx.checker.check_model(str(path))
        assert agreement(setup.baseline_onnx, path, x_test) > 0.9
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(dynamic)).graph.node}
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(static)).graph.node}
    assert dynamic.stat().st_size < setup.baseline_onnx.stat().st_size


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_calibration_data_with_nan_or_inf_is_refused(blob_setup, tmp_path, bad):
    setup, _, _ = blob_setup
    calibration = setup.x_train.copy()
    calibration[3, 2] = bad
    with pytest.raises(CalibrationDataError, match=r"1 NaN or infinite value\(s\) in 1 row"):
        quantize_static_int8(
            setup.baseline_onnx, tmp_path / "s.onnx", calibration, input_name="features"
        )
    assert not (tmp_path / "s.onnx").exists()


def test_calibration_data_shape_is_checked():
    with pytest.raises(CalibrationDataError, match="non-empty 2-D"):
        check_calibration_data(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(CalibrationDataError, match="has 3 feature column"):
        check_calibration_data(np.zeros((5, 3), dtype=np.float32), n_features=4)


def test_structured_pruning_removes_neurons_and_shrinks_the_onnx_file(blob_setup, tmp_path):
    setup, x_test, _ = blob_setup
    result = prune_structured(setup.baseline, 0.5, torch.from_numpy(setup.x_train[:8]))
    assert list(result.widths_before.values()) == [32, 16]
    assert list(result.widths_after.values()) == [16, 8]
    pruned = result.module
    assert isinstance(pruned, Standardized)
    assert torch.equal(pruned.mean, setup.baseline.mean)  # the scaler survives pruning
    path = export_onnx(pruned, 6, tmp_path / "pruned.onnx")
    assert path.stat().st_size < setup.baseline_onnx.stat().st_size
    assert onnx_parameter_count(path) < onnx_parameter_count(setup.baseline_onnx)
    # Pruning keeps the strongest neurons: without any fine-tune it still mostly agrees.
    assert agreement(setup.baseline_onnx, path, x_test) > 0.6


def test_pruning_keeps_at_least_one_neuron_and_refuses_bad_fractions(blob_setup):
    setup, _, _ = blob_setup
    example = torch.from_numpy(setup.x_train[:8])
    assert list(prune_structured(setup.baseline, 0.999, example).widths_after.values()) == [1, 1]
    for fraction in (-0.1, 1.0, float("nan")):
        with pytest.raises(CompressionError, match=r"prune fraction must be in \[0, 1\)"):
            prune_structured(setup.baseline, fraction, example)


def test_distilled_student_keeps_teacher_scaler_and_learns(blob_setup):
    setup, x_test, y_test = blob_setup
    torch.manual_seed(0)
    student = wrap_like_teacher(tiny_student(6, 3), setup.baseline)
    student = distill_classifier(
        setup.baseline,
        student,
        setup.x_train,
        setup.y_train,
        setup.x_val,
        setup.y_val,
        temperature=3.0,
        alpha=0.5,
        epochs=60,
    )
    assert isinstance(student, Standardized) and isinstance(setup.baseline, Standardized)
    assert torch.equal(student.std, setup.baseline.std)
    with torch.inference_mode():
        predicted = student(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    assert (predicted == y_test).mean() > 0.8
    with pytest.raises(CompressionError, match="temperature must be > 0"):
        distill_classifier(
            setup.baseline,
            student,
            setup.x_train,
            setup.y_train,
            setup.x_val,
            setup.y_val,
            temperature=0.0,
        )


def test_every_candidate_is_built_measured_and_over_compression_is_rejected(blob_setup, tmp_path):
    setup, x_test, y_test = blob_setup
    options = CompressionOptions(
        prune_fraction=0.999, finetune_epochs=0, distill_epochs=5, calibration_rows=64
    )
    built = build_classifier_candidates(setup, options, tmp_path)
    assert [c.name for c in built.candidates] == list(names.CANDIDATE_NAMES)
    assert built.skipped == {}
    pruned = next(c for c in built.candidates if c.name == names.PRUNED)
    assert pruned.recipe["hidden_after"] == [1, 1]

    task = classification_task(y_test, 3)
    measured = measure_all(built.candidates, {"features": x_test}, task, FAST_MEASURE, "baseline")
    by_name = {m.name: m for m in measured}
    assert by_name["baseline"].quality["agreement"] == 1.0
    assert set(by_name["baseline"].latency_ms) == {"b1_p50", "b1_p99", "b8_p50", "b8_p99"}
    for m in measured:
        assert m.size_bytes > 0 and m.parameter_count > 0 and len(m.sha256) == 64

    # One neuron per layer and no fine-tune: over-compressed, so selection must reject it.
    crushed = [by_name["baseline"], by_name[names.PRUNED]]
    selection = select_candidate(crushed, "baseline", "accuracy", SelectionPolicy())
    assert selection.selected == "baseline" and selection.fallback_to_baseline
    assert not next(v for v in selection.verdicts if v.name == names.PRUNED).passed
    # With every candidate on the table, the winner is one that passed.
    winner = select_candidate(measured, "baseline", "accuracy", SelectionPolicy()).selected
    assert winner != names.PRUNED


def test_candidates_without_student_are_skipped_with_reason(blob_setup, tmp_path):
    setup, _, _ = blob_setup
    no_student = ClassifierSetup(**{**setup.__dict__, "build_student": None})
    options = CompressionOptions(candidates=("distilled", "dynamic-int8"))
    built = build_classifier_candidates(no_student, options, tmp_path)
    assert [c.name for c in built.candidates] == ["baseline", "dynamic-int8"]
    assert built.skipped["distilled"] == "the spec defines no build_student"


class DataDependent(torch.nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_classes)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return self.linear(x)
        return -self.linear(x)


def test_student_that_fails_to_export_stops_with_export_error(blob_setup, tmp_path):
    setup, _, _ = blob_setup
    broken = ClassifierSetup(**{**setup.__dict__, "build_student": DataDependent})
    options = CompressionOptions(candidates=("distilled",), distill_epochs=1)
    with pytest.raises(ExportError, match=r"torch\.onnx\.export failed for Standardized"):
        build_classifier_candidates(broken, options, tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"candidates": ("baseline", "magic")}, "unknown candidate"),
        ({"calibration_method": "median"}, "unknown calibration method 'median'"),
        ({"prune_fraction": 1.0}, "prune fraction"),
        ({"alpha": 2.0}, "alpha must be in"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(CompressionError, match=message):
        CompressionOptions(**options)


def test_embedding_quality_is_cosine_to_baseline():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 8))
    task = embedding_task()
    assert task.evaluate(base, base)["cosine_min"] == pytest.approx(1.0)
    noisy = task.evaluate(base + rng.normal(scale=0.5, size=base.shape), base)
    assert 0.5 < noisy["cosine_mean"] < 0.999 and noisy["cosine_min"] <= noisy["cosine_mean"]


def test_a_model_timed_against_itself_is_not_shown_to_differ(blob_setup):
    setup, x_test, _ = blob_setup
    ratio = latency_against(
        setup.baseline_onnx, setup.baseline_onnx, {"features": x_test}, MeasureSettings()
    )
    assert not ratio.different and ratio.settled == 1.0
    assert ratio.rounds >= 9


def test_a_model_with_a_thousand_times_the_work_is_surely_slower(blob_setup, tmp_path):
    setup, x_test, _ = blob_setup
    heavy = export_onnx(MLP(6, 3, hidden=(1024, 1024)), 6, tmp_path / "heavy.onnx")
    ratio = latency_against(setup.baseline_onnx, heavy, {"features": x_test}, MeasureSettings())
    assert ratio.different and ratio.low > 2.0 and ratio.settled == ratio.median
