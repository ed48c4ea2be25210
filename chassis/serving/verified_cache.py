"""The gateway's local copies of the versions it verified, so a restart can serve them while
the registry is unreachable.

A version lands here only after the registry's digest and gate report were checked
(`Gateway._verified`). Its manifest records the digest the bytes had then; loading from the
cache hashes the bytes again, so a file changed on disk is refused like a tampered artifact.
The cache never decides what to serve: the last split this gateway committed does.
"""

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from chassis.digests import sha256_file
from chassis.errors import ChassisError, IntegrityError
from chassis.task import DEFAULT_TASK, Task, parse_task

MANIFEST = "verified.json"


def path_component(name: str) -> str:
    """`name` as one safe path component: a registered-model name may hold '/', '..' or
    NUL, none of which may steer a path out of the gateway's folders."""
    quoted = quote(name, safe="-_.")
    return quoted if quoted not in ("", ".", "..") else f"%{quoted}"


def version_dir(cache_dir: Path, name: str, version: int) -> Path:
    return cache_dir / path_component(name) / f"v{version}"


@dataclass(frozen=True)
class CachedVersion:
    onnx_path: Path
    sha256: str
    feature_names: list[str]
    verified_at: float
    task: Task = DEFAULT_TASK


def remember(
    directory: Path,
    onnx_path: Path,
    sha256: str,
    feature_names: list[str],
    task: Task = DEFAULT_TASK,
) -> None:
    """Record that `onnx_path` (inside `directory`) verified as `sha256`; atomic."""
    manifest = {
        "onnx": onnx_path.name,
        "sha256": sha256,
        "feature_names": feature_names,
        "verified_at": time.time(),
        "task": task,
    }
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".manifest-")
    with os.fdopen(handle, "w") as file:
        json.dump(manifest, file)
    Path(temporary).replace(directory / MANIFEST)


def recall(cache_dir: Path, name: str, version: int) -> CachedVersion | None:
    """The cached copy of a version, its bytes checked again; None if there is none.
    Raises IntegrityError when the bytes no longer match what was verified."""
    directory = version_dir(cache_dir, name, version)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        onnx_path = directory / str(manifest["onnx"])
        expected = str(manifest["sha256"])
        feature_names = [str(n) for n in manifest["feature_names"]]
        verified_at = float(manifest["verified_at"])
        # A copy remembered before tasks were recorded is a classifier's.
        task = parse_task(manifest.get("task", DEFAULT_TASK), "verified copy")
    except (OSError, ValueError, KeyError, TypeError, ChassisError):
        return None
    if onnx_path.parent != directory or not onnx_path.is_file():
        return None
    actual = sha256_file(onnx_path)
    if actual != expected:
        raise IntegrityError(
            f"{name} v{version}: the local copy changed since it was verified (expected "
            f"sha256 {expected}, actual {actual}); refusing to load it"
        )
    return CachedVersion(onnx_path, expected, feature_names, verified_at, task)
