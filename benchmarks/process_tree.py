"""A server's processes, found by ancestry in /proc: the CPU they use and their cleanup.

A server may put its workers in process groups or sessions of their own (BentoML's
workers call setsid, Ray's actors setpgid), so neither a process group nor a session
holds all of them; being a descendant of the process the benchmark started does.
"""

import contextlib
import os
import signal
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User and system CPU time of `root` and its live descendants."""
    total = 0
    for pid in descendants(root):
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def identities(pids: list[int]) -> list[tuple[int, str]]:
    """(pid, start time) of each live process: a pid alone may be reused by then."""
    found = []
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            found.append((pid, fields[19]))  # starttime
    return found


def kill_all(identified: list[tuple[int, str]]) -> None:
    """SIGKILL each process still alive as the same process (same pid and start time)."""
    for pid, started in identified:
        fields = _stat(pid)
        if fields is not None and fields[19] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
