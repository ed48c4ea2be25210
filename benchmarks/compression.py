"""int8 vs fp32 for the digits MLP and all-MiniLM-L6-v2, plus the cost of Chassis's quantize
step against a bare `onnxruntime.quantization.quantize_dynamic` call on the same file.

    python benchmarks/compression.py [--threads 2] [--skip-minilm] [--json out.json]

Prints a markdown report (paste into BENCHMARKS.md). Latency: ONNX Runtime, fixed intra-op
threads, warm-up runs, then repeated timed runs; p50 and p99 in milliseconds.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from chassis.compression import candidates as names
from chassis.compression.measure import (
    MeasureSettings,
    classification_task,
    embedding_task,
    measure_all,
)
from chassis.compression.quantize import quantize_dynamic_int8


def quantize_step_times(source: Path, workdir: Path, rounds: int) -> dict[str, float]:
    """Median seconds of Chassis's step and of the bare call, interleaved to share noise."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chassis_times, bare_times = [], []
    for i in range(rounds):
        started = time.perf_counter()
        quantize_dynamic_int8(source, workdir / f"chassis-{i}.onnx")
        chassis_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        quantize_dynamic(str(source), str(workdir / f"bare-{i}.onnx"), weight_type=QuantType.QInt8)
        bare_times.append(time.perf_counter() - started)
    chassis_s, bare_s = statistics.median(chassis_times), statistics.median(bare_times)
    return {"chassis_s": chassis_s, "bare_s": bare_s, "ratio": chassis_s / bare_s}


def ratios(measured: dict, fp32: str, int8: str, quality: str) -> dict[str, float]:
    a, b = measured[fp32], measured[int8]
    return {
        "fp32_bytes": a.size_bytes,
        "int8_bytes": b.size_bytes,
        "size_ratio_fp32_over_int8": a.size_bytes / b.size_bytes,
        **{
            f"speedup_{key}": a.latency_ms[key] / b.latency_ms[key]
            for key in sorted(a.latency_ms)
            if key.endswith("p50")
        },
        **{f"fp32_{k}_ms": v for k, v in a.latency_ms.items()},
        **{f"int8_{k}_ms": v for k, v in b.latency_ms.items()},
        "quality_fp32": a.quality[quality],
        "quality_int8": b.quality[quality],
        "quality_delta": b.quality[quality] - a.quality[quality],
    }


def bench_digits(workdir: Path, settings: MeasureSettings, rounds: int) -> dict:
    from chassis.data import features, labels, load_dataset
    from chassis.onnx_export import export_onnx
    from chassis.specs.digits import spec
    from chassis.training import train_classifier

    dataset = load_dataset(spec.load_data, spec.name)
    trained = train_classifier(spec.build_model, dataset, spec.training)
    fp32 = export_onnx(trained.module, trained.n_features, workdir / "digits-fp32.onnx")
    int8 = quantize_dynamic_int8(fp32, workdir / "digits-int8.onnx")
    from chassis.compression.candidates import Candidate

    task = classification_task(labels(dataset.test, dataset), trained.n_classes)
    feeds = {"features": features(dataset.test, dataset)}
    measured = measure_all(
        [Candidate(names.BASELINE, fp32), Candidate(names.DYNAMIC_INT8, int8)],
        feeds,
        task,
        settings,
        names.BASELINE,
    )
    by_name = {m.name: m for m in measured}
    return {
        "int8_vs_fp32": ratios(by_name, names.BASELINE, names.DYNAMIC_INT8, "accuracy"),
        "agreement": by_name[names.DYNAMIC_INT8].quality["agreement"],
        "quantize_step": quantize_step_times(fp32, workdir, rounds),
    }


