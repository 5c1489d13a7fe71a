"""Music theory as tables: key names, modes, scale degrees, diatonic chords and a key finder.

Everything here is pure and small. Pitches are MIDI note numbers, pitch classes are 0..11 with
C = 0, and scale degrees count steps of a mode: degree 0 is the tonic, 7 the tonic an octave up,
-1 the leading tone below. Public chord degrees are 1-based (I..VII) because that is how
musicians say them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

PITCH_CLASS_NAMES: tuple[str, ...] = (
    "C",
    "C#",
    "D",
    "Eb",
    "E",
    "F",
    "F#",
    "G",
    "Ab",
    "A",
    "Bb",
    "B",
)

_LETTER_PITCH_CLASSES: dict[str, int] = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL_SHIFTS: dict[str, int] = {"#": 1, "♯": 1, "b": -1, "♭": -1}
# What may follow the tonic: nothing, or a word for major or minor ("A minor", "Ebm", "F#maj").
_KEY_QUALITY_WORDS: frozenset[str] = frozenset(
    {"", "m", "min", "minor", "maj", "major", "M", "aeolian", "ionian"}
)
_KEY_PATTERN = re.compile(r"^\s*([A-Ga-g])([#♯b♭]*)\s*([A-Za-z]*)\s*$")


def parse_key(text: str) -> int:
    """Return the tonic pitch class (0..11) named by `text`: "C", "F#", "Bb", "A minor", "Ebm".

    The quality word is accepted and ignored: livekomp's mode comes from valence, the key only
    fixes the tonic. Raises ValueError naming the text when it is not a key.
    """
    match = _KEY_PATTERN.match(text)
    if match is None or match.group(3) not in _KEY_QUALITY_WORDS:
        raise ValueError(f"not a key: {text!r} (expected e.g. 'C', 'F#', 'Bb', 'A minor', 'Ebm')")
    letter, accidentals, _quality = match.groups()
    shift = sum(_ACCIDENTAL_SHIFTS[a] for a in accidentals)
    return (_LETTER_PITCH_CLASSES[letter.upper()] + shift) % 12


def pitch_class_name(pitch: int) -> str:
    """Name of a pitch's pitch class, with flats for the black keys except F#."""
    return PITCH_CLASS_NAMES[pitch % 12]


# --- modes ----------------------------------------------------------------------------------------

# Semitones above the tonic of each scale step.
MODES: dict[str, tuple[int, ...]] = {
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
MODE_ALIASES: dict[str, str] = {"ionian": "major", "aeolian": "minor"}

# The quality a key finder should hear in each mode: a major or a minor third above the tonic.
MODE_QUALITY: dict[str, str] = {
    name: ("major" if steps[2] == 4 else "minor") for name, steps in MODES.items()
}

# Valence picks the mode: the first row whose threshold the valence reaches. Brightest on top.
MODE_BY_VALENCE: tuple[tuple[float, str], ...] = (
    (0.85, "lydian"),
    (0.15, "major"),
    (-0.05, "mixolydian"),
    (-0.35, "dorian"),
    (-0.85, "minor"),
    (-math.inf, "phrygian"),
)


def mode_steps(mode: str) -> tuple[int, ...]:
    """The interval table of `mode` (aliases such as "ionian" accepted)."""
    name = MODE_ALIASES.get(mode, mode)
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}") from None


def brightness(mode: str) -> int:
    """How bright a mode sounds: the sum of its intervals (Lydian 39 ... Locrian 33).

    Each raised step adds one, which orders the church modes exactly as the ear does.
    """
    return sum(mode_steps(mode))


def mode_for_valence(valence: float) -> str:
    """The mode for a valence in -1..1: Lydian and major when happy, minor and Phrygian when sad."""
    return next(mode for threshold, mode in MODE_BY_VALENCE if valence >= threshold)


# --- scale degrees --------------------------------------------------------------------------------

MIDDLE_C = 60


def degree_pitch(tonic: int, mode: str, degree: int) -> int:
    """MIDI pitch of scale `degree` (0 = the tonic just at or above middle C; may be negative)."""
    steps = mode_steps(mode)
    octave, step = divmod(degree, len(steps))
    return MIDDLE_C + tonic % 12 + 12 * octave + steps[step]


