"""The one event type every input produces; nothing downstream knows where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from livekomp.clock.clock import MAX_BPM, MIN_BPM


class Param(Enum):
    VALENCE = "valence"  # float -1..1
    AROUSAL = "arousal"  # float -1..1
    DENSITY = "density"  # float 0..1
    INTENSITY = "intensity"  # float 0..1
    TEMPO = "tempo"  # float BPM
    MOOD = "mood"  # str: a mood word or short intent text
    SAY = "say"  # str: a line for the voice
    SCENE = "scene"  # str or int: a scene/section name
    STYLE = "style"  # str: a style adapter's name, "base", or a number (1 = base, 2 = 1st style)
    START = "start"  # no value
    STOP = "stop"  # no value
    PANIC = "panic"  # no value


# Continuous parameters and the range their values live in once mapped.
PARAM_RANGES: dict[Param, tuple[float, float]] = {
    Param.VALENCE: (-1.0, 1.0),
    Param.AROUSAL: (-1.0, 1.0),
    Param.DENSITY: (0.0, 1.0),
    Param.INTENSITY: (0.0, 1.0),
    Param.TEMPO: (MIN_BPM, MAX_BPM),
}

TEXT_PARAMS = frozenset({Param.MOOD, Param.SAY, Param.SCENE, Param.STYLE})
TRIGGER_PARAMS = frozenset({Param.START, Param.STOP, Param.PANIC})


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A parameter change or a trigger.

    `glide_s` asks the mood to glide to the value over that many seconds (setlist ramps);
    None means "use the live slew smoothing"; 0 means jump. `at_beat` pins a change to a beat
    (a setlist tempo cue lands on its bar line); None means "as soon as it can".
    """

    param: Param
    value: float | str | None = None
    source: str = ""
    glide_s: float | None = None
    at_beat: float | None = None