def bench_minilm(
    workdir: Path, settings: MeasureSettings, rounds: int, steps: int, held_out: int
) -> dict:
    from chassis.compression.embedding import EmbeddingRecipe, build_embedding_candidates
    from chassis.specs import minilm

    corpus = minilm.stdlib_corpus()
    tokenizer = minilm.load_tokenizer()
    teacher = minilm.load_teacher()
    recipe = EmbeddingRecipe(student_steps=steps)
    # The whole training side (top-level modules and packages), cycled if steps need more.
    train_sentences = minilm.training_sentences(corpus)[: steps * recipe.batch_size]
    batches = [
        minilm.tokenize(tokenizer, train_sentences[i : i + recipe.batch_size], length=None)
        for i in range(0, len(train_sentences), recipe.batch_size)
    ]
    started = time.perf_counter()
    built = build_embedding_candidates(
        teacher=teacher,
        make_student=minilm.build_student,
        export=minilm.export_embedder,
        training_batches=batches,
        recipe=recipe,
        workdir=workdir / "minilm",
        token_states=minilm.token_states,
        keep_float=minilm.int8_keep_float,
    )
    build_s = time.perf_counter() - started
    feeds = minilm.tokenize(tokenizer, corpus.held_out[:held_out])
    task = embedding_task()
    measured = {m.name: m for m in measure_all(built, feeds, task, settings, names.BASELINE)}
    return {
        "sentences": {
            "train": len(corpus.train),
            "held_out_total": len(corpus.held_out),
            "held_out_used": len(feeds["input_ids"]),
        },
        "training_sentences": len(train_sentences),
        "build_candidates_s": build_s,
        "int8_vs_fp32": ratios(measured, names.BASELINE, names.DYNAMIC_INT8, "cosine_mean"),
        "candidates": {
            name: {
                **m.quality,
                **{f"{k}_ms": v for k, v in m.latency_ms.items()},
                "size_bytes": m.size_bytes,
                "parameters": m.parameter_count,
            }
            for name, m in measured.items()
        },
        "quantize_step": quantize_step_times(workdir / "minilm" / "baseline.onnx", workdir, rounds),
    }


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    for model, quality in (("digits", "accuracy"), ("minilm", "cosine_mean")):
        if model not in results:
            continue
        r = results[model]["int8_vs_fp32"]
        q = results[model]["quantize_step"]
        lines += [
            f"## {model}",
            "",
            "| measure | value |",
            "|---|---|",
            f"| size fp32 / int8 | {r['size_ratio_fp32_over_int8']:.2f}x "
            f"({r['fp32_bytes']:,} -> {r['int8_bytes']:,} bytes) |",
        ]
        for key in sorted(k for k in r if k.startswith("speedup_")):
            batch = key.split("_")[1]
            lines.append(
                f"| latency p50 fp32 / int8, {batch} | {r[key]:.2f}x "
                f"({r[f'fp32_{batch}_p50_ms']:.3f} -> {r[f'int8_{batch}_p50_ms']:.3f} ms; "
                f"p99 {r[f'fp32_{batch}_p99_ms']:.3f} -> {r[f'int8_{batch}_p99_ms']:.3f} ms) |"
            )
        lines.append(
            f"| {quality} fp32 -> int8 | {r['quality_fp32']:.4f} -> {r['quality_int8']:.4f} "
            f"(delta {r['quality_delta']:+.4f}) |"
        )
        lines.append(
            f"| quantize step: Chassis / bare | {q['ratio']:.3f}x "
            f"({q['chassis_s']:.3f} s vs {q['bare_s']:.3f} s, median) |"
        )
        lines.append("")
    if "minilm" in results:
        lines += [
            "### MiniLM candidates",
            "",
            "| candidate | cosine mean | cosine min | b1 p50 ms | b32 p50 ms | size bytes |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in results["minilm"]["candidates"].items():
            lines.append(
                f"| {name} | {c['cosine_mean']:.4f} | {c['cosine_min']:.4f} | "
                f"{c['b1_p50_ms']:.2f} | {c['b32_p50_ms']:.2f} | {c['size_bytes']:,} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--minilm-repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5, help="quantize-step timing rounds")
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--held-out", type=int, default=256)
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
        digits_settings = MeasureSettings(
            threads=args.threads, batch_sizes=(1, 32), warmup=50, repeats=args.repeats
        )
        results["digits"] = bench_digits(workdir, digits_settings, args.rounds)
        if not args.skip_minilm:
            minilm_settings = MeasureSettings(
                threads=args.threads,
                batch_sizes=(1, 32),
                warmup=5,
                repeats=args.minilm_repeats,
                inference_batch=32,
            )
            results["minilm"] = bench_minilm(
                workdir, minilm_settings, args.rounds, args.student_steps, args.held_out
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
