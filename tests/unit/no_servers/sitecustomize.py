"""Loaded by the Python subprocesses unit tests start (tests/unit/conftest.py puts this folder
first on their PYTHONPATH): a server they start is refused and written down in the file named
by NO_SERVERS_LOG, so the unit test that started it fails and names it.
"""

import importlib
import os
import sys
from pathlib import Path


def _install() -> None:
    log = os.environ.get("NO_SERVERS_LOG")
    if not log:
        return
    from no_servers_guard import refuse_servers_for_good

    def record(what: str) -> None:
        with Path(log).open("a", encoding="utf-8") as lines:
            lines.write(what + "\n")

    refuse_servers_for_good(record)


def _load_the_sitecustomize_this_one_shadows() -> None:
    here = Path(__file__).resolve().parent
    path = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    this = sys.modules.pop(__name__)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        sys.modules[__name__] = this  # none other: Python's import expects this one there
    finally:
        sys.path[:] = path


_install()
_load_the_sitecustomize_this_one_shadows()
