"""The one module that drives ONNX Runtime: sessions with fixed threads, batched inference."""

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    import onnxruntime


def create_session(
    model: bytes | Path, intra_op_threads: int = 1
) -> "onnxruntime.InferenceSession":
    # Must be set before onnxruntime is first imported, or it tries the network.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    # A class of ONNX Runtime's compiled module, which ships no stubs.
    options = onnxruntime.SessionOptions()  # pyright: ignore[reportUnknownVariableType]
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def first_output(
    session: "onnxruntime.InferenceSession",
    feeds: Mapping[str, np.ndarray],
    output_names: list[str] | None = None,
) -> np.ndarray:
    """The session's first output for `feeds`. Every model here answers a dense tensor
    first; ONNX Runtime types `run` for sparse tensors, sequences and maps too."""
    return cast(np.ndarray, session.run(output_names, feeds)[0])


def direct_runner(
    session: "onnxruntime.InferenceSession", input_name: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The session's first output for rows of its input `input_name`, called without the
    Python wrapper's per-call checks: input names listed and compared, WebGPU graph capture,
    OrtValue ownership, a GPU provider's fallback. None applies to the gateway's calls (one
    input, named from the session; numpy arrays; the CPU provider only), and the checks cost
    ~2 us a call, a tenth of a one-row digits request (BENCHMARKS.md, "Serving"). A wrapper
    that no longer keeps its compiled session as `_sess` is called as usual."""
    output_names = [cast(str, session.get_outputs()[0].name)]
    compiled = getattr(session, "_sess", None)
    run = cast(Callable[..., list[object]], getattr(compiled, "run", None) or session.run)

    def call(rows: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, run(output_names, {input_name: rows}, None)[0])

    return call


def onnx_input_name(model: Path) -> str:
    """The name of a model's one input: Chassis exports `features`; an imported graph has
    its own."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    return next(value.name for value in graph.input if value.name not in weights)


# Rows per call when a whole split runs at once: tabular rows are tiny, while a row of token
# ids goes through a transformer (4096 rows of 128 tokens would need gigabytes of attention).
TABULAR_BATCH_ROWS = 4096
TOKEN_BATCH_ROWS = 32


# Operators that quantize activations with a scale computed over their whole input at run
# time (ONNX Runtime's dynamic int8): a row's answer then depends on the rows run with it.
BATCH_DEPENDENT_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul"})


def answers_depend_on_batch(model: Path) -> bool:
    """Whether the graph's answer to a row depends on the other rows of its batch: with
    dynamic int8, 4.8 % of the text spec's labels differ between one text a call and 32
    (docs/architecture.md). Such a graph is run one row a call wherever its answers count
    (gates, compression quality, the gateway), so they never depend on other requests."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return any(node.op_type in BATCH_DEPENDENT_OPS for node in graph.node)


def answer_batch_rows(model: Path, x: np.ndarray) -> int:
    """Rows per call when answers count: one for a batch-dependent graph, else `batch_rows`."""
    return 1 if answers_depend_on_batch(model) else batch_rows(x)


def batch_rows(x: np.ndarray) -> int:
    """How many rows of `x` to run per call: integer inputs are a text model's token ids."""
    return TOKEN_BATCH_ROWS if x.dtype.kind in "iu" else TABULAR_BATCH_ROWS


def run_batches(
    session: "onnxruntime.InferenceSession", x: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """Run the session's first input/output over `x` in batches."""
    batch_size = batch_size or batch_rows(x)
    input_name = cast(str, session.get_inputs()[0].name)
    outputs = [
        first_output(session, {input_name: x[start : start + batch_size]})
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs)


def onnxruntime_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime")


def timed_runs_ms(
    session: "onnxruntime.InferenceSession",
    feeds: dict[str, np.ndarray],
    *,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> np.ndarray:
    """Milliseconds of each of `repeats` timed `session.run` calls, after `warmup` untimed,
    read on `clock` (the wall clock; `time.thread_time` for the CPU a one-thread session
    spends, which a busy machine does not stretch)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        session.run(None, feeds)
    timings = np.empty(repeats)
    for i in range(repeats):
        started = clock()
        session.run(None, feeds)
        timings[i] = clock() - started
    return timings * 1000.0


def model_cpu_ms(
    session: "onnxruntime.InferenceSession",
    batch: np.ndarray,
    *,
    warmup: int = 20,
    repeats: int = 200,
) -> dict[str, float]:
    """p50 and p99 CPU milliseconds of one call on this thread: what the model costs,
    whatever else the machine runs (a preempted call is long on the clock, not in CPU time),
    so two versions measured minutes apart on a busy machine still compare, and a budget
    judges the model rather than the machine's load at that moment."""

    feeds = {cast(str, session.get_inputs()[0].name): batch}
    for _ in range(warmup):
        session.run(None, feeds)
    timings = np.empty(repeats)
    for i in range(repeats):
        started = time.thread_time()
        session.run(None, feeds)
        timings[i] = time.thread_time() - started
    return {
        "p50": float(np.median(timings)) * 1000.0,
        "p99": float(np.percentile(timings, 99)) * 1000.0,
    }


def time_runs_ms(
    session: "onnxruntime.InferenceSession",
    feeds: dict[str, np.ndarray],
    *,
    warmup: int = 20,
    repeats: int = 200,
) -> dict[str, float]:
    """p50/p99/mean of one `session.run`, after `warmup` untimed runs (allocations, caches)."""
    timings = timed_runs_ms(session, feeds, warmup=warmup, repeats=repeats)
    return {
        "p50": float(np.percentile(timings, 50)),
        "p99": float(np.percentile(timings, 99)),
        "mean": float(timings.mean()),
    }


def measure_latency_ms(
    session: "onnxruntime.InferenceSession",
    batch: np.ndarray,
    *,
    warmup: int = 20,
    repeats: int = 200,
) -> dict[str, float]:
    """Latency of the session's first input fed with `batch`."""
    feeds = {cast(str, session.get_inputs()[0].name): batch}
    return time_runs_ms(session, feeds, warmup=warmup, repeats=repeats)
