"""Readable, unambiguous display strings for GPT-2's byte-level BPE tokens.

GPT-2 tokens are byte strings; the tokenizer spells them with a byte-to-unicode table
(`Ġ` for space, `Ċ` for newline), and a Chinese character or an emoji is often split
over two or three tokens whose bytes are not valid UTF-8 on their own. We show:

- spaces as `␣`, newlines as `↵`, tabs as `⇥`, carriage returns as `␍`;
- bytes that do not form a whole UTF-8 character as hex, grouped: `⟨e4 ba⟩`;
- other control and invisible characters (NUL, zero-width space, bidi marks) as `⟨U+200B⟩`.

The result is plain text. It is still untrusted: callers must never render it as
HTML or Markdown (viz escapes it for Plotly, pages use text-only elements).
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
# Unicode categories that draw nothing or reorder text: control, format, separators, unassigned.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table (as in openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def piece_to_bytes(piece: str) -> bytes:
    """`Ġcat` -> b' cat'. Characters outside the byte table (special tokens) are UTF-8 encoded."""
    table = _unicode_to_byte()
    out = bytearray()
    for ch in piece:
        b = table.get(ch)
        if b is None:
            out += ch.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


def _char_len(lead: int) -> int:
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0  # a continuation byte or an invalid lead


def _show_char(ch: str) -> str:
    if ch in _VISIBLE:
        return _VISIBLE[ch]
    if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
        return f"⟨U+{ord(ch):04X}⟩"
    return ch


def bytes_to_display(raw: bytes) -> str:
    """Readable text for a token's bytes; invalid UTF-8 runs become `⟨e4 ba⟩`."""
    parts: list[str] = []
    bad: list[int] = []
    i = 0
    while i < len(raw):
        n = _char_len(raw[i])
        ch = None
        if n:
            try:
                ch = raw[i : i + n].decode("utf-8")
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            bad.append(raw[i])
            i += 1
            continue
        if bad:
            parts.append("⟨" + " ".join(f"{b:02x}" for b in bad) + "⟩")
            bad = []
        parts.append(_show_char(ch))
        i += n
    if bad:
        parts.append("⟨" + " ".join(f"{b:02x}" for b in bad) + "⟩")
    return "".join(parts)


def display_token(piece: str | None, token_id: int, special: frozenset[str] = frozenset()) -> str:
    """Display string for one token given the tokenizer's raw piece."""
    if piece is None:
        return f"⟨id {token_id}⟩"
    if piece in special:
        return piece
    return bytes_to_display(piece_to_bytes(piece))


def display_tokens(lm, ids) -> list[str]:
    """Display strings for token ids, using `lm`'s tokenizer (see LoadedModel.id_to_piece)."""
    ids = [int(i) for i in ids]
    special = frozenset(getattr(lm.tokenizer, "all_special_tokens", []) or [])
    return [display_token(p, i, special) for p, i in zip(lm.id_to_piece(ids), ids)]


def token_bytes(lm, ids) -> list[bytes]:
    """The bytes each token id stands for (special tokens: their text in UTF-8)."""
    ids = [int(i) for i in ids]
    return [b"" if p is None else piece_to_bytes(p) for p in lm.id_to_piece(ids)]


def characters_across_tokens(pieces: list[bytes]) -> list[tuple[str, int, int]]:
    """(character, first token, last token) for every character whose UTF-8 bytes are split
    over more than one token (a Chinese character or an emoji over two or three tokens).

    Bytes are read as one stream in token order; a character that starts in token i and
    ends in token j > i is reported with (i, j)."""
    owner = [i for i, p in enumerate(pieces) for _ in p]
    stream = b"".join(pieces)
    out = []
    k = 0
    while k < len(stream):
        n = _char_len(stream[k]) or 1
        chunk = stream[k : k + n]
        try:
            ch = chunk.decode("utf-8")
        except UnicodeDecodeError:
            k += 1
            continue
        if owner[k] != owner[k + n - 1]:
            out.append((_show_char(ch), owner[k], owner[k + n - 1]))
        k += n
    return out
