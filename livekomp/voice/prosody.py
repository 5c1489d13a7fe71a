"""Prosody from the mood: how fast, how loud, how high and how lively a line is spoken.

One table, `PROSODY_GRID`, gives the delivery at nine points of the valence/arousal plane; any
mood in between is read off it by bilinear interpolation. Slow and soft for grief (sad, calm),
quick and bright for joy (happy, excited), clipped and loud for anger (sad, excited).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prosody:
    """A line's delivery, independent of the backend that speaks it.

    `rate` multiplies the voice's own speed (0.8 = 20 % slower); `volume` is the line's peak
    level (0..1, before the output level); `pitch_st` shifts the pitch in semitones;
    `liveliness` scales the voice's own variation (piper's noise scales), 1 = as trained.
    Backends use what they can: piper has no pitch control, espeak-ng no liveliness.
    """

    rate: float = 1.0
    volume: float = 0.8
    pitch_st: float = 0.0
    liveliness: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "rate": 0.25 <= self.rate <= 4.0,
            "volume": 0.0 <= self.volume <= 1.0,
            "pitch_st": -12.0 <= self.pitch_st <= 12.0,
            "liveliness": 0.0 <= self.liveliness <= 3.0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise ValueError(f"prosody {name} {value!r} is out of range")

    def rounded(self) -> Prosody:
        """The same delivery to 2 decimals: nearby moods share one cached rendering."""
        return Prosody(
            round(self.rate, 2),
            round(self.volume, 2),
            round(self.pitch_st, 1),
            round(self.liveliness, 2),
        )


# (valence, arousal) → delivery. Rows: sad, neutral, happy; columns: calm, neutral, excited.
PROSODY_GRID: dict[tuple[int, int], Prosody] = {
    (-1, -1): Prosody(rate=0.78, volume=0.50, pitch_st=-2.5, liveliness=0.55),  # grief, depressed
    (-1, 0): Prosody(rate=0.88, volume=0.62, pitch_st=-1.5, liveliness=0.75),  # sad, dark
    (-1, 1): Prosody(rate=1.12, volume=0.95, pitch_st=0.5, liveliness=1.05),  # anger, fear
    (0, -1): Prosody(rate=0.86, volume=0.58, pitch_st=-1.0, liveliness=0.75),  # sleepy, tired
    (0, 0): Prosody(rate=1.00, volume=0.75, pitch_st=0.0, liveliness=1.00),  # neutral
    (0, 1): Prosody(rate=1.14, volume=0.90, pitch_st=1.5, liveliness=1.15),  # excited, tense
    (1, -1): Prosody(rate=0.92, volume=0.66, pitch_st=0.5, liveliness=0.95),  # serene, tender
    (1, 0): Prosody(rate=1.04, volume=0.80, pitch_st=1.5, liveliness=1.15),  # happy, bright
    (1, 1): Prosody(rate=1.18, volume=0.95, pitch_st=3.0, liveliness=1.30),  # joy, triumphant
}

_FIELDS = ("rate", "volume", "pitch_st", "liveliness")


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def prosody_for(valence: float, arousal: float) -> Prosody:
    """The delivery for a mood, interpolated from `PROSODY_GRID` and rounded for caching."""
    valence = min(1.0, max(-1.0, valence))
    arousal = min(1.0, max(-1.0, arousal))
    v0 = -1 if valence < 0 else 0
    a0 = -1 if arousal < 0 else 0
    tv, ta = valence - v0, arousal - a0
    corners = (
        PROSODY_GRID[(v0, a0)],
        PROSODY_GRID[(v0 + 1, a0)],
        PROSODY_GRID[(v0, a0 + 1)],
        PROSODY_GRID[(v0 + 1, a0 + 1)],
    )
    values = {}
    for name in _FIELDS:
        low = _lerp(getattr(corners[0], name), getattr(corners[1], name), tv)
        high = _lerp(getattr(corners[2], name), getattr(corners[3], name), tv)
        values[name] = _lerp(low, high, ta)
    return Prosody(**values).rounded()
