"""Named fail points: deterministic fault injection for crash tests (after etcd's gofail).

Code that must survive a crash at a given step calls `failpoint("alias.after-move-1")` there.
Normally that does nothing. With

    CHASSIS_FAILPOINTS="alias.after-move-1=kill"

in the environment, the process sends itself SIGKILL at that point: no `finally`, no
`__exit__`, no atexit, exactly like `kill -9` or a lost machine. With `fail` instead, the
point raises InjectedFault (a fault the code around it handles, e.g. a model that cannot
be loaded). Several points may be listed, separated by commas or semicolons. `NAME@I`
arms it only in replica I of the local supervisor (`chassis serve --replicas N`), which
arms a replica's first start only. An unknown action or a malformed entry is refused at
the first fail point reached, naming it, so a typo cannot silently turn a crash test into
a test of the happy path.

The variable is read once, on the first call; with it unset, a fail point costs one dict
lookup on an empty dict.
"""

import os
import signal

from chassis.errors import FailpointError, InjectedFault
from chassis.serving.supervision import supervised_replica

ENV = "CHASSIS_FAILPOINTS"
ACTIONS = ("kill", "fail")

_armed: dict[str, str] | None = None


def parse(text: str) -> dict[str, str]:
    """`"a=kill, b=kill"` -> {"a": "kill", "b": "kill"}; empty entries are ignored."""
    armed: dict[str, str] = {}
    for entry in text.replace(";", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, equals, action = (part.strip() for part in entry.partition("="))
        if not name or not equals or action not in ACTIONS:
            raise FailpointError(
                f"{ENV}: {entry!r} is not NAME=ACTION with ACTION one of {', '.join(ACTIONS)}"
            )
        armed[name] = action
    return armed


def failpoint(name: str) -> None:
    """Trigger the action armed for `name`, if any (see the module docstring)."""
    global _armed
    if _armed is None:
        _armed = parse(os.environ.get(ENV, ""))
        replica = supervised_replica()
        suffix = f"@{replica}"
        # This replica's own entries, under their plain names; another replica's, dropped.
        _armed = {
            key.removesuffix(suffix): action
            for key, action in _armed.items()
            if "@" not in key or key.endswith(suffix)
        }
    action = _armed.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "fail":
        raise InjectedFault(f"fail point {name} reached ({ENV})")
