"""The valence/arousal plane: the `Mood` value every stage passes on, and the words that name
places on it.

Mood words and short intent texts ("a bit calmer", "joy") map to points on Russell's
circumplex. Shared by the setlist, the mood state, the voice's lines and the reports, so it
imports nothing of livekomp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Points on the valence/arousal plane (Russell 1980 circumplex, placed by the angles reported
# there and in Posner et al. 2005; radius < 1 so the extremes stay reachable by the faders).
MOOD_WORDS: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "joy": (0.8, 0.5),
    "happy": (0.8, 0.4),
    "elated": (0.7, 0.7),
    "excited": (0.6, 0.8),
    "triumphant": (0.8, 0.8),
    "playful": (0.6, 0.5),
    "hopeful": (0.5, 0.2),
    "content": (0.7, -0.2),
    "tender": (0.6, -0.4),
    "relaxed": (0.6, -0.6),
    "serene": (0.5, -0.7),
    "calm": (0.4, -0.7),
    "dreamy": (0.3, -0.6),
    "sleepy": (0.1, -0.9),
    "tired": (-0.2, -0.8),
    "bored": (-0.4, -0.7),
    "nostalgic": (-0.2, -0.3),
    "melancholy": (-0.5, -0.5),
    "sad": (-0.7, -0.4),
    "grief": (-0.8, -0.5),
    "depressed": (-0.8, -0.7),
    "lonely": (-0.6, -0.4),
    "anxious": (-0.5, 0.6),
    "tense": (-0.4, 0.7),
    "afraid": (-0.6, 0.7),
    "fear": (-0.6, 0.7),
    "angry": (-0.7, 0.8),
    "anger": (-0.7, 0.8),
    "furious": (-0.8, 0.9),
    "dark": (-0.6, 0.0),
    "bright": (0.6, 0.2),
}

# Relative intents: a word in the text moves the current point by this much.
MOOD_NUDGES: dict[str, tuple[float, float]] = {
    "happier": (0.3, 0.0),
    "brighter": (0.3, 0.0),
    "sadder": (-0.3, 0.0),
    "darker": (-0.3, 0.0),
    "calmer": (0.0, -0.3),
    "softer": (0.0, -0.3),
    "quieter": (0.0, -0.3),
    "slower": (0.0, -0.2),
    "wilder": (0.0, 0.3),
    "louder": (0.0, 0.3),
    "faster": (0.0, 0.2),
    "intense": (0.0, 0.3),
}

# Words that scale a nudge ("a bit calmer", "much darker").
NUDGE_SCALES: dict[str, float] = {
    "bit": 0.5,
    "little": 0.5,
    "slightly": 0.5,
    "much": 1.7,
    "very": 1.7,
    "way": 2.0,
}


@dataclass(frozen=True, slots=True)
class Mood:
    """A snapshot of the state, as the composer sees it."""

    valence: float = 0.0
    arousal: float = 0.0
    density: float = 0.5
    intensity: float = 0.5

    def as_dict(self) -> dict[str, float]:
        return {
            "valence": round(self.valence, 4),
            "arousal": round(self.arousal, 4),
            "density": round(self.density, 4),
            "intensity": round(self.intensity, 4),
        }


def clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def interpret(text: str, current: Mood) -> tuple[float, float] | None:
    """A mood word or short intent text → a (valence, arousal) point, or None if not understood.

    Absolute words are averaged ("calm joy"); relative words nudge the current point
    ("a bit calmer"). Absolute words win over nudges when both appear, then nudges apply.
    """
    words = re.findall(r"[a-z]+", text.lower())
    points = [MOOD_WORDS[w] for w in words if w in MOOD_WORDS]
    if points:
        valence = sum(p[0] for p in points) / len(points)
        arousal = sum(p[1] for p in points) / len(points)
    else:
        valence, arousal = current.valence, current.arousal
    scale = 1.0
    nudged = False
    for word in words:
        if word in NUDGE_SCALES:
            scale = NUDGE_SCALES[word]
        elif word in MOOD_NUDGES:
            dv, da = MOOD_NUDGES[word]
            valence += dv * scale
            arousal += da * scale
            scale = 1.0
            nudged = True
    if not points and not nudged:
        return None
    return clamp(valence, -1.0, 1.0), clamp(arousal, -1.0, 1.0)
