"""A reader of intent: a sentence → a (valence, arousal) point, with the words that decided it.

Valence comes from VADER (vaderSentiment 3.3.2, MIT, lexicon bundled; Hutto & Gilbert 2014),
which handles negation, intensifiers/dampeners and "but". Arousal comes from the cue list
below, the project's own: its categories (high: anger, fear, excitement, agitation; low:
fatigue, calm, sadness, boredom) follow the quadrants of Russell's circumplex (1980) as used in
`livekomp.affect`. The mood words and nudges of `affect.interpret` keep their meaning: a text
that reader understands is read by it, unchanged.

Not done yet (issue 16): arcs ("from grief to hope"), the eval set, `compose`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from livekomp.affect import MOOD_NUDGES, MOOD_WORDS, NUDGE_SCALES, Mood, clamp, interpret

MAX_CHARS = 2000

AROUSAL_CUES: dict[str, float] = {
    # high: anger, fear, excitement, agitation
    "furious": 0.9,
    "angry": 0.8,
    "mad": 0.7,
    "rage": 0.9,
    "pissed": 0.8,
    "scared": 0.7,
    "panic": 0.9,
    "panicking": 0.9,
    "nervous": 0.6,
    "stressed": 0.7,
    "worried": 0.5,
    "excited": 0.8,
    "thrilled": 0.8,
    "hyped": 0.8,
    "pumped": 0.8,
    "wild": 0.7,
    "restless": 0.6,
    # low: fatigue, calm, sadness, boredom
    "tired": -0.8,
    "exhausted": -0.9,
    "sleepy": -0.9,
    "drained": -0.8,
    "calm": -0.7,
    "peaceful": -0.7,
    "relaxed": -0.6,
    "chill": -0.6,
    "sad": -0.4,
    "hopeless": -0.6,
    "stuck": -0.5,
    "numb": -0.7,
    "bored": -0.7,
    "empty": -0.6,
    "lonely": -0.4,
}
INTENSIFIERS = {"so": 1.3, "very": 1.3, "really": 1.3, "extremely": 1.5, "a": 1.0}
DAMPENERS = {"little": 0.5, "bit": 0.5, "slightly": 0.5, "somewhat": 0.6}
NEGATIONS = {"not", "no", "never", "isn't", "aren't", "don't", "anymore"}


@dataclass(frozen=True)
class Reading:
    valence: float
    arousal: float
    words: tuple[str, ...] = field(default_factory=tuple)
    why: str = ""


_analyzer = None


def _vader():
    global _analyzer
    if _analyzer is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


def read(text: str, current: Mood | None = None) -> Reading:
    """Text → Reading; bad text gives a neutral reading with one line saying why."""
    current = current or Mood()
    if not isinstance(text, str) or not text.strip():
        return Reading(0.0, 0.0, why="empty text")
    if len(text) > MAX_CHARS:
        return Reading(0.0, 0.0, why=f"text longer than {MAX_CHARS} characters")
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    words = re.findall(r"[a-z']+", clean.lower())
    if not words:
        return Reading(0.0, 0.0, why="no words to read")
    known = MOOD_WORDS.keys() | MOOD_NUDGES.keys() | NUDGE_SCALES.keys() | {"a", "and"}
    old = interpret(clean, current)
    if old is not None and all(w in known for w in words):
        # a text of mood words and nudges only: read exactly as before
        return Reading(old[0], old[1], tuple(words), why="mood words")
    valence = _vader().polarity_scores(clean)["compound"]
    arousal, cues, scale, negated = 0.0, [], 1.0, False
    for word in words:
        if word in NEGATIONS:
            negated = True
        elif word in INTENSIFIERS:
            scale = INTENSIFIERS[word]
        elif word in DAMPENERS:
            scale = DAMPENERS[word]
        elif word in AROUSAL_CUES:
            a = AROUSAL_CUES[word] * scale * (-0.5 if negated else 1.0)
            arousal += a
            cues.append(word)
            scale, negated = 1.0, False
    if cues:
        arousal /= len(cues)
    if valence == 0.0 and not cues:
        return Reading(0.0, 0.0, why="no feeling word found")
    return Reading(clamp(valence, -1, 1), clamp(arousal, -1, 1), tuple(cues), why="lexicon")
