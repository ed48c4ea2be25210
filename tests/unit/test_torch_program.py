"""A torch module stored as data rebuilds without its defining code, answers as the
original did, stays prunable, and a tampered or unsupported program is refused by name."""

import json
import sys
import types

import pytest
import torch
from torch import nn

from chassis import torch_program
from chassis.compression.prune import prune_structured
from chassis.errors import ProgramError
from chassis.models import MLP, Standardized


class Residual(nn.Module):
    """Batch norm, a residual connection, a parameter read directly and a lifted constant."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 6)
        self.norm = nn.BatchNorm1d(6)
        self.scale = nn.Parameter(torch.full((6,), 0.5))
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu(self.norm(self.stem(x)))
        h = h * self.scale + h
        return self.head(h.view(h.shape[0], -1)) + torch.tensor([0.0, 1.0, 2.0])


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.reshape(-1, 1, 4, 4)
        return self.head(self.flatten(self.pool(torch.relu(self.conv(image)))))


def trained_like(module: nn.Module) -> nn.Module:
    """Weights and batch-norm statistics that differ from a fresh build's."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter))
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return module.eval()


def round_trip(module: nn.Module, example: torch.Tensor) -> nn.Module:
    document = torch_program.capture(module, example)
    return torch_program.rebuild(json.loads(json.dumps(document)), module.state_dict())


@pytest.mark.parametrize(
    ("module", "width"),
    [
        (Standardized(MLP(4, 3, hidden=(8, 8)), torch.randn(4), torch.rand(4) + 0.5), 4),
        (Standardized(Residual(), torch.randn(4), torch.rand(4) + 0.5), 4),
        (SmallCnn(), 16),
    ],
    ids=["standardized-mlp", "residual-batch-norm", "cnn"],
)
def test_rebuilt_module_answers_exactly_as_the_original(module: nn.Module, width: int) -> None:
    module = trained_like(module)
    example = torch.randn(7, width)
    rebuilt = round_trip(module, example)
    assert isinstance(rebuilt, Standardized) == isinstance(module, Standardized)
    with torch.no_grad():
        assert torch.equal(rebuilt(example), module(example))


def test_rebuild_needs_none_of_the_code_that_defined_the_module() -> None:
    user_code = types.ModuleType("user_model_code")
    exec(  # the user's spec module, which is then deleted
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = nn.Linear(4, 5); self.b = nn.Linear(5, 2)\n"
        "    def forward(self, x):\n"
        "        return self.b(nn.functional.gelu(self.a(x)))\n",
        user_code.__dict__,
    )
    sys.modules["user_model_code"] = user_code
    module = trained_like(user_code.Net())
    example = torch.randn(3, 4)
    document = json.loads(json.dumps(torch_program.capture(module, example)))
    state = module.state_dict()
    expected = module(example).detach()
    del sys.modules["user_model_code"], user_code, module

    rebuilt = torch_program.rebuild(document, state)
    assert "user_model_code" not in json.dumps(document)
    with torch.no_grad():
        assert torch.equal(rebuilt(example), expected)


def test_rebuilt_program_is_still_prunable() -> None:
    module = trained_like(Standardized(MLP(4, 3, hidden=(8, 8)), torch.zeros(4), torch.ones(4)))
    example = torch.randn(16, 4)
    pruned = prune_structured(round_trip(module, example), 0.5, example)
    assert pruned.widths_after == {"model.hidden.0": 4, "model.hidden.1": 4}
    assert pruned.module(example).shape == (16, 3)


def test_forward_that_branches_on_its_input_is_refused_with_the_reason() -> None:
    class Branching(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(ProgramError, match=r"cannot trace Branching\.forward"):
        torch_program.capture(Branching(), torch.randn(2, 4))


def shift(x: torch.Tensor) -> torch.Tensor:
    return x + 1


torch.fx.wrap("shift")  # a user's function kept as a call in the graph, not traced through


def test_function_outside_torch_is_refused_by_name() -> None:
    class CallsUserFunction(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return shift(x)

    with pytest.raises(ProgramError, match=r"calls .*shift, which is not a torch"):
        torch_program.capture(CallsUserFunction(), torch.randn(2, 4))


def stored_mlp() -> tuple[dict, dict[str, torch.Tensor]]:
    module = trained_like(Standardized(MLP(4, 3, hidden=(8,)), torch.zeros(4), torch.ones(4)))
    document = json.loads(json.dumps(torch_program.capture(module, torch.randn(2, 4))))
    return document, module.state_dict()


def first_call(document: dict) -> dict:
    return next(node for node in document["nodes"] if node["op"] == "call_function")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d: first_call(d).update(target="os.system"), "does not resolve"),
        (lambda d: first_call(d).update(op="call_method", target="__reduce__"), "not a tensor"),
        (
            lambda d: d["layers"]["head"].update(repr="Linear(__import__('os').getpid(), 3)"),
            "does not print its constructor",
        ),
        (lambda d: d["layers"]["head"].update(repr="Linear(8, 3, bias=False)"), "rebuilt as"),
        (lambda d: d.update(format=99), "format 99"),
    ],
    ids=["foreign-function", "private-method", "code-in-layer", "repr-mismatch", "format"],
)
def test_tampered_program_is_refused(tamper, message: str) -> None:
    document, state = stored_mlp()
    tamper(document)
    with pytest.raises(ProgramError, match=message):
        torch_program.rebuild(document, state)


def test_weights_that_do_not_fit_are_refused() -> None:
    document, state = stored_mlp()
    state["model.head.weight"] = torch.zeros(5, 8)
    with pytest.raises(ProgramError, match="weights do not fit"):
        torch_program.rebuild(document, state)
    del state["model.head.weight"]
    with pytest.raises(ProgramError, match=r"lack .*model\.head\.weight"):
        torch_program.rebuild(document, state)
