"""The rivals' virtualenv for `benchmarks/serving.py --rivals ...`: BentoML, Ray Serve and
LitServe, pinned, next to the same onnxruntime as the product's venv.

`python benchmarks/rivals_env.py` creates it (default `~/.cache/chassis-bench/rivals-venv`,
or `CHASSIS_RIVALS_VENV`) with the Python running this script, and pip installs the pins;
run again, it checks the installed versions and does nothing when they match. The
product's own venv is never touched: the rivals bring their own pins of pydantic,
starlette, fastapi and uvicorn, which would fight Chassis's. `--print-python` prints the
venv's interpreter and exits (the benchmark uses it to find the venv).
"""

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

# The versions the benchmark was written and run against (the registry's newest on
# 2026-12-03). onnxruntime, numpy and tokenizers follow the running (product) venv, so
# every server runs the same ONNX Runtime on the same file.
RIVALS = {"bentoml": "1.4.40", "ray[serve]": "2.60.0", "litserve": "0.2.19"}
SHARED = ("onnxruntime", "numpy", "tokenizers", "orjson")
DEFAULT_VENV = Path.home() / ".cache" / "chassis-bench" / "rivals-venv"


def venv_dir() -> Path:
    return Path(os.environ.get("CHASSIS_RIVALS_VENV", str(DEFAULT_VENV)))


def venv_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def pins() -> dict[str, str]:
    """requirement name -> version: the rivals' pins and the product venv's own versions."""
    shared = {name: importlib.metadata.version(name) for name in SHARED}
    return {**RIVALS, **shared}


def installed(python: Path, names: list[str]) -> dict[str, str | None]:
    """What the venv at `python` has of each distribution (extras dropped), None if absent."""
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    bare = [name.split("[")[0] for name in names]
    result = subprocess.run(
        [str(python), "-c", probe, *bare], capture_output=True, text=True, check=True
    )
    found = json.loads(result.stdout)
    return {name: found[name.split("[")[0]] for name in names}


def missing(python: Path, wanted: dict[str, str]) -> list[str]:
    if not python.is_file():
        return [f"{name}=={version}" for name, version in wanted.items()]
    have = installed(python, list(wanted))
    return [f"{name}=={version}" for name, version in wanted.items() if have[name] != version]


def ensure(directory: Path) -> Path:
    """The venv with every pin installed; pip runs only when something differs."""
    python = venv_python(directory)
    wanted = pins()
    todo = missing(python, wanted)
    if not todo:
        print(f"rivals venv up to date: {directory}", file=sys.stderr)
        return python
    if not python.is_file():
        print(f"creating {directory}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(directory)
    print(f"installing {' '.join(todo)}", file=sys.stderr)
    # Everything in one resolve, so pip cannot move an earlier pin to satisfy a later one.
    requirements = [f"{name}=={version}" for name, version in wanted.items()]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    left = missing(python, wanted)
    if left:
        raise SystemExit(f"rivals venv: pip left these unmet: {' '.join(left)}")
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--print-python", action="store_true", help="print the venv's python and exit"
    )
    args = parser.parse_args()
    if args.print_python:
        print(venv_python(venv_dir()))
        return
    try:
        ensure(venv_dir())
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"rivals venv: {' '.join(map(str, error.cmd[:4]))}... failed") from None


if __name__ == "__main__":
    main()
