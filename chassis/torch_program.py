"""A torch module as data: its torch.fx graph and its layers, rebuilt without the code that
defined it and without pickle.

A registered version keeps this document beside its weights, so judging, compressing or
rolling back to it never imports the spec's current `build_model` (which may have changed
since). The document holds:

- the module's forward pass as a torch.fx graph, each node's function named by where it
  lives (`torch.relu`, `operator.add`, `torch.nn.functional.gelu`; nothing else resolves);
- each layer the graph calls (torch.fx stops at torch.nn's own layers) as its class name and
  the constructor arguments its `repr` prints, parsed as literals, never evaluated;
- each parameter and buffer the graph reads, by shape and dtype (values come from the
  weights file), and the few constants torch.fx lifts out of `forward`, by value.

Chassis's own `Standardized` wrapper is kept as a wrapper, so the rebuilt module is one
distillation and pruning recognise. Whatever cannot be stored this way (a forward pass that
branches on its input, a layer outside torch.nn, a custom autograd function) raises
`ProgramError` naming it; `describe` then says why the version has no program.
"""

import ast
import builtins
import json
import math
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn.functional as functional
from torch import nn

from chassis.errors import ProgramError
from chassis.models import Standardized

FORMAT = 1
# Constants lifted out of forward are stored by value: fine for a scale, not for a table.
MAX_INLINE_CONSTANT = 4096

# Where a graph's functions may come from, in lookup order. Names resolve only here.
NAMESPACES: Mapping[str, ModuleType] = {
    "operator": operator,
    "torch": torch,
    "torch.nn.functional": functional,
    "math": math,
}
BUILTINS = {"getattr": builtins.getattr, "len": builtins.len}

Document = dict[str, Any]


def describe(module: nn.Module) -> Document:
    """The module as a JSON-ready document; raises ProgramError naming what cannot be kept."""
    inner = module.model if isinstance(module, Standardized) else module
    try:
        graph = fx.symbolic_trace(inner)
    except Exception as error:
        raise ProgramError(
            f"torch.fx cannot trace {type(inner).__name__}.forward: {_first_line(error)}"
        ) from error
    state_names = set(dict(inner.state_dict()).keys())
    parameters = {name for name, _ in inner.named_parameters()}
    return {
        "format": FORMAT,
        "standardized": isinstance(module, Standardized),
        "layers": {
            _node_target(node): _describe_layer(graph.get_submodule(_node_target(node)))
            for node in graph.graph.nodes
            if node.op == "call_module"
        },
        "attributes": {
            _node_target(node): _describe_attribute(
                graph, _node_target(node), state_names, parameters
            )
            for node in graph.graph.nodes
            if node.op == "get_attr"
        },
        "nodes": [_describe_node(node) for node in graph.graph.nodes],
    }


def capture(module: nn.Module, example: torch.Tensor, tolerance: float = 1e-5) -> Document:
    """`describe`, then rebuild from the document and check the rebuilt module answers
    `example` as the original does: a program is stored only once it is known to load."""
    document = describe(module)
    state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    rebuilt = rebuild(json.loads(json.dumps(document)), state)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected, actual = module(example), rebuilt(example)
    finally:
        module.train(was_training)
    if not isinstance(expected, torch.Tensor) or not isinstance(actual, torch.Tensor):
        raise ProgramError("the module does not return one tensor; its program cannot be checked")
    if expected.shape != actual.shape or not torch.allclose(
        expected, actual, atol=tolerance, rtol=tolerance
    ):
        raise ProgramError(
            "the rebuilt program answers differently from the module "
            f"(max |diff| {float((expected - actual).abs().max()):.2e}); "
            "its forward pass likely depends on something torch.fx does not record"
        )
    return document


