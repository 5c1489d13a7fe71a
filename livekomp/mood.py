"""The performer's emotion state: valence and arousal (plus density and intensity), smoothed.

A jumpy fader must never make a jumpy performance, so live moves approach their target with
exponential slew (time constant `slew_s`). Setlist ramps glide linearly over a given time instead.
Words and intents are read through `livekomp.affect`, the plane every stage shares.
"""

from __future__ import annotations

import math

from livekomp.affect import Mood, clamp, interpret
from livekomp.inputs.events import PARAM_RANGES, ControlEvent, Param


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
                clamp(float(event.value), low, high), now_s, event.glide_s
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
