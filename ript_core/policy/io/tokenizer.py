"""Prompt tokenisation the way openpi's ``PaligemmaTokenizer`` does it.

openpi (parity checklist A8): ``prompt.strip().replace("_", " ").replace("\\n",
" ")``, then ``encode(text, add_bos=True) + encode("\\n")`` -- the newline is
the "start of answer" token, encoded *separately* -- then pad with id 0 (mask
False) to ``max_token_len`` or truncate with a warning. lerobot/transformers
instead append ``"\\n"`` to the raw prompt (no strip, no ``_`` replacement)
and tokenise ``BOS + encode(prompt + "\\n")`` jointly. Which one a checkpoint
uses is part of its pipeline (``Pipeline.prompt_format``: ``"openpi"`` or
``"joint"``).

Two back-ends behind one small interface: the real PaliGemma sentencepiece
model from a local path, and a word-level ``tokenizers`` model built from a
list of instructions, for tiny presets and offline demos where no PaliGemma
tokenizer exists. Both save into a checkpoint directory and load back.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

import torch

log = logging.getLogger(__name__)

SP_FILE = "tokenizer.model"
JSON_FILE = "tokenizer.json"
PAD, BOS, EOS, UNK, NEWLINE = "<pad>", "<bos>", "<eos>", "<unk>", "\n"
PromptFormat = Literal["openpi", "joint"]
PROMPT_FORMATS = ("openpi", "joint")

# Words of common manipulation instructions: the default vocabulary of a
# random-init preset when no tokenizer and no prompts are given.
DEFAULT_WORDS = [
    "pick",
    "up",
    "put",
    "place",
    "the",
    "a",
    "an",
    "in",
    "on",
    "into",
    "onto",
    "of",
    "to",
    "and",
    "from",
    "with",
    "at",
    "top",
    "bottom",
    "left",
    "right",
    "front",
    "back",
    "side",
    "open",
    "close",
    "push",
    "pull",
    "turn",
    "lift",
    "grab",
    "move",
    "stack",
    "block",
    "cube",
    "bowl",
    "plate",
    "cup",
    "mug",
    "drawer",
    "cabinet",
    "door",
    "box",
    "basket",
    "table",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "orange",
    "purple",
    "pink",
    "brown",
    "gray",
    "small",
    "big",
    "large",
]


class PromptTokenizer(Protocol):
    """What the policy needs from a tokenizer."""

    bos_id: int
    pad_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special tokens."""
        ...

    def save(self, directory: Path) -> None: ...


class SentencePieceTokenizer:
    """The PaliGemma sentencepiece model (``tokenizer.model``) from a local file."""

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece

        self.model_file = Path(model_file)
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        self.bos_id = int(self.sp.bos_id())
        # PaliGemma's pad id is 0, and openpi pads with 0 whatever the model says.
        self.pad_id = 0

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def save(self, directory: Path) -> None:
        target = Path(directory) / SP_FILE
        if target.resolve() != self.model_file.resolve():
            shutil.copyfile(self.model_file, target)


class JsonTokenizer:
    """A ``tokenizers`` JSON tokenizer (our word-level one, or an HF export)."""

    def __init__(self, tokenizer) -> None:  # tokenizers.Tokenizer
        self.tk = tokenizer
        bos = self.tk.token_to_id(BOS)
        pad = self.tk.token_to_id(PAD)
        if bos is None or pad is None:
            raise ValueError(f"tokenizer must define {BOS!r} and {PAD!r} tokens")
        self.bos_id, self.pad_id = int(bos), int(pad)

    @classmethod
    def from_file(cls, path: str | Path) -> JsonTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return int(self.tk.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.tk.encode(text, add_special_tokens=False).ids)

    def save(self, directory: Path) -> None:
        self.tk.save(str(Path(directory) / JSON_FILE))


