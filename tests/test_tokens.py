"""Token display: readable, unambiguous, never mojibake."""
from __future__ import annotations

import pytest

from core.tokens import bytes_to_display, display_token, display_tokens, piece_to_bytes


@pytest.mark.parametrize("raw, shown", [
    (b" cat", "␣cat"),
    (b"\n", "↵"),
    (b"\t\r", "⇥␍"),
    (b"  ", "␣␣"),
    ("你".encode(), "你"),
    ("你".encode()[:2], "⟨e4 bd⟩"),           # a Chinese character split across tokens
    ("你".encode()[2:], "⟨a0⟩"),
    (b" " + "😀".encode()[:2], "␣⟨f0 9f⟩"),     # an emoji's first half after a space
    (b"\x00", "⟨U+0000⟩"),                    # NUL is visible, not an invisible byte
    ("\u200b".encode(), "⟨U+200B⟩"),         # zero-width space
    ("\u202e".encode(), "⟨U+202E⟩"),         # right-to-left override cannot flip the label
    (b"<img src=x>", "<img␣src=x>"),          # text stays text; escaping is the renderer's job
])
def test_bytes_to_display(raw, shown):
    assert bytes_to_display(raw) == shown


def test_piece_to_bytes_inverts_gpt2_byte_alphabet():
    assert piece_to_bytes("Ġcat") == b" cat"
    assert piece_to_bytes("Ċ") == b"\n"
    assert piece_to_bytes("ä½") == "你".encode()[:2]


def test_special_and_unknown_tokens():
    special = frozenset({"<|endoftext|>"})
    assert display_token("<|endoftext|>", 0, special) == "<|endoftext|>"
    assert display_token(None, 99999) == "⟨id 99999⟩"


def test_tokenizer_pieces_of_chinese_and_emoji_read_back(tiny_lm):
    text = " 你好世界 😀👍🏽"
    ids = tiny_lm.encode(text)
    shown = display_tokens(tiny_lm, ids)
    assert not any("Ġ" in s or "Ã" in s or "ä" in s for s in shown)  # no byte-alphabet mojibake
    # Whole characters in one token read as themselves; fragments as hex, and the bytes add up.
    raw = b"".join(piece_to_bytes(p) for p in tiny_lm.id_to_piece(ids))
    assert raw.decode("utf-8") == text
    assert shown[0].startswith("␣")
