"""The drift check reads a text version's tokenizer alone, verified, without its ONNX model."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from chassis.digests import sha256_file
from chassis.errors import IntegrityError, RegistryError
from chassis.registry import fetch
from chassis.registry.tags import TAG_TEXT_INPUT, TAG_TOKENIZER_SHA256, TOKENIZER_FILE


def word_level_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hi": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path.write_text(tokenizer.to_str(), encoding="utf-8")
    return path


class FakeClient:
    """The two registry reads fetch_text_encoder makes; downloads come from `files`."""

    tracking_uri = "file:///nowhere"

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        return SimpleNamespace(tags=self.tags)

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return "store://m/1"


@pytest.fixture
def served(tmp_path, monkeypatch):
    source = word_level_tokenizer(tmp_path / "source.json")
    downloads: list[str] = []

    def download(client, uri: str, destination: Path) -> Path:
        downloads.append(uri)
        destination.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(source, destination / "tokenizer.json"))

    monkeypatch.setattr(fetch, "download", download)
    return source, downloads


def test_a_text_version_gives_its_encoder_from_the_tokenizer_file_only(served, tmp_path):
    source, downloads = served
    tags = {
        TAG_TEXT_INPUT: json.dumps({"max_length": 4, "truncate": False}),
        TAG_TOKENIZER_SHA256: sha256_file(source),
    }
    encoder = fetch.fetch_text_encoder(FakeClient(tags), "m", 1, tmp_path / "d")  # pyright: ignore[reportArgumentType]
    assert encoder is not None and encoder.max_length == 4
    assert encoder.encode(["hi"]).tolist() == [[2, 0, 0, 0]]
    assert downloads == [f"store://m/1/{TOKENIZER_FILE}"]  # not the ONNX model


def test_a_tabular_version_has_none_and_downloads_nothing(served, tmp_path):
    _, downloads = served
    assert fetch.fetch_text_encoder(FakeClient({}), "m", 1, tmp_path / "d") is None  # pyright: ignore[reportArgumentType]
    assert downloads == []


def test_a_tokenizer_that_does_not_match_its_digest_is_refused(served, tmp_path):
    tags = {
        TAG_TEXT_INPUT: json.dumps({"max_length": 4, "truncate": False}),
        TAG_TOKENIZER_SHA256: "0" * 64,
    }
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        fetch.fetch_text_encoder(FakeClient(tags), "m", 1, tmp_path / "d")  # pyright: ignore[reportArgumentType]
    with pytest.raises(RegistryError, match=r"stores no extra_files/tokenizer\.json"):
        fetch.fetch_text_encoder(FakeClient({TAG_TEXT_INPUT: "{}"}), "m", 1, tmp_path / "d")  # pyright: ignore[reportArgumentType]