def nearest_degree(tonic: int, mode: str, pitch: int) -> int:
    """The scale degree whose pitch is closest to `pitch` (the lower one on a tie)."""
    steps = mode_steps(mode)
    octave = (pitch - MIDDLE_C - tonic % 12) // 12
    candidates = range(len(steps) * (octave - 1), len(steps) * (octave + 2))
    return min(candidates, key=lambda d: (abs(degree_pitch(tonic, mode, d) - pitch), d))


def scale_pitch_classes(tonic: int, mode: str) -> frozenset[int]:
    """The pitch classes of `mode` on `tonic`."""
    return frozenset((tonic + step) % 12 for step in mode_steps(mode))


# --- chords ---------------------------------------------------------------------------------------

# Chord colours as scale steps above the chord root: stacked thirds, added tones, suspensions.
COLOURS: dict[str, tuple[int, ...]] = {
    "triad": (0, 2, 4),
    "seventh": (0, 2, 4, 6),
    "sixth": (0, 2, 4, 5),
    "add9": (0, 2, 4, 8),
    "ninth": (0, 2, 4, 6, 8),
    "sus2": (0, 1, 4),
    "sus4": (0, 3, 4),
    "seventh_sus4": (0, 3, 4, 6),
}


class ChordQuality(NamedTuple):
    """How a set of intervals is written: numeral case, numeral suffix, letter-name suffix."""

    minor: bool
    numeral_suffix: str
    name_suffix: str


# Semitones above the root (sorted, within an octave) -> how that chord is written. A colour that
# lands on a set not listed here is not in livekomp's vocabulary (see `Chord.named`).
CHORD_QUALITIES: dict[tuple[int, ...], ChordQuality] = {
    (0, 4, 7): ChordQuality(False, "", ""),
    (0, 3, 7): ChordQuality(True, "", "m"),
    (0, 3, 6): ChordQuality(True, "°", "dim"),
    (0, 4, 8): ChordQuality(False, "+", "aug"),
    (0, 4, 7, 11): ChordQuality(False, "maj7", "maj7"),
    (0, 4, 7, 10): ChordQuality(False, "7", "7"),
    (0, 3, 7, 10): ChordQuality(True, "7", "m7"),
    (0, 3, 6, 10): ChordQuality(True, "ø7", "m7b5"),
    (0, 3, 7, 11): ChordQuality(True, "(maj7)", "m(maj7)"),
    (0, 3, 6, 9): ChordQuality(True, "°7", "dim7"),
    (0, 4, 8, 11): ChordQuality(False, "+maj7", "augmaj7"),
    (0, 4, 7, 9): ChordQuality(False, "6", "6"),
    (0, 3, 7, 9): ChordQuality(True, "6", "m6"),
    (0, 2, 4, 7): ChordQuality(False, "add9", "add9"),
    (0, 2, 3, 7): ChordQuality(True, "add9", "madd9"),
    (0, 1, 3, 7): ChordQuality(True, "addb9", "madd(b9)"),
    (0, 2, 4, 7, 11): ChordQuality(False, "maj9", "maj9"),
    (0, 2, 4, 7, 10): ChordQuality(False, "9", "9"),
    (0, 2, 3, 7, 10): ChordQuality(True, "9", "m9"),
    (0, 1, 3, 7, 10): ChordQuality(True, "7b9", "m7(b9)"),
    (0, 1, 4, 7, 10): ChordQuality(False, "7b9", "7(b9)"),
    (0, 2, 7): ChordQuality(False, "sus2", "sus2"),
    (0, 5, 7): ChordQuality(False, "sus4", "sus4"),
    (0, 5, 7, 10): ChordQuality(False, "7sus4", "7sus4"),
}

ROMAN_NUMERALS: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI", "VII")