def rebuild(document: Document, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The module again, in eval mode, from its document and its weights (checked to fit)."""
    if document.get("format") != FORMAT:
        raise ProgramError(
            f"torch program format {document.get('format')!r} is not one this Chassis reads "
            f"({FORMAT})"
        )
    root = nn.Module()
    for path, layer in cast(dict[str, Document], document["layers"]).items():
        _set_path(root, path, _rebuild_layer(path, layer))
    constants: set[str] = set()
    for path, attribute in cast(dict[str, Document], document["attributes"]).items():
        _set_path(root, path, _rebuild_attribute(path, attribute))
        if attribute["kind"] == "constant":
            constants.add(path)
    graph = fx.Graph()
    values: dict[str, fx.Node] = {}
    for node in cast(list[Document], document["nodes"]):
        values[node["name"]] = _rebuild_node(graph, node, values)
    inner = fx.GraphModule(root, graph)
    module: nn.Module = inner
    if document.get("standardized"):
        width = _input_width(state)
        module = Standardized(inner, torch.zeros(width), torch.ones(width))
        constants = {f"model.{name}" for name in constants}
    _load_state(module, state, constants)
    return module.eval()


def save(document: Document, path: Path) -> None:
    path.write_text(json.dumps(document, separators=(",", ":")))


def load(program_path: Path, weights_path: Path) -> nn.Module:
    """A stored program with its stored weights (safetensors: nothing is unpickled)."""
    from chassis.weights import load_weights

    try:
        document = json.loads(program_path.read_text())
    except (OSError, ValueError) as error:
        raise ProgramError(f"{program_path.name} is not a torch program: {error}") from error
    return rebuild(document, load_weights(weights_path))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _node_target(node: fx.Node) -> str:
    assert isinstance(node.target, str), node
    return node.target


def _describe_layer(layer: nn.Module) -> Document:
    """A torch.nn layer as its class and the constructor arguments its repr prints."""
    cls = type(layer)
    if not cls.__module__.startswith("torch.nn.") or getattr(nn, cls.__name__, None) is not cls:
        raise ProgramError(f"layer {cls.__module__}.{cls.__name__} is not one of torch.nn's")
    if any(True for _ in layer.children()):
        raise ProgramError(f"layer {cls.__name__} has sub-layers; it cannot be stored by repr")
    text = repr(layer)
    _parse_constructor(text)  # refuse now, not when a later run tries to load it
    return {"class": cls.__name__, "repr": text}


def _parse_constructor(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """`Linear(in_features=4, bias=True)` -> ("Linear", [], {...}), literals only."""
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError("not a constructor call")
        arguments = [ast.literal_eval(value) for value in call.args]
        keywords = {str(keyword.arg): ast.literal_eval(keyword.value) for keyword in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise ProgramError(f"layer {text!r} does not print its constructor: {error}") from error
    return call.func.id, arguments, keywords


def _rebuild_layer(path: str, layer: Document) -> nn.Module:
    name, arguments, keywords = _parse_constructor(str(layer["repr"]))
    cls = getattr(nn, name, None)
    if name != layer["class"] or not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ProgramError(f"layer {path}: {name!r} is not a torch.nn layer")
    try:
        rebuilt = cls(*arguments, **keywords)
    except Exception as error:
        raise ProgramError(f"layer {path} ({layer['repr']}) cannot be built: {error}") from error
    # A repr that leaves out a constructor argument would rebuild a different layer.
    if repr(rebuilt) != layer["repr"]:
        raise ProgramError(f"layer {path}: rebuilt as {rebuilt!r}, stored as {layer['repr']}")
    return rebuilt


def _describe_attribute(
    graph: fx.GraphModule, path: str, state_names: set[str], parameters: set[str]
) -> Document:
    value = graph.get_parameter(path) if path in parameters else _get_tensor(graph, path)
    shape, dtype = list(value.shape), str(value.dtype).removeprefix("torch.")
    if path in parameters:
        return {"kind": "parameter", "shape": shape, "dtype": dtype}
    if path in state_names:
        return {"kind": "buffer", "shape": shape, "dtype": dtype}
    if value.numel() > MAX_INLINE_CONSTANT:
        raise ProgramError(
            f"forward creates a {tuple(value.shape)} constant tensor ({path}); "
            "register it as a buffer so it is stored with the weights"
        )
    return {"kind": "constant", "shape": shape, "dtype": dtype, "values": value.tolist()}


def _get_tensor(graph: fx.GraphModule, path: str) -> torch.Tensor:
    owner, _, attribute = path.rpartition(".")
    value = getattr(graph.get_submodule(owner) if owner else graph, attribute)
    if not isinstance(value, torch.Tensor):
        raise ProgramError(f"forward reads {path}, a {type(value).__name__}, not a tensor")
    return value


def _rebuild_attribute(path: str, attribute: Document) -> torch.Tensor:
    dtype = getattr(torch, str(attribute["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ProgramError(f"attribute {path}: unknown dtype {attribute['dtype']!r}")
    if attribute["kind"] == "constant":
        return torch.tensor(attribute["values"], dtype=dtype).reshape(attribute["shape"])
    empty = torch.zeros(attribute["shape"], dtype=dtype)
    return nn.Parameter(empty) if attribute["kind"] == "parameter" else empty


def _set_path(root: nn.Module, path: str, value: nn.Module | torch.Tensor) -> None:
    """Attach `value` at a dotted path, creating plain containers on the way."""
    *parents, leaf = path.split(".")
    owner = root
    for part in parents:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = cast(nn.Module, getattr(owner, part))
    if isinstance(value, nn.Parameter):
        owner.register_parameter(leaf, value)
    elif isinstance(value, torch.Tensor):
        owner.register_buffer(leaf, value)
    else:
        owner.add_module(leaf, value)


def _function_name(function: Callable[..., Any]) -> str:
    name = getattr(function, "__name__", "")
    for key, value in BUILTINS.items():
        if function is value:
            return f"builtins.{key}"
    for namespace_name, namespace in NAMESPACES.items():
        if name and getattr(namespace, name, None) is function:
            return f"{namespace_name}.{name}"
    where = f"{getattr(function, '__module__', '?')}.{name}" if name else repr(function)
    raise ProgramError(
        f"forward calls {where}, which is not a torch, "
        "torch.nn.functional, operator or math function"
    )


def _resolve_function(qualified: str) -> Callable[..., Any]:
    namespace_name, _, name = qualified.rpartition(".")
    if namespace_name == "builtins" and name in BUILTINS:
        return BUILTINS[name]
    namespace = NAMESPACES.get(namespace_name)
    function = getattr(namespace, name, None) if namespace is not None else None
    if function is None or not callable(function) or name.startswith("_"):
        raise ProgramError(f"stored graph calls {qualified!r}, which does not resolve")
    return cast(Callable[..., Any], function)


def _describe_node(node: fx.Node) -> Document:
    described: Document = {
        "op": node.op,
        "name": node.name,
        "args": _encode(node.args, node),
        "kwargs": _encode(node.kwargs, node),
    }
    if node.op == "call_function":
        described["target"] = _function_name(cast(Callable[..., Any], node.target))
    else:
        described["target"] = _node_target(node)
    return described


def _rebuild_node(graph: fx.Graph, node: Document, values: dict[str, fx.Node]) -> fx.Node:
    op, target = str(node["op"]), str(node["target"])
    args = _decode(node["args"], values)
    kwargs = _decode(node["kwargs"], values)
    if op == "placeholder":
        made = graph.placeholder(target)
    elif op == "get_attr":
        made = graph.get_attr(target)
    elif op == "call_module":
        made = graph.call_module(target, args, kwargs)
    elif op == "call_method":
        if target.startswith("_") or not hasattr(torch.Tensor, target):
            raise ProgramError(f"stored graph calls method {target!r}, not a tensor method")
        made = graph.call_method(target, args, kwargs)
    elif op == "call_function":
        made = graph.call_function(_resolve_function(target), args, kwargs)
    elif op == "output":
        made = graph.output(args[0])
    else:
        raise ProgramError(f"stored graph has a node of unknown kind {op!r}")
    made.name = str(node["name"])
    return made


def _encode(value: Any, node: fx.Node) -> Any:
    """A node argument as JSON: nodes by name, containers tagged, literals as they are."""
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple | list):
        items = [_encode(item, node) for item in cast(tuple[Any, ...] | list[Any], value)]
        return {"tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        mapping = cast(Mapping[str, Any], value)
        return {"dict": [[key, _encode(item, node)] for key, item in mapping.items()]}
    if isinstance(value, slice):
        bounds = cast("slice[Any, Any, Any]", value)
        parts: list[Any] = [bounds.start, bounds.stop, bounds.step]
        return {"slice": [_encode(part, node) for part in parts]}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if value is Ellipsis:
        return {"ellipsis": True}
    raise ProgramError(
        f"node {node.name} ({node.op} {node.target}) takes a {type(value).__name__}, "
        "which a stored graph cannot hold"
    )


def _decode(value: Any, values: dict[str, fx.Node]) -> Any:
    if isinstance(value, list):
        return [_decode(item, values) for item in cast(list[Any], value)]
    if not isinstance(value, dict):
        return value
    tagged = cast(dict[str, Any], value)
    (tag, content), *rest = tagged.items() if tagged else [("", None)]
    if rest or not tag:
        raise ProgramError(f"stored graph has an argument it cannot read: {tagged!r}")
    if tag == "node":
        if content not in values:
            raise ProgramError(f"stored graph uses {content!r} before defining it")
        return values[content]
    decoders: dict[str, Callable[[Any], Any]] = {
        "float": float,
        "tuple": lambda items: tuple(_decode(items, values)),
        "dict": lambda pairs: {str(k): _decode(item, values) for k, item in pairs},
        "slice": lambda parts: slice(*_decode(parts, values)),
        "dtype": lambda name: _dtype(str(name)),
        "device": lambda name: torch.device(str(name)),
        "ellipsis": lambda _: Ellipsis,
    }
    if tag not in decoders:
        raise ProgramError(f"stored graph has an argument of unknown kind {tag!r}")
    return decoders[tag](content)


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ProgramError(f"stored graph names an unknown dtype {name!r}")
    return dtype


def _input_width(state: Mapping[str, torch.Tensor]) -> int:
    if "mean" not in state:
        raise ProgramError("the program is standardized but its weights hold no 'mean'")
    return int(state["mean"].numel())


def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], constants: set[str]) -> None:
    """The weights into the rebuilt module: every parameter and buffer the graph reads must
    be there with its shape. Weights the forward pass never reads are left out."""
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as error:
        problem = _first_line(error)
        raise ProgramError(f"weights do not fit the stored program: {problem}") from error
    missing_keys: list[str] = list(result.missing_keys)
    missing = sorted(set(missing_keys) - constants)
    if missing:
        raise ProgramError("weights lack what the stored program reads: " + ", ".join(missing))
