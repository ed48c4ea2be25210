"""Where a Python process starts listening, and a stand-in that refuses and records it.

Stdlib sockets (asyncio's own event loop among them) listen through `socket.socket.listen`;
uvloop, which uvicorn prefers when it is installed, listens inside libuv, so its servers are
caught where they are created.
"""

import importlib.abc
import importlib.util
import socket
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn

Record = Callable[[str], None]


def listening_entry_points(uvloop: ModuleType | None) -> list[tuple[type, str]]:
    points: list[tuple[type, str]] = [(socket.socket, "listen")]
    if uvloop is not None:
        points += [(uvloop.Loop, "create_server"), (uvloop.Loop, "create_unix_server")]
    return points


def refusal(record: Record, who: str, where: str) -> Callable[..., NoReturn]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        what = f"{who} started a server ({where})"
        record(what)
        raise OSError(f"unit tests start no servers: {what}")

    return refuse


def refuse_servers_for_good(record: Record) -> None:
    """For a subprocess: patch sockets now, and uvloop when (if ever) it is imported, so a
    process that never uses uvloop does not pay for importing it."""
    patch(record, listening_entry_points(None))
    sys.meta_path.insert(0, _PatchUvloopOnImport(record))


def patch(record: Record, points: Sequence[tuple[type, str]]) -> None:
    who = "the subprocess `" + " ".join([sys.executable, *sys.argv]) + "`"
    for owner, name in points:
        setattr(owner, name, refusal(record, who, where(owner, name)))


def where(owner: type, name: str) -> str:
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


class _PatchUvloopOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, record: Record) -> None:
        self.record = record

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "uvloop":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module
        record = self.record

        def exec_then_patch(module: ModuleType) -> None:
            run_module(module)
            patch(record, listening_entry_points(module)[1:])

        spec.loader.exec_module = exec_then_patch
        return spec
