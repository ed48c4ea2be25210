"""Torch weights on disk as safetensors: loading never unpickles anything."""

from pathlib import Path

import torch
from torch import nn

from chassis.digests import sha256_file


def save_weights(module: nn.Module, path: Path) -> str:
    """Write the module's state dict (parameters and buffers); returns the file's sha256."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()
    }
    save_file(state, str(path))
    return sha256_file(path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
