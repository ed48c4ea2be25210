"""int8 vs fp32 for the digits MLP and all-MiniLM-L6-v2, plus the cost of Chassis's quantize
step against a bare `onnxruntime.quantization.quantize_dynamic` call on the same file.

    python benchmarks/compression.py [--threads 2] [--skip-digits] [--skip-minilm] [--json out]

Prints a markdown report (paste into BENCHMARKS.md). Latency: ONNX Runtime with the same
session options for every model (chassis.runtime.create_session: fixed intra-op threads,
one inter-op thread, all graph optimizations), every model in its own session, timed in
interleaved rounds (chassis.compression.latency.time_interleaved): a speed-up is the median
over rounds of that round's fp32 p50 / int8 p50, so load that drifts during the run weighs on
both sides alike. p50: median of the per-round p50s; p99: over every timed run.

MiniLM's int8 is quantized from the graph fused by ONNX Runtime's transformer optimizer
(`minilm.fuse_for_int8`); its speed-up is reported against two fp32 models: the baseline as
the spec exports it, and that export fused by the same optimizer (`fp32-fused`, a reference,
not a candidate), so the reader sees what quantization adds beyond the fusion.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from chassis.compression import candidates as names
from chassis.compression.candidates import Candidate
from chassis.compression.latency import (
    Feeds,
    InterleavedTimes,
    batch_of,
    round_ratios,
    summarize_ratios,
    time_interleaved,
)
from chassis.compression.measure import (
    Measurement,
    MeasureSettings,
    classification_task,
    embedding_task,
    measure_all,
)
from chassis.compression.quantize import quantize_dynamic_int8
from chassis.runtime import create_session

FP32_FUSED = "fp32-fused"
TARGET_SPEEDUP = 1.5


def timed_rounds(
    steps: dict[str, Callable[[Path], object]], workdir: Path, rounds: int
) -> dict[str, float]:
    """Median seconds of each step over `rounds`, all steps in every round, the order
    reversed every other round so no step always follows the same one, and garbage
    collected (untimed) before each, so no step pays for the previous one's."""
    times: dict[str, list[float]] = {key: [] for key in steps}
    for i in range(rounds):
        for key in list(steps) if i % 2 == 0 else list(steps)[::-1]:
            gc.collect()
            started = time.perf_counter()
            steps[key](workdir / f"{key}-{i}.onnx")
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in times.items()}


