"""Short spoken responses to a mood word or intent, from a lines file the performer can edit.

The package ships `livekomp/data/lines.toml`; `--lines FILE` replaces it. A word without lines of
its own borrows those of the nearest word on the valence/arousal plane, so any understood intent
gets an answer. Each word's lines are used in turn: the same inputs give the same answers.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from livekomp.affect import MOOD_WORDS, Mood, interpret
from livekomp.tomlfile import read_toml

DEFAULT_LINES = Path(__file__).resolve().parents[1] / "data" / "lines.toml"
MAX_RESPONSE_CHARS = 200


class LinesError(ValueError):
    """A lines file that cannot be used; the message names the file and the key."""


class Responses:
    """The answers to mood words and intents."""

    def __init__(self, lines: dict[str, tuple[str, ...]]) -> None:
        self.lines = lines
        self._used: Counter[str] = Counter()

    def word_for(self, valence: float, arousal: float) -> str | None:
        """The word with lines nearest to a point of the valence/arousal plane."""
        if not self.lines:
            return None
        return min(
            self.lines,
            key=lambda w: (math.dist(MOOD_WORDS[w], (valence, arousal)), w),
        )

    def respond(self, text: str, current: Mood) -> str | None:
        """The next line answering mood text `text` (spoken from mood `current`), or None."""
        point = interpret(text, current)
        if point is None:
            return None
        words = [w for w in text.lower().split() if w in self.lines]
        word = words[0] if len(words) == 1 else self.word_for(*point)
        if word is None:
            return None
        choices = self.lines[word]
        line = choices[self._used[word] % len(choices)]
        self._used[word] += 1
        return line


def load_responses(path: str | Path | None = None) -> Responses:
    """Read a lines file (default: the shipped one). Fails naming the file and the key."""
    path = Path(path) if path is not None else DEFAULT_LINES
    data = read_toml(path, LinesError, "lines")
    table = data.get("responses", {})
    if not isinstance(table, dict):
        raise LinesError(f"{path}: responses: expected a [responses] table")
    lines: dict[str, tuple[str, ...]] = {}
    for word, entries in table.items():
        where = f"{path}: responses.{word}"
        if word not in MOOD_WORDS:
            raise LinesError(
                f"{where}: not a mood word livekomp knows; try one of: {', '.join(MOOD_WORDS)}"
            )
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or not entries:
            raise LinesError(f"{where}: expected a list of lines")
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                raise LinesError(f"{where}: {entry!r} is not a line of text")
            if len(entry) > MAX_RESPONSE_CHARS:
                raise LinesError(f"{where}: a line is longer than {MAX_RESPONSE_CHARS} characters")
        lines[word] = tuple(e.strip() for e in entries)
    return Responses(lines)
