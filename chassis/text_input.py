"""Text models: the tokenizer a version carries, and how strings become the model's input.

A text model reads one text column. Its ONNX graph takes one input, `input_ids` (int64,
[batch, max_length]): each text tokenized with the model's own tokenizer (a Hugging Face
`tokenizers` JSON file, stored with every version of the model) and padded with the
tokenizer's pad id up to `max_length`. The graph derives what else it needs (an attention
mask is `input_ids != pad id`), so a text version has one input like every other version,
and everything that batches, times or compares versions treats it the same way.

A text longer than `max_length` tokens is refused, naming the row and its length, unless
the spec asks to truncate: a model that silently reads only the start of a text answers a
question it was not asked. The same rule holds in training data checks, gates and the
gateway, since they all encode through `TextEncoder`.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chassis.errors import SpecError, TextInputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TEXT_INPUT_NAME = "input_ids"
# Stored with every version of a text model, verified against its digest tag.
TOKENIZER_FILE_NAME = "tokenizer.json"
MAX_LENGTH_LIMIT = 8192
# Pad tokens tried, in order, when the tokenizer's own padding setting names none.
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>")


@dataclass(frozen=True)
class TextInput:
    """A spec part: the model reads the dataset's one feature column, a column of strings,
    through this tokenizer."""

    tokenizer_file: "str | Path"  # a `tokenizers` JSON file (tokenizer.json)
    max_length: int = 128  # tokens, special tokens included
    truncate: bool = False  # True: a longer text is cut to max_length instead of refused

    def __post_init__(self) -> None:
        if not isinstance(self.tokenizer_file, str | Path):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise SpecError("text_input.tokenizer_file must be a path to a tokenizer.json")
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not 1 <= self.max_length <= MAX_LENGTH_LIMIT
        ):
            raise SpecError(
                f"text_input.max_length must be an integer in 1..{MAX_LENGTH_LIMIT}, "
                f"got {self.max_length!r}"
            )

    def tokenizer_path(self) -> Path:
        """The tokenizer file, resolved against the working directory like onnx_file."""
        return Path(self.tokenizer_file).expanduser().resolve()

    def encoder(self) -> "TextEncoder":
        path = self.tokenizer_path()
        if not path.is_file():
            raise SpecError(f"text_input.tokenizer_file {path} does not exist")
        return TextEncoder.from_file(path, self.max_length, self.truncate)


class TextEncoder:
    """Strings -> int64 token ids [rows, max_length], padded with the tokenizer's pad id."""

    def __init__(self, tokenizer_json: str, max_length: int, truncate: bool = False) -> None:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as error:
            raise SpecError(f"not a tokenizers JSON file: {_first_line(error)}") from None
        self.tokenizer_json = tokenizer_json
        self.max_length = max_length
        self.truncate = truncate
        self.pad_id = _pad_id(tokenizer, json.loads(tokenizer_json))
        # Padding and truncation are done here, the same way for every tokenizer file,
        # whatever its own settings say.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer: Tokenizer = tokenizer

    def settings(self) -> dict[str, object]:
        """What a version records about its input (tag TAG_TEXT_INPUT)."""
        return {"max_length": self.max_length, "truncate": self.truncate}

    @classmethod
    def from_file(cls, path: Path, max_length: int, truncate: bool = False) -> "TextEncoder":
        return cls(path.read_text(encoding="utf-8"), max_length, truncate)

    @classmethod
    def from_settings(cls, path: Path, raw_settings: str) -> "TextEncoder":
        """The encoder a version records: its tokenizer file and its TAG_TEXT_INPUT tag."""
        settings = json.loads(raw_settings)
        return cls.from_file(path, int(settings["max_length"]), bool(settings["truncate"]))

    def encode(self, texts: Sequence[object]) -> np.ndarray:
        """Token ids of `texts`; TextInputError naming the first row that is not a
        non-empty string, or is longer than `max_length` tokens (unless truncating)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TextInputError(index, f"must be a string, got {type(text).__name__}")
            if not text.strip():
                raise TextInputError(index, "is empty")
        strings: list[str] = list(texts)  # pyright: ignore[reportAssignmentType]  # checked above
        encodings = (
            [self.tokenizer.encode(strings[0])]
            if len(strings) == 1
            else self.tokenizer.encode_batch(strings)
        )
        ids = np.full((len(strings), self.max_length), self.pad_id, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            tokens = encoding.ids
            if len(tokens) > self.max_length:
                if not self.truncate:
                    raise TextInputError(
                        row,
                        f"has {len(tokens)} tokens; the model reads at most {self.max_length}",
                    )
                tokens = tokens[: self.max_length]
            ids[row, : len(tokens)] = tokens
        return ids

    def token_counts(self, texts: Sequence[str]) -> np.ndarray:
        """How many tokens each text has (special tokens included), before any truncation."""
        return np.array([len(e.ids) for e in self.tokenizer.encode_batch(list(texts))])

    # Pickled with a Dataset between Prefect tasks: the JSON rebuilds the same tokenizer.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "tokenizer_json": self.tokenizer_json,
            "max_length": self.max_length,
            "truncate": self.truncate,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tokenizer_json"], state["max_length"], state["truncate"])


def _pad_id(tokenizer: "Tokenizer", document: dict[str, Any]) -> int:
    padding = document.get("padding")
    if isinstance(padding, dict) and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in PAD_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return found
    raise SpecError(
        "the tokenizer names no pad token (no padding setting, and none of "
        + ", ".join(PAD_TOKENS)
        + " in its vocabulary)"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