def quantize_step_times(source: Path, workdir: Path, rounds: int) -> dict[str, float]:
    """Median seconds of Chassis's step and of the bare call, interleaved to share noise."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    medians = timed_rounds(
        {
            "chassis": lambda out: quantize_dynamic_int8(source, out),
            "bare": lambda out: quantize_dynamic(
                str(source), str(out), weight_type=QuantType.QInt8
            ),
        },
        workdir,
        rounds,
    )
    chassis_s, bare_s = medians["chassis"], medians["bare"]
    return {"chassis_s": chassis_s, "bare_s": bare_s, "ratio": chassis_s / bare_s}


def minilm_int8_step_times(exported: Path, workdir: Path, rounds: int) -> dict[str, float]:
    """MiniLM's int8 step is fusion, then quantization; each is timed on its own.

    Quantization: Chassis's call vs a bare `quantize_dynamic` with the same options on the
    same fused file (the wrapper's cost). Whole step: fusion + Chassis's quantization vs a
    bare `quantize_dynamic` with those options on the unfused export (what fusing adds).
    Interleaved within each round (`timed_rounds`), medians over rounds.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from chassis.specs import minilm

    fused = workdir / "minilm-step-fused.onnx"
    minilm.fuse_for_int8(exported, fused)

    def bare(source: Path, destination: Path) -> None:
        quantize_dynamic(
            str(source),
            str(destination),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={
                "MatMulConstBOnly": True,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )

    # Fusion is timed in rounds of its own: whichever step ran right after it measured
    # ~0.2 s slower (it leaves a large heap behind), which would tilt the comparison.
    fuse_s = timed_rounds(
        {"fuse": lambda out: minilm.fuse_for_int8(exported, out)}, workdir, rounds
    )["fuse"]
    quantize = {
        "chassis": lambda out: quantize_dynamic_int8(fused, out, per_channel=True),
        "bare": lambda out: bare(fused, out),
        "bare_unfused": lambda out: bare(exported, out),
    }
    chassis_s, bare_s, unfused_s = timed_rounds(quantize, workdir, rounds).values()
    return {
        "fuse_s": fuse_s,
        "chassis_s": chassis_s,
        "bare_s": bare_s,
        "ratio": chassis_s / bare_s,
        "bare_unfused_s": unfused_s,
        "whole_step_ratio": (fuse_s + chassis_s) / unfused_s,
    }


def interleaved(
    paths: dict[str, Path], feeds: Feeds, threads: int, plan: dict[int, tuple[int, int]]
) -> dict[int, InterleavedTimes]:
    """{batch size: times}; `plan` maps a batch size to (rounds, runs per block)."""
    sessions = {
        name: create_session(path, intra_op_threads=threads) for name, path in paths.items()
    }
    return {
        size: time_interleaved(sessions, batch_of(feeds, size), rounds=rounds, runs=runs)
        for size, (rounds, runs) in plan.items()
    }


def speedup(times: dict[int, InterleavedTimes], reference: str, other: str) -> dict[str, dict]:
    """Per batch size: the per-round ratio summary and both sides' p50/p99 (ms)."""
    result = {}
    for size, timed in times.items():
        summary = summarize_ratios(round_ratios(timed, reference, other), TARGET_SPEEDUP)
        result[f"b{size}"] = {
            **asdict(summary),
            "reference_p50_ms": timed.p50_ms(reference),
            "reference_p99_ms": timed.p99_ms(reference),
            "p50_ms": timed.p50_ms(other),
            "p99_ms": timed.p99_ms(other),
        }
    return result


def size_and_quality(
    measured: dict[str, Measurement], fp32: str, int8: str, metrics: tuple[str, ...]
) -> dict[str, float]:
    a, b = measured[fp32], measured[int8]
    return {
        "fp32_bytes": a.size_bytes,
        "int8_bytes": b.size_bytes,
        "size_ratio_fp32_over_int8": a.size_bytes / b.size_bytes,
        **{f"{m}_fp32": a.quality[m] for m in metrics},
        **{f"{m}_int8": b.quality[m] for m in metrics},
    }


def quality_only(settings: MeasureSettings) -> MeasureSettings:
    """measure_all for quality, size and parameters; latency is timed interleaved instead."""
    return MeasureSettings(
        threads=settings.threads,
        batch_sizes=(),
        warmup=0,
        repeats=1,
        inference_batch=settings.inference_batch,
    )


def bench_digits(
    workdir: Path, threads: int, rounds: int, plan: dict[int, tuple[int, int]]
) -> dict:
    from chassis.data import features, labels, load_dataset
    from chassis.onnx_export import export_onnx
    from chassis.specs.digits import spec
    from chassis.training import train_classifier

    dataset = load_dataset(spec.load_data, spec.name)
    assert spec.build_model is not None  # the bundled digits spec trains its model
    trained = train_classifier(spec.build_model, dataset, spec.training)
    fp32 = export_onnx(trained.module, trained.n_features, workdir / "digits-fp32.onnx")
    int8 = quantize_dynamic_int8(fp32, workdir / "digits-int8.onnx")
    task = classification_task(labels(dataset.test, dataset), trained.n_outputs)
    feeds = {"features": features(dataset.test, dataset)}
    measured = measure_all(
        [Candidate(names.BASELINE, fp32), Candidate(names.DYNAMIC_INT8, int8)],
        feeds,
        task,
        quality_only(MeasureSettings(threads=threads)),
        names.BASELINE,
    )
    by_name = {m.name: m for m in measured}
    times = interleaved({names.BASELINE: fp32, names.DYNAMIC_INT8: int8}, feeds, threads, plan)
    return {
        "int8_vs_fp32": size_and_quality(
            by_name, names.BASELINE, names.DYNAMIC_INT8, ("accuracy", "agreement")
        ),
        "latency": {"fp32": speedup(times, names.BASELINE, names.DYNAMIC_INT8)},
        "quantize_step": quantize_step_times(fp32, workdir, rounds),
    }


def bench_minilm(
    workdir: Path,
    threads: int,
    rounds: int,
    steps: int,
    extra_sentences: int,
    held_out: int,
    plan: dict[int, tuple[int, int]],
) -> dict:
    from chassis.compression.embedding import EmbeddingRecipe, build_embedding_candidates
    from chassis.specs import minilm

    corpus = minilm.stdlib_corpus()
    tokenizer = minilm.load_tokenizer()
    teacher = minilm.load_teacher()
    recipe = EmbeddingRecipe(student_steps=steps)
    started = time.perf_counter()
    # The standard library's training side, then installed packages' docstrings (training
    # side of the same split), cycled if the steps need more.
    stdlib_sentences = minilm.training_sentences(corpus)
    extra = minilm.package_sentences(corpus, extra_sentences, known=stdlib_sentences)
    train_sentences = (stdlib_sentences + extra)[: steps * recipe.batch_size]
    batches = minilm.length_batches(tokenizer, train_sentences, recipe.batch_size, recipe.seed)
    data_s = time.perf_counter() - started
    folder = workdir / "minilm"
    started = time.perf_counter()
    built = build_embedding_candidates(
        teacher=teacher,
        make_student=minilm.build_student,
        export=minilm.export_embedder,
        training_batches=batches,
        recipe=recipe,
        workdir=folder,
        token_states=minilm.layer_states(minilm.STUDENT_LAYERS),
        fuse=minilm.fuse_for_int8,
    )
    build_s = time.perf_counter() - started
    # Written by the int8 step as the file it quantizes: fp32 with the same fusion.
    fused = Candidate(FP32_FUSED, folder / "baseline-fused.onnx")
    feeds = minilm.tokenize(tokenizer, corpus.held_out[:held_out])
    measured = {
        m.name: m
        for m in measure_all(
            [*built, fused],
            feeds,
            embedding_task(),
            quality_only(MeasureSettings(threads=threads, inference_batch=32)),
            names.BASELINE,
        )
    }
    paths = {m.name: m.onnx_path for m in measured.values()}
    times = interleaved(paths, feeds, threads, plan)
    metrics = ("cosine_mean", "cosine_min")
    return {
        "sentences": {
            "train": len(corpus.train),
            "held_out_total": len(corpus.held_out),
            "held_out_used": len(feeds["input_ids"]),
        },
        "training_sentences": len(train_sentences),
        "package_sentences": len(extra),
        "training_data_s": data_s,
        "build_candidates_s": build_s,
        "int8_recipe": measured[names.DYNAMIC_INT8].recipe,
        "int8_vs_fp32": size_and_quality(measured, names.BASELINE, names.DYNAMIC_INT8, metrics),
        "latency": {
            "fp32": speedup(times, names.BASELINE, names.DYNAMIC_INT8),
            "fp32_fused": speedup(times, FP32_FUSED, names.DYNAMIC_INT8),
            "fused_fp32_vs_fp32": speedup(times, names.BASELINE, FP32_FUSED),
        },
        "candidates": {
            name: {
                **m.quality,
                **{f"b{size}_p50_ms": timed.p50_ms(name) for size, timed in times.items()},
                "size_bytes": m.size_bytes,
                "parameters": m.parameter_count,
            }
            for name, m in measured.items()
        },
        "quantize_step": minilm_int8_step_times(folder / "baseline.onnx", workdir, rounds),
    }


def speedup_rows(label: str, latency: dict[str, dict], target: bool = True) -> list[str]:
    """One row per batch size: median ratio over rounds, its range, and (`target`) in how
    many rounds it reached the target speed-up."""
    rows = []
    for batch, s in latency.items():
        reached = f", >= {s['threshold']}x in {s['at_least']}/{s['rounds']}" if target else ""
        rows.append(
            f"| {label}, {batch} | {s['median']:.2f}x (rounds {s['low']:.2f}-{s['high']:.2f}"
            f"{reached}; p50 {s['reference_p50_ms']:.3f} -> {s['p50_ms']:.3f} ms; p99 "
            f"{s['reference_p99_ms']:.3f} -> {s['p99_ms']:.3f} ms) |"
        )
    return rows


def size_quality_rows(r: dict[str, float], metrics: tuple[str, ...]) -> list[str]:
    rows = [
        f"| size fp32 / int8 | {r['size_ratio_fp32_over_int8']:.2f}x "
        f"({r['fp32_bytes']:,} -> {r['int8_bytes']:,} bytes) |"
    ]
    for m in metrics:
        fp32, int8 = r[f"{m}_fp32"], r[f"{m}_int8"]
        rows.append(f"| {m} fp32 -> int8 | {fp32:.4f} -> {int8:.4f} (delta {int8 - fp32:+.4f}) |")
    return rows


def digits_report(d: dict) -> list[str]:
    q = d["quantize_step"]
    return [
        "## digits",
        "",
        "| measure | value |",
        "|---|---|",
        *size_quality_rows(d["int8_vs_fp32"], ("accuracy", "agreement")),
        *speedup_rows("latency fp32 / int8", d["latency"]["fp32"]),
        f"| quantize step: Chassis / bare | {q['ratio']:.3f}x "
        f"({q['chassis_s']:.3f} s vs {q['bare_s']:.3f} s, median) |",
        "",
    ]


def minilm_report(d: dict) -> list[str]:
    q = d["quantize_step"]
    lines = [
        "## minilm",
        "",
        f"int8 recipe: {json.dumps(d['int8_recipe'])}",
        "",
        "| measure | value |",
        "|---|---|",
        *size_quality_rows(d["int8_vs_fp32"], ("cosine_mean", "cosine_min")),
        *speedup_rows("latency fp32 as exported / int8", d["latency"]["fp32"]),
        *speedup_rows("latency fp32 fused (same optimizer) / int8", d["latency"]["fp32_fused"]),
        *speedup_rows(
            "latency fp32 as exported / fp32 fused", d["latency"]["fused_fp32_vs_fp32"], False
        ),
        f"| int8 step, part 1: fusion (ORT transformer optimizer) | {q['fuse_s']:.3f} s (median) |",
        f"| int8 step, part 2: quantize, Chassis / bare on the same fused file | "
        f"{q['ratio']:.3f}x ({q['chassis_s']:.3f} s vs {q['bare_s']:.3f} s, median) |",
        f"| int8 step, whole: fusion + quantize / bare quantize of the unfused export | "
        f"{q['whole_step_ratio']:.3f}x ({q['fuse_s'] + q['chassis_s']:.3f} s vs "
        f"{q['bare_unfused_s']:.3f} s) |",
        "",
        "### MiniLM candidates",
        "",
        "| candidate | cosine mean | cosine min | b1 p50 ms | b32 p50 ms | size bytes |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in d["candidates"].items():
        lines.append(
            f"| {name} | {c['cosine_mean']:.4f} | {c['cosine_min']:.4f} | "
            f"{c.get('b1_p50_ms', float('nan')):.2f} | {c.get('b32_p50_ms', float('nan')):.2f} | "
            f"{c['size_bytes']:,} |"
        )
    return lines


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    if "digits" in results:
        lines += digits_report(results["digits"])
    if "minilm" in results:
        lines += minilm_report(results["minilm"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--digits-rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--digits-runs", type=int, default=100, help="timed runs per block")
    parser.add_argument("--minilm-rounds", type=int, default=31, help="interleaved rounds, b1")
    parser.add_argument("--minilm-runs", type=int, default=10, help="timed runs per block, b1")
    parser.add_argument("--minilm-b32-rounds", type=int, default=9)
    parser.add_argument("--minilm-b32-runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="quantize-step timing rounds")
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument(
        "--extra-sentences",
        type=int,
        default=5_000,
        help="distillation sentences from installed packages' docstrings",
    )
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or '?'}, "
        f"Python {platform.python_version()}, onnxruntime "
        f"{__import__('onnxruntime').__version__}, torch {torch.__version__}, "
        f"{args.threads} intra-op threads",
    }
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if not args.skip_digits:
            plan = {
                1: (args.digits_rounds, args.digits_runs),
                32: (args.digits_rounds, args.digits_runs),
            }
            results["digits"] = bench_digits(workdir, args.threads, args.rounds, plan)
        if not args.skip_minilm:
            plan = {
                1: (args.minilm_rounds, args.minilm_runs),
                32: (args.minilm_b32_rounds, args.minilm_b32_runs),
            }
            results["minilm"] = bench_minilm(
                workdir,
                args.threads,
                args.rounds,
                args.student_steps,
                args.extra_sentences,
                args.held_out,
                plan,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
