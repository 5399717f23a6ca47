"""Prompt formatting (openpi's) and the two tokenizer back-ends."""

from __future__ import annotations

import io

import sentencepiece as spm

from ript_core.policy.io.tokenizer import (
    SentencePieceTokenizer,
    build_word_tokenizer,
    format_prompt,
    load_tokenizer,
    tokenize_prompt,
)


def test_openpi_prompt_cleaning():
    assert format_prompt("  put_the bowl\non the plate \n") == "put the bowl on the plate"
    assert format_prompt("Pick Up") == "Pick Up"  # pi0 does not lower-case


def test_word_tokenizer_layout_and_padding():
    tok = build_word_tokenizer(["pick up the red block", "pick up the blue block"])
    ids, mask = tokenize_prompt(tok, " pick_up the red block\n", 10)
    words = [tok.tk.id_to_token(i) for i in ids[: sum(mask)]]
    assert words == ["<bos>", "pick", "up", "the", "red", "block", "\n"]
    assert ids[0] == tok.bos_id == 1 and mask == [True] * 7 + [False] * 3
    assert ids[7:] == [tok.pad_id] * 3 == [0, 0, 0]
    # unknown words map to <unk>; case is folded
    assert tok.encode("Pick the purple block") == [
        tok.tk.token_to_id(w) for w in ("pick", "the", "<unk>", "block")
    ]


def test_truncation_keeps_max_len():
    tok = build_word_tokenizer(["a b c d e f g h"])
    ids, mask = tokenize_prompt(tok, "a b c d e f g h", 5)
    assert len(ids) == 5 and all(mask)


def test_word_tokenizer_save_load(tmp_path):
    tok = build_word_tokenizer(["pick up the green block"])
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert tokenize_prompt(again, "pick up the green block", 12) == tokenize_prompt(
        tok, "pick up the green block", 12
    )


def test_sentencepiece_tokenizer_openpi_layout(tmp_path):
    """A tiny sentencepiece model stands in for PaliGemma's: BOS + encode(text) + encode('\\n') separately."""
    model = io.BytesIO()
    texts = [
        f"pick up the {c} block and put it in the {d} bowl"
        for c in ("red", "green")
        for d in ("blue", "yellow")
    ]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 20),
        model_writer=model,
        vocab_size=28,
        minloglevel=2,
        user_defined_symbols=["\n"],
        remove_extra_whitespaces=False,
    )
    path = tmp_path / "tokenizer.model"
    path.write_bytes(model.getvalue())
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, SentencePieceTokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    ids, mask = tokenize_prompt(tok, "pick_up the red block", 24)
    expected = sp.encode("pick up the red block", add_bos=True) + sp.encode("\n")
    assert ids[: len(expected)] == expected and sum(mask) == len(expected)
    assert ids[len(expected) :] == [0] * (24 - len(expected))
    out = tmp_path / "copy"
    out.mkdir()
    tok.save(out)
    assert (out / "tokenizer.model").read_bytes() == path.read_bytes()
