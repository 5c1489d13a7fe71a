"""The performer's emotion state: valence and arousal (plus density and intensity), smoothed.

A jumpy fader must never make a jumpy performance, so live moves approach their target with
exponential slew (time constant `slew_s`). Setlist ramps glide linearly over a given time instead.
Mood words and short intent texts ("a bit calmer", "joy") map to points on Russell's circumplex.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from livekomp.inputs.events import PARAM_RANGES, ControlEvent, Param

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


def _clamp(value: float, low: float, high: float) -> float:
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
    return _clamp(valence, -1.0, 1.0), _clamp(arousal, -1.0, 1.0)


class Smoothed:
    """One parameter approaching its target: exponential slew, or a linear glide."""

    def __init__(self, value: float, slew_s: float) -> None:
        self._value = value
        self._target = value
        self._slew_s = slew_s
        self._last_s: float | None = None
        self._glide: tuple[float, float, float] | None = None  # (from, start_s, length_s)

    @property
    def target(self) -> float:
        return self._target

    def set(self, target: float, now_s: float, glide_s: float | None) -> None:
        current = self.value_at(now_s)
        self._target = target
        if glide_s is None:
            self._glide = None
        elif glide_s <= 0:
            self._glide = None
            self._value = target
        else:
            self._glide = (current, now_s, glide_s)

    def value_at(self, now_s: float) -> float:
        if self._glide is not None:
            start_value, start_s, length_s = self._glide
            progress = min(1.0, max(0.0, (now_s - start_s) / length_s))
            self._value = start_value + (self._target - start_value) * progress
            if progress >= 1.0:
                self._glide = None
        elif self._last_s is not None and now_s > self._last_s:
            if self._slew_s <= 0:
                self._value = self._target
            else:
                keep = math.exp(-(now_s - self._last_s) / self._slew_s)
                self._value = self._target + (self._value - self._target) * keep
        self._last_s = now_s if self._last_s is None else max(self._last_s, now_s)
        return self._value


SMOOTHED_PARAMS = (Param.VALENCE, Param.AROUSAL, Param.DENSITY, Param.INTENSITY)


class MoodState:
    """The live state. `apply` takes control events; `at(now_s)` reads a smoothed snapshot."""

    def __init__(self, initial: Mood | None = None, *, slew_s: float = 0.3) -> None:
        initial = initial or Mood()
        self._params = {
            Param.VALENCE: Smoothed(initial.valence, slew_s),
            Param.AROUSAL: Smoothed(initial.arousal, slew_s),
            Param.DENSITY: Smoothed(initial.density, slew_s),
            Param.INTENSITY: Smoothed(initial.intensity, slew_s),
        }

    def target(self) -> Mood:
        return Mood(*(self._params[p].target for p in SMOOTHED_PARAMS))

    def at(self, now_s: float) -> Mood:
        return Mood(*(self._params[p].value_at(now_s) for p in SMOOTHED_PARAMS))

    def apply(self, event: ControlEvent, now_s: float) -> bool:
        """Apply a mood event; False when it is not a mood event or a word is not understood."""
        if event.param in self._params:
            if not isinstance(event.value, int | float) or isinstance(event.value, bool):
                raise TypeError(f"{event.param.value} needs a number, got {event.value!r}")
            low, high = PARAM_RANGES[event.param]
            self._params[event.param].set(
                _clamp(float(event.value), low, high), now_s, event.glide_s
            )
            return True
        if event.param is Param.MOOD:
            point = interpret(str(event.value), self.target())
            if point is None:
                return False
            self._params[Param.VALENCE].set(point[0], now_s, event.glide_s)
            self._params[Param.AROUSAL].set(point[1], now_s, event.glide_s)
            return True
        return False