@dataclass(frozen=True, slots=True)
class Chord:
    """A chord built from the steps of a mode: `root` is a 0-based scale step."""

    mode: str
    root: int
    steps: tuple[int, ...]

    @property
    def degrees(self) -> tuple[int, ...]:
        """Scale degrees of the chord tones, root first, relative to the tonic."""
        return tuple(self.root + step for step in self.steps)

    @property
    def intervals(self) -> tuple[int, ...]:
        """Semitones of each tone above the root, folded into one octave and sorted."""
        root_pitch = degree_pitch(0, self.mode, self.root)
        return tuple(
            sorted({(degree_pitch(0, self.mode, d) - root_pitch) % 12 for d in self.degrees})
        )

    @property
    def named(self) -> bool:
        """Whether this chord is in the written vocabulary (CHORD_QUALITIES)."""
        return self.intervals in CHORD_QUALITIES

    @property
    def symbol(self) -> str:
        """Roman-numeral symbol relative to the mode, e.g. "ii7", "IVmaj7", "vii°", "Isus4"."""
        numeral = ROMAN_NUMERALS[self.root % 7]
        quality = CHORD_QUALITIES.get(self.intervals)
        if quality is None:
            return f"{numeral}({','.join(map(str, self.intervals))})"
        return (numeral.lower() if quality.minor else numeral) + quality.numeral_suffix

    def name(self, tonic: int) -> str:
        """Letter-name symbol in the key of `tonic`, e.g. "Ebmaj7"."""
        root_name = pitch_class_name(degree_pitch(tonic, self.mode, self.root))
        quality = CHORD_QUALITIES.get(self.intervals)
        suffix = quality.name_suffix if quality else f"({','.join(map(str, self.intervals))})"
        return root_name + suffix

    def tones(self, tonic: int) -> tuple[int, ...]:
        """Pitch classes of the chord tones in the key of `tonic`, root first, as stacked."""
        return tuple(degree_pitch(tonic, self.mode, d) % 12 for d in self.degrees)

    def pitch_classes(self, tonic: int) -> frozenset[int]:
        """Pitch classes of the chord tones in the key of `tonic`."""
        return frozenset(self.tones(tonic))

    def root_pitch_class(self, tonic: int) -> int:
        return degree_pitch(tonic, self.mode, self.root) % 12


def diatonic_chord(mode: str, degree: int, colour: str = "triad") -> Chord:
    """The chord on 1-based `degree` (1..7) of `mode`, coloured as in COLOURS."""
    mode_steps(mode)  # validates the name
    if not 1 <= degree <= 7:
        raise ValueError(f"chord degree must be 1..7, got {degree}")
    try:
        steps = COLOURS[colour]
    except KeyError:
        raise ValueError(f"unknown chord colour {colour!r}; known: {', '.join(COLOURS)}") from None
    return Chord(MODE_ALIASES.get(mode, mode), degree - 1, steps)


# --- key finding ----------------------------------------------------------------------------------

# Krumhansl & Kessler (1982) probe-tone ratings, starting from the tonic.
KRUMHANSL_KESSLER: dict[str, tuple[float, ...]] = {
    "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
}


def _pearson(xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    dx = [x - mean_x for x in xs]
    dy = [y - mean_y for y in ys]
    spread = math.sqrt(sum(d * d for d in dx) * sum(d * d for d in dy))
    return sum(a * b for a, b in zip(dx, dy, strict=True)) / spread if spread else 0.0


def detect_key(pitches_with_weights: Iterable[tuple[int, float]]) -> tuple[int, str, float]:
    """Krumhansl–Schmuckler key finding: (tonic pitch class, "major"|"minor", correlation).

    Weights are usually note durations, so long notes count more than passing ones. The key is
    the rotation of a Krumhansl–Kessler profile that correlates best with the weighted pitch-class
    histogram. Raises ValueError when there is nothing to weigh.
    """
    histogram = [0.0] * 12
    for pitch, weight in pitches_with_weights:
        histogram[pitch % 12] += weight
    if sum(histogram) <= 0:
        raise ValueError("detect_key needs at least one pitch with a positive weight")
    chroma = tuple(histogram)
    candidates = (
        (_pearson(chroma, profile[-tonic:] + profile[:-tonic]), tonic, quality)
        for quality, profile in KRUMHANSL_KESSLER.items()
        for tonic in range(12)
    )
    correlation, tonic, quality = max(candidates)
    return tonic, quality, correlation


def mode_on_tonic(pitches_with_weights: Iterable[tuple[int, float]], tonic: int) -> str:
    """ "major" or "minor": which Krumhansl–Kessler profile on `tonic` fits the weighted pitches
    better ("" for none). With the tonic known (the set's key), a passage in C minor cannot pass
    for E♭ major, as it can in free key finding."""
    histogram = [0.0] * 12
    for pitch, weight in pitches_with_weights:
        histogram[(pitch - tonic) % 12] += weight
    if sum(histogram) <= 0:
        return ""
    chroma = tuple(histogram)
    major = _pearson(chroma, KRUMHANSL_KESSLER["major"])
    minor = _pearson(chroma, KRUMHANSL_KESSLER["minor"])
    return "major" if major >= minor else "minor"
