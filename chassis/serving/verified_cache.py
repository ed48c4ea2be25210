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
from typing import cast
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
class CachedText:
    """A text version's tokenizer file (inside the version's folder), its digest when it
    verified, and its TAG_TEXT_INPUT settings as recorded: what rebuilds its TextEncoder."""

    tokenizer_path: Path
    tokenizer_sha256: str
    settings: str


@dataclass(frozen=True)
class CachedVersion:
    onnx_path: Path
    sha256: str
    feature_names: list[str]
    verified_at: float
    task: Task = DEFAULT_TASK
    text: CachedText | None = None  # None: a tabular version


def remember(
    directory: Path,
    onnx_path: Path,
    sha256: str,
    feature_names: list[str],
    task: Task = DEFAULT_TASK,
    text: CachedText | None = None,
) -> None:
    """Record that `onnx_path` (inside `directory`) verified as `sha256`, and a text
    version's tokenizer (inside `directory` too) as `text.tokenizer_sha256`; atomic."""
    manifest: dict[str, object] = {
        "onnx": onnx_path.name,
        "sha256": sha256,
        "feature_names": feature_names,
        "verified_at": time.time(),
        "task": task,
    }
    if text is not None:
        manifest["text_input"] = {
            "tokenizer": text.tokenizer_path.relative_to(directory).as_posix(),
            "tokenizer_sha256": text.tokenizer_sha256,
            "settings": text.settings,
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
        text = _recorded_text(directory, manifest.get("text_input"))
    except (OSError, ValueError, KeyError, TypeError, ChassisError):
        return None
    if onnx_path.parent != directory or not onnx_path.is_file():
        return None
    _check(name, version, onnx_path, expected)
    if text is not None:
        _check(name, version, text.tokenizer_path, text.tokenizer_sha256)
    return CachedVersion(onnx_path, expected, feature_names, verified_at, task, text)


def verified_at(cache_dir: Path, name: str, version: int) -> float | None:
    """When the kept copy of a version was verified against the registry (its manifest's
    time, bytes not hashed again); None when there is no readable manifest."""
    try:
        manifest = json.loads((version_dir(cache_dir, name, version) / MANIFEST).read_text())
        return float(manifest["verified_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recorded_text(directory: Path, recorded: object) -> CachedText | None:
    """The manifest's text entry; KeyError/TypeError/ValueError when it is malformed or
    names a file outside the version's folder or a missing one (the copy is then unusable)."""
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        raise TypeError("text_input must be an object")
    entry = cast(dict[str, object], recorded)
    path = (directory / str(entry["tokenizer"])).resolve()
    if not path.is_relative_to(directory.resolve()) or not path.is_file():
        raise ValueError(f"no tokenizer file {path} in {directory}")
    return CachedText(path, str(entry["tokenizer_sha256"]), str(entry["settings"]))


def _check(name: str, version: int, path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{name} v{version}: the local copy changed since it was verified ({path.name}: "
            f"expected sha256 {expected}, actual {actual}); refusing to load it",
            expected,
            actual,
        )