def build_word_tokenizer(
    texts: Iterable[str] = (), extra_words: Iterable[str] = ()
) -> JsonTokenizer:
    """A small lower-cased word-level tokenizer over the words of ``texts``.

    Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, ``"\\n"`` 4 (the
    answer-start token), then the words in sorted order, so the same texts
    always give the same ids. Words and punctuation are split like
    ``tokenizers``' ``Whitespace`` pre-tokenizer (``\\w+|[^\\w\\s]+``).
    """
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    pre = pre_tokenizers.Whitespace()
    norm = normalizers.Lowercase()
    words: set[str] = {w.lower() for w in extra_words}
    for text in texts:
        cleaned = format_prompt(text)
        words.update(piece for piece, _ in pre.pre_tokenize_str(norm.normalize_str(cleaned)))
    specials = [PAD, BOS, EOS, UNK, NEWLINE]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in sorted(words - set(specials)):
        vocab[word] = len(vocab)
    tk = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tk.normalizer = norm
    tk.pre_tokenizer = pre
    # Added tokens are matched before pre-tokenisation, so "\n" survives.
    tk.add_special_tokens([AddedToken(NEWLINE, normalized=False)])
    return JsonTokenizer(tk)


def load_tokenizer(path: str | Path) -> PromptTokenizer:
    """A sentencepiece ``.model`` file, a tokenizers ``.json`` file, or a
    directory holding ``tokenizer.model`` (preferred) or ``tokenizer.json``."""
    path = Path(path)
    if path.is_dir():
        if (path / SP_FILE).is_file():
            return SentencePieceTokenizer(path / SP_FILE)
        if (path / JSON_FILE).is_file():
            return JsonTokenizer.from_file(path / JSON_FILE)
        raise FileNotFoundError(f"no {SP_FILE} or {JSON_FILE} in tokenizer directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer path {path} does not exist")
    if path.suffix == ".json":
        return JsonTokenizer.from_file(path)
    return SentencePieceTokenizer(path)


def format_prompt(prompt: str) -> str:
    """openpi's cleaning: strip, ``_`` and newlines become spaces (no lower-casing)."""
    return prompt.strip().replace("_", " ").replace("\n", " ")


def prompt_ids(tokenizer: PromptTokenizer, prompt: str, fmt: PromptFormat = "openpi") -> list[int]:
    """Unpadded ids: openpi ``[BOS] + encode(clean) + encode("\\n")``; joint
    ``[BOS] + encode(prompt + "\\n")`` (lerobot/transformers, prompt as given)."""
    if fmt == "openpi":
        return [
            tokenizer.bos_id,
            *tokenizer.encode(format_prompt(prompt)),
            *tokenizer.encode(NEWLINE),
        ]
    if fmt == "joint":
        text = prompt if prompt.endswith(NEWLINE) else prompt + NEWLINE  # lerobot adds it once
        return [tokenizer.bos_id, *tokenizer.encode(text)]
    raise ValueError(f"prompt format must be one of {PROMPT_FORMATS}, got {fmt!r}")


def tokenize_prompt(
    tokenizer: PromptTokenizer, prompt: str, max_len: int, fmt: PromptFormat = "openpi"
) -> tuple[list[int], list[bool]]:
    """``(ids, mask)`` of length ``max_len``: :func:`prompt_ids`, padded with
    the pad id (mask False) or truncated with a warning, as openpi does."""
    ids = prompt_ids(tokenizer, prompt, fmt)
    if len(ids) > max_len:
        log.warning(
            "prompt of %d tokens truncated to max_token_len=%d: %r (raise max_token_len if "
            "this happens often)",
            len(ids),
            max_len,
            prompt,
        )
        ids = ids[:max_len]
    n = len(ids)
    return ids + [tokenizer.pad_id] * (max_len - n), [True] * n + [False] * (max_len - n)


def tokenize_prompts(
    tokenizer: PromptTokenizer, prompts: Iterable[str], max_len: int, fmt: PromptFormat = "openpi"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`tokenize_prompt`: ``ids [B, max_len] long, mask [B, max_len] bool``."""
    cache: dict[str, tuple[list[int], list[bool]]] = {}
    ids, masks = [], []
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = tokenize_prompt(tokenizer, prompt, max_len, fmt)
        ids.append(cache[prompt][0])
        masks.append(cache[prompt][1])
    return torch.tensor(ids, dtype=torch.long), torch.tensor(masks, dtype=torch.bool)
