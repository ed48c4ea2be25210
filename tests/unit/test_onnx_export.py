import numpy as np
import pytest
import torch

from chassis.digests import sha256_file
from chassis.errors import ExportError, ParityError
from chassis.models import MLP
from chassis.onnx_export import check_parity, export_and_verify, export_onnx
from chassis.runtime import create_session, run_batches


def test_export_has_dynamic_batch_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    module = MLP(5, 3, hidden=(8,)).eval()
    x = np.random.default_rng(0).normal(size=(37, 5)).astype(np.float32)
    exported = export_and_verify(module, 5, x, tmp_path / "m.onnx", tolerance=1e-4)
    assert exported.parity_max_abs_diff is not None and exported.parity_max_abs_diff < 1e-4
    assert exported.sha256 == sha256_file(tmp_path / "m.onnx")
    assert exported.size_bytes == (tmp_path / "m.onnx").stat().st_size
    session = create_session(tmp_path / "m.onnx")
    assert run_batches(session, x[:1]).shape == (1, 3)
    assert run_batches(session, x).shape == (37, 3)


def test_parity_failure_is_reported_with_the_difference(tmp_path):
    torch.manual_seed(0)
    module = MLP(5, 3, hidden=(8,)).eval()
    path = export_onnx(module, 5, tmp_path / "m.onnx")
    with torch.no_grad():
        module.head.bias.add_(0.5)  # torch now disagrees with the exported graph
    x = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(ParityError, match=r"differs from torch by 0.5 \(tolerance 0.0001\)"):
        check_parity(module, path, x, tolerance=1e-4)


class DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent Python control flow cannot be exported
            return x * 2
        return x


def test_model_that_fails_to_export(tmp_path):
    with pytest.raises(ExportError, match=r"torch.onnx.export failed for DataDependent"):
        export_onnx(DataDependent(), 3, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
