"""Serving against rivals: Chassis's gateway vs BentoML, Ray Serve and LitServe, each
serving the same ONNX file through the same ONNX Runtime, under wrk on loopback.

Run with `make bench-serving-rivals` (= `python benchmarks/serving.py --rivals
bentoml,ray,litserve`; `--models`, `--rounds`, `--seconds`, `--connections`,
`--rival-workers`, `--json`). The rivals run in their own venv (`make
bench-serving-rivals-env`, benchmarks/rivals_env.py), never the product's.

Models (`--models`): `digits`, the digits MLP (fp32, 64 features, ~10 us a call: the
serving overhead is all there is), released with `chassis release --epochs 10
--compression off`; `minilm`, the MiniLM topic classifier (chassis.specs.text_topics),
released with `chassis release --spec chassis.specs.text_topics:spec --p99-budget-ms 500
--rollout none` and its dynamic-int8 version (the compression candidate the release
registers) made the champion. Both are released once into `--workdir` and reused. Every
server loads the registered version's ONNX file (and tokenizer.json), fetched and verified
from the registry, so all serve the identical bytes.

The same request everywhere: `{"instances": [row]}` with one digits row, or
`{"instances": ["text"]}` with one docstring of the text spec's test split (wrk cycles
through them, so texts differ). The same work: JSON in, for text the version's tokenizer
(chassis.text_input.TextEncoder: no truncation, padded with the pad id to the version's
max_length, 64), ONNX Runtime with one intra-op and one inter-op thread per session
(chassis.runtime.create_session, what the gateway uses), argmax, JSON out. The rivals
import those two chassis modules (numpy, onnxruntime and tokenizers only), so tokenizing
and the session are the gateway's code, not a copy (benchmarks/rival_model.py).

Configurations, each from its own documentation for a CPU model (benchmarks/rival_*.py;
read in BentoML's "Workers" and "Adaptive batching" guides, Ray Serve's "Dynamic Request
Batching" and "Performance Tuning" guides and `ray.serve.batch`'s reference, LitServe's
"Batching", "Autoscaling" and LitServer/LitAPI references, and the installed sources):
- gateway: `chassis serve --model M`, every feature on as in production (validation,
  Prometheus metrics, per-version stats, micro-batching max_batch 64 greedy, the prediction
  log); one process, as `chassis serve` runs. The result cache is off (its default): no
  rival caches. The gateway answers the int8 MiniLM one row per ONNX Runtime call, even
  inside a batch, because dynamic int8 makes a row's answer depend on its batch
  (chassis.runtime.answers_depend_on_batch); the rivals batch it as their docs advise.
- BentoML 1.4.40: `workers` = cores (2; the Workers guide), adaptive batching
  (`@bentoml.api(batchable=True, max_batch_size=64)`; the dispatcher sizes the window).
- Ray Serve 2.60.0: 2 replicas reserving a core each (`num_cpus: 1`, the performance
  guide), `@serve.batch(max_batch_size=64, batch_wait_timeout_s=0)`,
  max_ongoing_requests 64 (Ray warns when max_batch_size exceeds it). The wait is the
  gateway's (greedy) rather than Ray's 10 ms default, which would add 10 ms to every
  request at one connection. Replicas at nice 0 (RAY_worker_niceness; Ray's default 15
  would let the machine's other work starve them).
- LitServe 0.2.19: `accelerator="cpu"`, `workers_per_device=2`, LitAPI
  `max_batch_size=64, batch_timeout=0` (its default, greedy like the gateway).
So each rival runs two inference processes where the gateway runs one: that is how their
docs scale on CPU, and the gateway has no worker setting. `--rival-workers 1` gives them
one each.

One server at a time: in each round every server is started, warmed up (3 s at 8
connections, discarded), watched idle for 5 s (the CPU it burns doing nothing is reported),
measured at each connection count and stopped, with everything it started; the order of
the servers rotates every round. Keeping all up while one is measured was tried first and
dropped: LitServe's processes poll their queues and use over a core while idle (26 CPU
seconds in 20 s here), which would have been taken from whichever server was measured.
The tables give medians and the spread of the per-round gateway/rival ratios, which a
shared machine moves less than the rates themselves. Nothing here is a test.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import process_tree
import serving

REPO = serving.REPO
BIN = serving.BIN
RIVALS = ("bentoml", "ray", "litserve")
MODELS = ("digits", "minilm")
GATEWAY = "chassis gateway"
LABELS = {"bentoml": "BentoML", "ray": "Ray Serve", "litserve": "LitServe"}
REGISTERED = {"digits": "digits-mlp", "minilm": "text-topics"}
TEXT_SPEC = "chassis.specs.text_topics:spec"
# Ray starts a cluster (GCS, raylet, workers) before it serves: minutes on a busy machine.
STARTUP_SECONDS = 600
# How long a server is watched idle (after its warm-up) for the CPU it burns doing nothing.
IDLE_SECONDS = 5.0

# name -> connections -> one wrk result per round
Results = dict[str, dict[int, list[dict[str, float]]]]


def choices(value: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """The comma-separated names in `value`, in order, each once; ValueError naming the
    option and the first unknown or missing name (a built-in: the project's own exception
    classes all live in chassis/errors.py)."""
    names = [name.strip() for name in value.split(",")]
    if not any(names):
        raise ValueError(f"{option}: empty; choose from {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise ValueError(f"{option}: unknown {name!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def connection_counts(value: str) -> list[int]:
    try:
        counts = [int(c) for c in value.split(",")]
    except ValueError:
        raise ValueError(f"--connections: {value!r} is not comma-separated integers") from None
    if any(c < 1 for c in counts):
        raise ValueError(f"--connections: {value!r} has a count below 1")
    return counts


# ---- the models --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    name: str  # registered name
    version: int
    onnx: Path
    tokenizer: Path | None
    text_input: str | None  # the version's text-input settings (JSON), None if tabular
    bodies: list[str]  # one request body each, cycled by wrk


def release(home: Path, env: dict[str, str], arguments: list[str]) -> None:
    print(f"releasing: chassis release {' '.join(arguments)} (once)", file=sys.stderr)
    subprocess.run(
        [str(BIN / "chassis"), "release", *arguments],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def prepare(model: str, home: Path, env: dict[str, str]) -> ServedModel:
    """The model released into `home` if it is not there yet, its champion fetched."""
    from chassis.registry import Registry
    from chassis.registry.tags import TAG_TEXT_INPUT, TOKENIZER_FILE
    from chassis.settings import ChassisSettings

    name = REGISTERED[model]
    registry = Registry.from_settings(ChassisSettings(home=home))
    if not registry.model_exists(name):
        if model == "digits":
            release(home, env, ["--epochs", "10", "--compression", "off"])
        else:
            release(home, env, ["--spec", TEXT_SPEC, "--p99-budget-ms", "500", "--rollout", "none"])
    if model == "minilm":
        promote_int8(registry, name)
    version = registry.version_for_alias(name, "champion")
    assert version is not None, f"{name} has no champion after its release"
    files = registry.fetch_version(name, version, home / "served" / f"{name}-v{version}")
    text_input = files.tags.get(TAG_TEXT_INPUT)
    return ServedModel(
        name,
        version,
        files.onnx_path,
        files.extra.get(TOKENIZER_FILE),
        text_input,
        request_bodies(model, home),
    )


def promote_int8(registry: Any, name: str) -> None:
    """The release registers fp32 (v1, the champion) and its dynamic-int8 compression (a
    gated version with TAG_RECIPE naming int8): the int8 file is the one served."""
    from chassis.registry.tags import TAG_RECIPE

    int8 = [
        version
        for version in registry.list_versions(name)
        if "int8" in registry.version_tags(name, version).get(TAG_RECIPE, "")
    ]
    assert int8, f"{name}'s release registered no int8 version"
    current = registry.version_for_alias(name, "champion")
    if current != max(int8):
        registry.promote(
            name, max(int8), expected_champion=current, actor="benchmark", reason="rivals bench"
        )


def request_bodies(model: str, home: Path) -> list[str]:
    cached = home / f"{model}-bodies.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    if model == "digits":
        from sklearn.datasets import load_digits

        digits: Any = load_digits()  # sklearn has no types
        instances: list[Any] = [[float(v) for v in row] for row in digits.data[:64]]
    else:
        from chassis.specs import text_topics

        test = text_topics.load_topics_dataset().test
        instances = test[text_topics.TEXT_COLUMN].tolist()
    bodies = [json.dumps({"instances": [instance]}) for instance in instances]
    cached.write_text(json.dumps(bodies))
    return bodies


# ---- the servers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    label: str
    command: list[str]
    url: str
    env: dict[str, str]
    cwd: Path | None = None


def rival_python() -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import rivals_env

    python = rivals_env.venv_python(rivals_env.venv_dir())
    if not python.is_file():
        raise ValueError(
            f"the rivals' venv is missing ({python}): run `make bench-serving-rivals-env`"
        )
    return python


def rival_server(
    rival: str, model: ServedModel, python: Path, workers: int, scratch: Path
) -> Server:
    port = serving.free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'benchmarks'}",
        "RIVAL_ONNX": str(model.onnx),
        "RIVAL_WORKERS": str(workers),
        "ORT_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(scratch / "bentoml"),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray starts its workers (the replicas) at nice 15 by default; on a machine shared
        # with other work that alone would starve them. Every other server runs at 0.
        "RAY_worker_niceness": "0",
    }
    if model.tokenizer is not None and model.text_input is not None:
        env |= {"RIVAL_TOKENIZER": str(model.tokenizer), "RIVAL_TEXT_INPUT": model.text_input}
    here = REPO / "benchmarks"
    base = f"http://127.0.0.1:{port}"
    if rival == "bentoml":
        command = [str(python.parent / "bentoml"), "serve", "rival_bentoml:Predictor"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        return Server(LABELS[rival], command, f"{base}/predict", env, here)
    if rival == "ray":
        command = [str(python), str(here / "rival_ray.py"), str(port)]
        return Server(LABELS[rival], command, f"{base}/", env, here)
    command = [str(python), str(here / "rival_litserve.py"), str(port)]
    return Server(LABELS[rival], command, f"{base}/predict", env, here)


def gateway_server(model: ServedModel, env: dict[str, str]) -> Server:
    port = serving.free_port()
    command = [str(BIN / "chassis"), "serve", "--model", model.name, "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1/models/{model.name}/predict"
    return Server(GATEWAY, command, url, env)


# ---- the measurement ---------------------------------------------------------------------


def rotated(names: list[str], round_number: int) -> list[str]:
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


def measure(
    build: "Callable[[str], Server]",
    keys: list[str],
    bodies: list[str],
    args: argparse.Namespace,
    connections: list[int],
) -> tuple[Results, dict[str, list[float]]]:
    """Each server alone: started, warmed, its idle CPU taken, measured at every connection
    count, stopped; the order of the servers rotating every round. Also each server's CPU
    use while idle (cores, one figure per round)."""
    results: Results = {}
    idle: dict[str, list[float]] = {}
    for round_number in range(args.rounds):
        for key in rotated(keys, round_number):
            server = build(key)
            print(f"round {round_number + 1}: starting {server.label}", file=sys.stderr)
            with serving.running(
                server.label,
                server.command,
                server.url,
                bodies[0],
                server.env,
                server.cwd,
                STARTUP_SECONDS,
            ) as process:
                idle.setdefault(server.label, []).append(idle_cores(process.pid))
                for c in connections:
                    point = serving.wrk(server.url, bodies, c, args.seconds)
                    results.setdefault(server.label, {}).setdefault(c, []).append(point)
                    print(
                        f"round {round_number + 1} {server.label} c={c}: {point}", file=sys.stderr
                    )
    return results, idle


def idle_cores(pid: int, seconds: float = IDLE_SECONDS) -> float:
    """CPU the server and its processes use with no request in flight, in cores."""
    before = process_tree.cpu_seconds(pid)
    time.sleep(seconds)
    return (process_tree.cpu_seconds(pid) - before) / seconds


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float

    def cell(self) -> str:
        spread = f" ({self.low:.2f}-{self.high:.2f})" if self.low != self.high else ""
        return f"{self.median:.2f}x{spread}"


def ratio(tops: list[dict[str, float]], bottoms: list[dict[str, float]], key: str) -> Ratio:
    """Per-round ratios top/bottom of `key` (rounds paired in order): median and range."""
    values = sorted(t[key] / b[key] for t, b in zip(tops, bottoms, strict=True))
    return Ratio(median(values), values[0], values[-1])


def middle(points: list[dict[str, float]], key: str) -> float:
    return median(point[key] for point in points)


def markdown(model: ServedModel, results: Results, connections: list[int]) -> str:
    """The model's two tables: each server's figures, then the gateway against each rival
    (req/s ratio > 1: the gateway is faster; p99 ratio < 1: the gateway's tail is shorter)."""
    lines = [
        f"**{model.name} v{model.version}** (`{model.onnx.name}`)",
        "",
        "| server | conns | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_connections in results.items():
        for c in connections:
            points = by_connections[c]
            lines.append(
                f"| {name} | {c} | {middle(points, 'rps'):.0f} | {middle(points, 'p50'):.2f} "
                f"| {middle(points, 'p99'):.2f} | {sum(int(p['non2xx']) for p in points)} |"
            )
    rivals = [name for name in results if name != GATEWAY]
    lines += ["", "| conns | " + " | ".join(f"gateway / {name} (req/s)" for name in rivals)]
    lines[-1] += " | " + " | ".join(f"gateway p99 / {name} p99" for name in rivals) + " |"
    lines.append("|---|" + "---|" * (2 * len(rivals)))
    gateway = results[GATEWAY]
    for c in connections:
        rps = [ratio(gateway[c], results[name][c], "rps").cell() for name in rivals]
        p99 = [ratio(gateway[c], results[name][c], "p99").cell() for name in rivals]
        lines.append(f"| {c} | " + " | ".join(rps + p99) + " |")
    return "\n".join(lines)


def behind(results: Results, connections: list[int]) -> list[str]:
    """Where the gateway's median req/s is not ahead of a rival's: one line each."""
    gateway = results[GATEWAY]
    return [
        f"{name} at {c} connections: gateway {middle(gateway[c], 'rps'):.0f} req/s vs "
        f"{middle(results[name][c], 'rps'):.0f}"
        for name in results
        if name != GATEWAY
        for c in connections
        if middle(gateway[c], "rps") <= middle(results[name][c], "rps")
    ]


# ---- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    try:
        rivals = choices(args.rivals, RIVALS, "--rivals")
        models = choices(args.models, MODELS, "--models")
        connections = connection_counts(args.connections)
        if args.rounds < 1 or args.seconds < 1 or args.rival_workers < 1:
            raise ValueError("--rounds, --seconds and --rival-workers must be at least 1")
        python = rival_python()
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    home = (args.workdir / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CHASSIS_HOME": str(home),
        "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0",
        "CHASSIS_GATEWAY_CACHE_MODELS": "",
        "PYTHONPATH": str(REPO),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ORT_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ORT_", "MLFLOW_", "DO_"))})
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    sections, report_json = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-rivals-"))
    for model_key in models:
        model = prepare(model_key, home, env)

        def build(key: str, model: ServedModel = model) -> Server:
            if key == "gateway":
                return gateway_server(model, env)
            return rival_server(key, model, python, args.rival_workers, scratch)

        results, idle = measure(build, ["gateway", *rivals], model.bodies, args, connections)
        sections.append(markdown(model, results, connections))
        sections.append(
            "Idle CPU (cores, after warm-up, median of rounds): "
            + ", ".join(f"{name} {median(cores):.2f}" for name, cores in idle.items())
            + "."
        )
        lagging = behind(results, connections)
        if lagging:
            sections.append("Gateway not ahead: " + "; ".join(lagging) + ".")
        report_json[model_key] = {
            "model": model.name,
            "version": model.version,
            "results": results,
            "idle_cores": idle,
        }
    rounds = f"median of {args.rounds} rounds (order rotated)" if args.rounds > 1 else "1 round"
    header = (
        f"Machine: {serving.machine()}; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; started {started}. wrk -t1, {args.seconds} s "
        f"per point, {rounds}; rivals with {args.rival_workers} workers/replicas each."
    )
    print("\n" + header + "\n\n" + "\n\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "models": report_json}, indent=1))
