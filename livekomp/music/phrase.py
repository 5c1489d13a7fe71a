"""What a composer writes: notes in beats, grouped by part, one bar at a time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

# The name users give the base models (no adapter): `--style base`, a cue's `style = "base"`.
BASE_STYLE = "base"
# A style (adapter) name: a file name without surprises, and not a bare number, since a number
# selects a style by position (a program change: 1 = base, 2 = the first style loaded, ...).


class Part(Enum):
    MELODY = "melody"
    CHORDS = "chords"
    BASS = "bass"
    DRUMS = "drums"


# 0-based MIDI channels: melody on 1, chords on 2, bass on 3, drums on General MIDI's 10.
PART_CHANNELS: dict[Part, int] = {
    Part.MELODY: 0,
    Part.CHORDS: 1,
    Part.BASS: 2,
    Part.DRUMS: 9,
}


@dataclass(frozen=True, slots=True)
class Note:
    """One note; `start_beats` is relative to the start of its bar."""

    pitch: int
    start_beats: float
    duration_beats: float
    velocity: int

    def __post_init__(self) -> None:
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"pitch must be 0..127, got {self.pitch}")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"velocity must be 1..127, got {self.velocity}")
        if self.start_beats < 0:
            raise ValueError(f"start_beats must be >= 0, got {self.start_beats}")
        if self.duration_beats <= 0:
            raise ValueError(f"duration_beats must be > 0, got {self.duration_beats}")

    @property
    def end_beats(self) -> float:
        return self.start_beats + self.duration_beats


@dataclass(frozen=True, slots=True)
class BarRequest:
    """What the performer asks a composer for: bar `index` of the piece, in this mood."""

    index: int
    beats_per_bar: int
    tonic: int  # pitch class 0..11 of the set's key
    valence: float  # -1 sad .. +1 happy
    arousal: float  # -1 calm .. +1 excited
    density: float = 0.5  # 0..1, the performer's density control; 0.5 is neutral
    intensity: float = 0.5  # 0..1, overall dynamics; 0.5 is neutral
    style: str = BASE_STYLE  # the style adapter to compose with, or the base models


STYLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_style(name: str) -> str:
    """A style name as a user writes it, checked: a `BarRequest.style`.

    Raises ValueError, saying what a style name looks like; callers add where it came from.
    """
    name = name.strip()
    if not STYLE_NAME.fullmatch(name) or name.isdigit():
        raise ValueError(
            f"{name!r} is not a style name (up to 64 letters, digits, '_', '.', '-', starting "
            "with a letter or digit, not a bare number)"
        )
    return name


def adapters(styles: Iterable[str]) -> tuple[str, ...]:
    """The style adapters among `styles` (the base models are none), each once, in order."""
    return tuple(dict.fromkeys(style for style in styles if style != BASE_STYLE))


@dataclass(frozen=True, slots=True)
class ComposedBar:
    """One bar of music for every part, with what the composer decided, for the report."""

    index: int
    beats_per_bar: int
    parts: dict[Part, tuple[Note, ...]]
    composer: str
    mode: str = ""  # e.g. "dorian"
    chord: str = ""  # e.g. "ii7"
    info: dict[str, object] = field(default_factory=dict)

    def note_count(self, part: Part) -> int:
        return len(self.parts.get(part, ()))
