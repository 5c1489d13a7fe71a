"""Cleaning a line before it is spoken: whatever a controller or a file sends, the show goes on.

Control and format characters go, whitespace collapses, markup a backend would read as commands
(piper's `[[ phonemes ]]`, SSML-like `<tags>`) is dropped, and long text is cut into sentences
(and sentences into pieces) a voice renders quickly. Text with nothing speakable is refused.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LINE_CHARS = 600  # beyond this a line is cut at a sentence boundary
MAX_SENTENCE_CHARS = 160  # a longer sentence is split at a comma or a space
MAX_SENTENCES = 8

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")
_MARKUP = re.compile(r"\[\[.*?\]\]|<[^>]{0,200}>|[\[\]{}<>\\|^~`_*#@$]")
_SPEAKABLE = re.compile(r"\w", re.UNICODE)


class BadText(ValueError):
    """A line with nothing to speak in it."""


def _visible(text: str) -> str:
    kept = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category.startswith("C") or category in ("Zl", "Zp"):
            kept.append(" ")  # control, format, surrogate, private use, unassigned
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def _split_long(sentence: str) -> list[str]:
    pieces = []
    while len(sentence) > MAX_SENTENCE_CHARS:
        head = sentence[:MAX_SENTENCE_CHARS]
        cut = max(head.rfind(", "), head.rfind(" "))
        if cut < MAX_SENTENCE_CHARS // 3:
            cut = MAX_SENTENCE_CHARS  # one very long word: cut it
        pieces.append(sentence[:cut].rstrip(" ,"))
        sentence = sentence[cut:].lstrip(" ,")
    if sentence:
        pieces.append(sentence)
    return pieces


def clean_line(text: object) -> list[str]:
    """The sentences to speak for `text`, cleaned; raises `BadText` when nothing is speakable."""
    if not isinstance(text, str):
        raise BadText(f"a line must be text, got {type(text).__name__}")
    text = _MARKUP.sub(" ", _visible(text))
    text = " ".join(text.split())
    sentences: list[str] = []
    used = 0
    for sentence in _SENTENCE_END.split(text):
        for piece in _split_long(sentence.strip()):
            if not _SPEAKABLE.search(piece):
                continue
            if len(sentences) >= MAX_SENTENCES or used + len(piece) > MAX_LINE_CHARS:
                return sentences or [piece[:MAX_SENTENCE_CHARS]]
            sentences.append(piece)
            used += len(piece)
    if not sentences:
        raise BadText("nothing speakable in the line")
    return sentences
