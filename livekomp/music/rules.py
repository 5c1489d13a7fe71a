"""The rule-based composer: livekomp's always-available baseline and fallback.

It writes one bar at a time for melody, chords, bass and drums from a handful of tables:

- **form**: bars fall into phrases of 2–4 bars (a seeded layout per 16-bar section). The first
  bar of a phrase states a motif (a rhythm and a contour of scale steps), middle bars repeat,
  lift, invert or ornament it, and the last bar cadences onto a long chord root.
- **harmony**: valence picks the mode (theory.MODE_BY_VALENCE) and the colour of the chords
  (add9, maj7 and sixths when happy; minor sevenths, suspensions and the flat nines of the dark
  modes when sad). Each phrase draws a progression for its mode, one chord a bar, always starting
  home; minor keys borrow their dominant from harmonic minor, and in sad moods the home chord
  stays a bare minor triad so the key is heard as minor, not as its relative major.
- **feel**: arousal, nudged by the performer's density control, picks a feel (from hushed pads to
  driving sixteenths) that sets the subdivision and style of every part, and smoothly sets how
  likely each melody grid position is to sound. Arousal also sets register and articulation
  (legato when calm, short when excited); arousal and intensity set velocity.
- **parts**: melody notes are scale degrees of the mode, snapped to chord tones on each group's
  first beat; chords are close-voiced with smooth voice leading (pads when calm, stabs when
  excited); bass plays roots, then fifths, walks and octaves with a step into the next root;
  drums go from silence and a soft ride to backbeats, sixteenth hats, fills and crashes.

Randomness comes from `random.Random` seeded by integer mixing of (seed, purpose, phrase, bar...),
so a bar depends only on the seed, its request, and what earlier bars of the same phrase left in
the phrase memory (the motif, the last melody note, the last chord voicing). Skipping bars or
changing mood mid-phrase is fine: whatever is missing is drawn afresh from the same seeds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from livekomp.music.arrange import (
    ARTICULATION_BY_AROUSAL,
    BASS_CENTER_BY_AROUSAL,
    CHORD_CENTER_BY_AROUSAL,
    MELODY_CENTER_BY_AROUSAL,
    MELODY_REACH,
    PAD_ARTICULATION_BY_AROUSAL,
    clamp,
    close_voicing,
    heard_mode,
    interpolate,
    mix_seed,
    part_velocity,
    place,
)
from livekomp.music.phrase import BarRequest, ComposedBar, Note, Part
from livekomp.music.theory import (
    Chord,
    degree_pitch,
    diatonic_chord,
    mode_for_valence,
    nearest_degree,
    scale_pitch_classes,
)

# --- seeded randomness ----------------------------------------------------------------------------


class _Purpose(IntEnum):
    """Separate random streams, so drawing one more drum hit never changes the melody."""

    FORM = 1
    PROGRESSION = 2
    COLOUR = 3
    MOTIF = 4
    VARIATION = 5
    CHORD_RHYTHM = 6
    BASS = 7
    DRUMS = 8
    HUMANIZE = 9


def _rng(*keys: int) -> random.Random:
    return random.Random(mix_seed(*keys))


# --- meter ----------------------------------------------------------------------------------------

KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT, RIDE, CRASH = 36, 37, 38, 42, 46, 51, 49
LOW_TOM, MID_TOM, HIGH_TOM = 45, 48, 50


@dataclass(frozen=True, slots=True)
class Meter:
    """How a bar groups its beats, and where kick and snare go in a plain groove."""

    groups: tuple[int, ...]
    kick_beats: tuple[int, ...]
    snare_beats: tuple[int, ...]

    @property
    def beats(self) -> int:
        return sum(self.groups)

    @property
    def strong_beats(self) -> tuple[int, ...]:
        """The first beat of each group: where chord tones and bass roots belong."""
        starts = [0]
        for size in self.groups[:-1]:
            starts.append(starts[-1] + size)
        return tuple(starts)


METERS: dict[int, Meter] = {
    2: Meter(groups=(2,), kick_beats=(0,), snare_beats=(1,)),
    3: Meter(groups=(3,), kick_beats=(0,), snare_beats=(2,)),
    4: Meter(groups=(2, 2), kick_beats=(0, 2), snare_beats=(1, 3)),
    5: Meter(groups=(3, 2), kick_beats=(0, 3), snare_beats=(2, 4)),
    6: Meter(groups=(3, 3), kick_beats=(0,), snare_beats=(3,)),  # 6/8 felt in two
    7: Meter(groups=(2, 2, 3), kick_beats=(0, 4), snare_beats=(2, 5)),
}


def meter_for(beats_per_bar: int) -> Meter:
    """The meter for a bar length; lengths outside the table are grouped in twos and a three."""
    if beats_per_bar < 1:
        raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
    if beats_per_bar in METERS:
        return METERS[beats_per_bar]
    pairs_then_last = (2,) * (beats_per_bar // 2 - 1) + ((3,) if beats_per_bar % 2 else (2,))
    groups = pairs_then_last if beats_per_bar >= 4 else (beats_per_bar,)
    starts = Meter(groups, (), ()).strong_beats
    return Meter(groups, kick_beats=starts[::2], snare_beats=starts[1::2] or (beats_per_bar - 1,))


def metric_weight(meter: Meter, start_beats: float) -> int:
    """3 on a group's first beat, 2 on other beats, 1 on the off-beat eighth, 0 on sixteenths."""
    beat, fraction = divmod(start_beats, 1.0)
    if fraction == 0:
        return 3 if int(beat) in meter.strong_beats else 2
    return 1 if fraction == 0.5 else 0


# --- form -----------------------------------------------------------------------------------------

# Ways to cut a 16-bar section into phrases; one is drawn per section.
SECTION_LAYOUTS: tuple[tuple[int, ...], ...] = (
    (4, 4, 4, 4),
    (4, 4, 2, 2, 4),
    (2, 2, 4, 4, 4),
    (4, 2, 2, 4, 4),
    (3, 3, 2, 4, 4),
    (4, 4, 4, 2, 2),
)
SECTION_BARS = 16


@dataclass(frozen=True, slots=True)
class PhrasePosition:
    """Where a bar sits: phrase number (counted over the piece), bar within it, phrase length."""

    phrase: int
    bar: int
    length: int

    @property
    def is_first(self) -> bool:
        return self.bar == 0

    @property
    def is_last(self) -> bool:
        return self.bar == self.length - 1


def phrase_position(seed: int, bar_index: int) -> PhrasePosition:
    """The phrase of a bar, a pure function of (seed, bar index) so skipped bars never matter."""
    section, bar_in_section = divmod(bar_index, SECTION_BARS)
    layout = _rng(seed, _Purpose.FORM, section).choice(SECTION_LAYOUTS)
    phrase = section * len(max(SECTION_LAYOUTS, key=len))
    start = 0
    for length in layout:
        if bar_in_section < start + length:
            return PhrasePosition(phrase, bar_in_section - start, length)
        start += length
        phrase += 1
    raise AssertionError("section layouts must cover SECTION_BARS")


# --- harmony --------------------------------------------------------------------------------------

# Four-bar progressions (1-based scale degrees) per mode; each starts home to anchor the key.
PROGRESSIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "lydian": ((1, 2, 1, 5), (1, 2, 6, 5), (1, 5, 2, 1), (1, 3, 2, 5)),
    "major": ((1, 6, 4, 5), (1, 4, 5, 1), (1, 5, 6, 4), (1, 4, 2, 5), (1, 3, 4, 5)),
    "mixolydian": ((1, 7, 4, 1), (1, 4, 7, 1), (1, 4, 1, 7), (1, 7, 1, 4)),
    "dorian": ((1, 4, 1, 4), (1, 7, 4, 1), (1, 4, 7, 1), (1, 2, 4, 1)),
    "minor": ((1, 6, 7, 1), (1, 4, 5, 1), (1, 6, 4, 5), (1, 7, 6, 5), (1, 4, 1, 5)),
    "phrygian": ((1, 2, 1, 7), (1, 4, 7, 1), (1, 7, 4, 1), (1, 2, 4, 1)),
}
# Which of the four chords a shorter phrase keeps: always the first and the cadence.
PROGRESSION_SLOTS: dict[int, tuple[int, ...]] = {2: (0, 3), 3: (0, 2, 3), 4: (0, 1, 2, 3)}

# Chord colours by valence with weights, brightest first: the first row whose threshold valence
# reaches. Happy harmony is open (add9, maj7, sixths); sad harmony leans on minor sevenths, the
# flat nines a minor mode gives, and a few suspensions. A colour that a degree cannot take
# (theory.Chord.named is False) falls back to the plain triad.
COLOURS_BY_VALENCE: tuple[tuple[float, tuple[tuple[str, float], ...]], ...] = (
    (0.5, (("add9", 3), ("seventh", 2), ("ninth", 1), ("sixth", 1), ("triad", 1))),
    (0.0, (("triad", 3), ("seventh", 2), ("sixth", 1), ("add9", 1))),
    (-0.5, (("seventh", 3), ("triad", 2), ("sus4", 1), ("sus2", 1))),
    (-math.inf, (("seventh", 3), ("triad", 2), ("ninth", 1.5), ("seventh_sus4", 0.5))),
)


def progression_chord(seed: int, mode: str, position: PhrasePosition, bar: int) -> int:
    """The 1-based degree of bar `bar` of the phrase at `position`, drawn per phrase and mode."""
    progressions = PROGRESSIONS[mode]
    rng = _rng(seed, _Purpose.PROGRESSION, position.phrase, list(PROGRESSIONS).index(mode))
    progression = rng.choice(progressions)
    slots = PROGRESSION_SLOTS[position.length]
    return progression[slots[bar]]


# The home chord states the mode, so in sad moods its minor triad stays bare: a minor seventh on
# the tonic (C Eb G Bb) is the relative major's sixth chord, and the ear (and a key finder) hears
# the wrong key.
HOME_COLOURS_BY_VALENCE: tuple[tuple[float, tuple[tuple[str, float], ...]], ...] = (
    (0.5, (("add9", 3), ("seventh", 2), ("sixth", 2), ("triad", 1))),
    (0.0, (("triad", 3), ("add9", 1), ("sixth", 1))),
    (-0.5, (("triad", 4), ("add9", 1))),
    (-math.inf, (("triad", 1),)),
)

# Chords a mode borrows from another: minor keys take their dominant from harmonic minor, whose
# raised leading tone is what makes a minor key sound minor rather than its relative major.
BORROWED_CHORDS: dict[tuple[str, int], str] = {
    ("minor", 5): "harmonic_minor",
}


def colour_chord(seed: int, mode: str, degree: int, valence: float, key: tuple[int, ...]) -> Chord:
    """The chord on `degree`, coloured by valence; `key` makes the draw repeatable."""
    table = HOME_COLOURS_BY_VALENCE if degree == 1 else COLOURS_BY_VALENCE
    choices = next(c for threshold, c in table if valence >= threshold)
    colours, weights = zip(*choices, strict=True)
    colour = _rng(seed, _Purpose.COLOUR, *key).choices(colours, weights)[0]
    source = BORROWED_CHORDS.get((mode, degree), mode)
    chord = diatonic_chord(source, degree, colour)
    return chord if chord.named else diatonic_chord(source, degree, "triad")


# --- feel -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Feel:
    """What one band of energy sounds like: grids, comping odds, bass and drum styles."""

    name: str
    melody_steps_per_beat: int
    chord_steps_per_beat: int
    chord_odds: tuple[float, float, float, float]  # onset odds by metric weight 0..3
    bass_style: str
    drum_style: str


# The first row whose threshold the energy reaches. Chord odds are onset chances by metric weight
# (sixteenth, eighth, beat, group start); the downbeat always sounds.
FEELS: tuple[tuple[float, Feel], ...] = (
    (0.45, Feel("driving", melody_steps_per_beat=4, chord_steps_per_beat=2,
                chord_odds=(0.0, 0.5, 0.35, 0.9), bass_style="octaves", drum_style="drive")),
    (-0.1, Feel("moving", melody_steps_per_beat=2, chord_steps_per_beat=2,
                chord_odds=(0.0, 0.3, 0.25, 1.0), bass_style="walking", drum_style="backbeat")),
    (-0.55, Feel("flowing", melody_steps_per_beat=2, chord_steps_per_beat=1,
                 chord_odds=(0.0, 0.0, 0.0, 1.0), bass_style="roots", drum_style="light")),
    (-0.9, Feel("still", melody_steps_per_beat=1, chord_steps_per_beat=1,
                chord_odds=(0.0, 0.0, 0.0, 0.0), bass_style="pedal", drum_style="brushes")),
    (-math.inf, Feel("hushed", melody_steps_per_beat=1, chord_steps_per_beat=1,
                     chord_odds=(0.0, 0.0, 0.0, 0.0), bass_style="pedal", drum_style="silent")),
)  # fmt: skip

# Melody onset odds by metric weight (sixteenth, eighth, beat, strong), against energy.
MELODY_ODDS: tuple[tuple[tuple[float, float], ...], ...] = (
    ((-1.0, 0.0), (0.0, 0.1), (1.0, 0.35)),
    ((-1.0, 0.0), (0.0, 0.35), (1.0, 0.6)),
    ((-1.0, 0.15), (0.0, 0.6), (1.0, 0.9)),
    ((-1.0, 0.7), (0.0, 0.95), (1.0, 1.0)),
)
# Scale steps a melody moves by, with weights: mostly steps, some skips, few leaps.
MELODY_STEPS: tuple[tuple[int, float], ...] = (
    (-1, 5),
    (1, 5),
    (-2, 2.5),
    (2, 2.5),
    (0, 1),
    (-3, 1),
    (3, 1),
    (4, 0.5),
    (-4, 0.5),
)
# What middle bars of a phrase do with its motif, with weights.
MIDDLE_BAR_VARIATIONS: tuple[tuple[str, float], ...] = (
    ("repeat", 4),
    ("lift", 2),
    ("invert", 2),
    ("ornament", 1.5),
)

DENSITY_REACH = 0.6  # how far the density control moves energy at its ends
ACCENT_BY_WEIGHT = (-12, -6, 0, 6)
DRUM_HIT_BEATS = 0.125  # drums are one-shots; short enough never to touch the next hit


# --- melody motifs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Motif:
    """A bar-long melodic idea: onsets (beats), scale steps between notes, a start lift.

    The first note lands on the chord tone nearest the previous note, `lift` chord tones higher;
    every later note moves by its contour step, and snaps to a chord tone on a strong beat.
    """

    onsets: tuple[float, ...]
    contour: tuple[int, ...]
    lift: int = 0
    cadence: bool = False

    def step(self, i: int) -> int:
        """The scale step into note `i` (contours repeat when a bar has more notes)."""
        return self.contour[(i - 1) % len(self.contour)] if self.contour and i else 0


def _onsets(
    rng: random.Random, meter: Meter, steps_per_beat: int, odds: tuple[float, ...]
) -> tuple[float, ...]:
    """A rhythm on a grid: the downbeat always, other positions by their metric weight's odds."""
    grid = [i / steps_per_beat for i in range(meter.beats * steps_per_beat)]
    return tuple(t for t in grid if t == 0 or rng.random() < odds[metric_weight(meter, t)])


def _contour(rng: random.Random, length: int) -> tuple[int, ...]:
    """Scale steps for a melody line, recovering by step in the other direction after a leap."""
    steps, weights = zip(*MELODY_STEPS, strict=True)
    contour: list[int] = []
    for _ in range(length):
        if contour and abs(contour[-1]) >= 3:
            contour.append(-int(math.copysign(rng.choice((1, 2)), contour[-1])))
        else:
            contour.append(rng.choices(steps, weights)[0])
    return tuple(contour)


def make_motif(rng: random.Random, meter: Meter, steps_per_beat: int, energy: float) -> Motif:
    """A fresh motif: a rhythm as busy as the energy asks, and a contour to sing it with."""
    odds = tuple(interpolate(table, energy) for table in MELODY_ODDS)
    onsets = _onsets(rng, meter, steps_per_beat, odds)
    return Motif(onsets, _contour(rng, max(len(onsets) - 1, 1)))


def _ornament(motif: Motif, rng: random.Random, meter: Meter) -> Motif:
    """Split one long note into a note and an upper neighbour that returns."""
    onsets = list(motif.onsets)
    ends = [*onsets[1:], float(meter.beats)]
    long_notes = [i for i, (t, end) in enumerate(zip(onsets, ends, strict=True)) if end - t >= 1]
    if not long_notes:
        return motif
    i = rng.choice(long_notes)
    middle = onsets[i] + (ends[i] - onsets[i]) / 2
    contour = [motif.step(j) for j in range(1, len(onsets))]
    contour.insert(i, 1)  # into the neighbour
    if i + 1 < len(contour):
        contour[i + 1] -= 1  # and back again
    onsets.insert(i + 1, middle)
    return replace(motif, onsets=tuple(onsets), contour=tuple(contour))


def _cadence(motif: Motif, meter: Meter) -> Motif:
    """Keep the motif up to the last group, then land on the root and let it ring."""
    landing = float(meter.strong_beats[-1])
    onsets = (*(t for t in motif.onsets if t < landing), landing)
    return replace(motif, onsets=onsets, cadence=True)


VARIATIONS: dict[str, Callable[[Motif, random.Random, Meter], Motif]] = {
    "statement": lambda m, rng, meter: m,
    "repeat": lambda m, rng, meter: m,
    "lift": lambda m, rng, meter: replace(m, lift=rng.choice((1, -1))),
    "invert": lambda m, rng, meter: replace(m, contour=tuple(-s for s in m.contour)),
    "ornament": _ornament,
    "cadence": lambda m, rng, meter: _cadence(m, meter),
}


# --- the composer ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _BarEnding:
    """What a bar leaves for the next bar of its phrase to continue from."""

    melody_pitch: int
    voicing: tuple[int, ...]


@dataclass(slots=True)
class _PhraseMemory:
    motifs: dict[tuple[int, int], Motif] = field(default_factory=dict)
    endings: dict[int, _BarEnding] = field(default_factory=dict)

    def ending_before(self, bar: int) -> _BarEnding | None:
        earlier = [b for b in self.endings if b < bar]
        return self.endings[max(earlier)] if earlier else None


@dataclass(frozen=True, slots=True)
class _Bar:
    """Everything decided about a bar before any part is written."""

    request: BarRequest
    meter: Meter
    position: PhrasePosition
    mode: str
    chord: Chord
    next_chord: Chord
    feel: Feel
    energy: float  # arousal nudged by density; drives rhythm
    tonic: int

    @property
    def beats(self) -> float:
        return float(self.meter.beats)

    def keys(self, purpose: _Purpose, *more: int) -> tuple[int, ...]:
        """Seed keys for a draw that belongs to this bar's phrase."""
        return (purpose, self.position.phrase, *more)


class RuleComposer:
    """Composes a bar at a time from theory tables; deterministic for a seed."""

    name = "rules"
    _PHRASES_REMEMBERED = 4

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._phrases: dict[int, _PhraseMemory] = {}

    def compose_bar(self, request: BarRequest) -> ComposedBar:
        bar = self._plan(request)
        memory = self._memory(bar.position)
        previous = memory.ending_before(bar.position.bar)
        melody, variation = self._melody(bar, memory, previous)
        voicing = self._voicing(bar, previous, below=min(note.pitch for note in melody))
        memory.endings[bar.position.bar] = _BarEnding(melody[-1].pitch, voicing)
        parts = {
            Part.MELODY: melody,
            Part.CHORDS: self._chords(bar, voicing),
            Part.BASS: self._bass(bar),
            Part.DRUMS: self._drums(bar),
        }
        return ComposedBar(
            index=request.index,
            beats_per_bar=request.beats_per_bar,
            parts={part: tuple(notes) for part, notes in parts.items()},
            composer=self.name,
            mode=bar.mode,
            chord=bar.chord.symbol,
            info={
                "chord_name": bar.chord.name(bar.tonic),
                "phrase": bar.position.phrase,
                "bar_in_phrase": bar.position.bar,
                "phrase_bars": bar.position.length,
                "feel": bar.feel.name,
                "variation": variation,
                "heard_mode": heard_mode(parts, request.tonic % 12),
            },
        )

    # --- planning ---

    def _plan(self, request: BarRequest) -> _Bar:
        position = phrase_position(self.seed, request.index)
        mode = mode_for_valence(request.valence)
        energy = clamp(request.arousal + DENSITY_REACH * (2 * request.density - 1), -1.0, 1.0)
        feel = next(f for threshold, f in FEELS if energy >= threshold)
        degree = progression_chord(self.seed, mode, position, position.bar)
        chord = colour_chord(
            self.seed, mode, degree, request.valence, (position.phrase, position.bar)
        )
        if position.is_last:
            next_position = phrase_position(self.seed, request.index + 1)
            next_degree = progression_chord(self.seed, mode, next_position, 0)
        else:
            next_degree = progression_chord(self.seed, mode, position, position.bar + 1)
        return _Bar(
            request=request,
            meter=meter_for(request.beats_per_bar),
            position=position,
            mode=mode,
            chord=chord,
            next_chord=diatonic_chord(mode, next_degree),
            feel=feel,
            energy=energy,
            tonic=request.tonic % 12,
        )

    def _memory(self, position: PhrasePosition) -> _PhraseMemory:
        """This phrase's memory; its first bar always starts a fresh one (and a fresh motif)."""
        phrase = position.phrase
        if position.is_first or phrase not in self._phrases:
            self._phrases.pop(phrase, None)
            self._phrases[phrase] = _PhraseMemory()
            while len(self._phrases) > self._PHRASES_REMEMBERED:
                del self._phrases[next(iter(self._phrases))]  # the least recently started
        return self._phrases[phrase]

    def _velocity(self, bar: _Bar, part: Part, weight: int, nudge: float = 0) -> int:
        return part_velocity(bar.request, part, ACCENT_BY_WEIGHT[weight] + nudge)

    @staticmethod
    def _lengths(onsets: tuple[float, ...], bar_beats: float, share: float) -> list[float]:
        """Each note holds `share` of the gap to the next onset (or the bar end)."""
        ends = [*onsets[1:], bar_beats]
        return [(end - start) * share for start, end in zip(onsets, ends, strict=True)]

    # --- melody ---

    def _motif(self, bar: _Bar, memory: _PhraseMemory) -> Motif:
        """The phrase's motif for this grid, drawn once per phrase and remembered."""
        grid = (bar.meter.beats, bar.feel.melody_steps_per_beat)
        if grid not in memory.motifs:
            rng = _rng(self.seed, *bar.keys(_Purpose.MOTIF, *grid))
            memory.motifs[grid] = make_motif(rng, bar.meter, grid[1], bar.energy)
        return memory.motifs[grid]

    def _variation(self, bar: _Bar) -> str:
        position = bar.position
        if position.is_first:
            return "statement"
        if position.is_last:
            return "cadence"
        names, weights = zip(*MIDDLE_BAR_VARIATIONS, strict=True)
        rng = _rng(self.seed, *bar.keys(_Purpose.VARIATION, position.bar))
        return rng.choices(names, weights)[0]

    def _melody(
        self, bar: _Bar, memory: _PhraseMemory, previous: _BarEnding | None
    ) -> tuple[list[Note], str]:
        variation = self._variation(bar)
        rng = _rng(self.seed, *bar.keys(_Purpose.VARIATION, bar.position.bar, 1))
        motif = VARIATIONS[variation](self._motif(bar, memory), rng, bar.meter)

        tonic, mode = bar.tonic, bar.mode
        center = round(interpolate(MELODY_CENTER_BY_AROUSAL, bar.request.arousal))
        low = nearest_degree(tonic, mode, center - MELODY_REACH)
        high = nearest_degree(tonic, mode, center + MELODY_REACH)
        scale = scale_pitch_classes(tonic, mode)
        # Chord tones the melody may land on: those of its own scale (not a borrowed leading tone).
        chord_steps = {
            d % 7 for d in bar.chord.degrees if degree_pitch(tonic, bar.chord.mode, d) % 12 in scale
        }
        start_pitch = previous.melody_pitch if previous else center

        degrees: list[int] = []
        for i, onset in enumerate(motif.onsets):
            if i == 0:
                degree = _nearest_in(nearest_degree(tonic, mode, start_pitch), chord_steps)
                degree = _lift(degree, motif.lift, chord_steps)
            else:
                degree = degrees[-1] + motif.step(i)
            degree = _reflect(degree, low, high)
            if metric_weight(bar.meter, onset) == 3:
                degree = _nearest_in(degree, chord_steps, prefer_up=motif.step(i) >= 0)
            degrees.append(degree)
        if motif.cadence:
            degrees[-1] = _nearest_in(degrees[-1], {bar.chord.root % 7})

        share = interpolate(ARTICULATION_BY_AROUSAL, bar.request.arousal)
        lengths = self._lengths(motif.onsets, bar.beats, share)
        if motif.cadence:
            lengths[-1] = (bar.beats - motif.onsets[-1]) * max(share, 0.9)
        humanize = _rng(self.seed, _Purpose.HUMANIZE, bar.request.index)
        notes = [
            Note(
                pitch=int(clamp(degree_pitch(tonic, mode, degree), 0, 127)),
                start_beats=onset,
                duration_beats=length,
                velocity=self._velocity(
                    bar, Part.MELODY, metric_weight(bar.meter, onset), humanize.uniform(-3, 3)
                ),
            )
            for onset, length, degree in zip(motif.onsets, lengths, degrees, strict=True)
        ]
        return notes, variation

    # --- chords ---

    def _voicing(self, bar: _Bar, previous: _BarEnding | None, below: int) -> tuple[int, ...]:
        """The bar's chord in close position, led from the previous chord of the phrase, wholly
        under the bar's lowest melody note (it never covers or doubles the tune)."""
        center = interpolate(CHORD_CENTER_BY_AROUSAL, bar.request.arousal)
        earlier = previous.voicing if previous is not None else ()
        return close_voicing(bar.chord.tones(bar.tonic), center, earlier, below=below)

    def _chords(self, bar: _Bar, voicing: tuple[int, ...]) -> list[Note]:
        rng = _rng(self.seed, *bar.keys(_Purpose.CHORD_RHYTHM, bar.meter.beats))
        onsets = _onsets(rng, bar.meter, bar.feel.chord_steps_per_beat, bar.feel.chord_odds)
        share = interpolate(PAD_ARTICULATION_BY_AROUSAL, bar.request.arousal)
        lengths = self._lengths(onsets, bar.beats, share)
        return [
            Note(
                pitch=int(clamp(p, 0, 127)),
                start_beats=onset,
                duration_beats=length,
                velocity=self._velocity(bar, Part.CHORDS, metric_weight(bar.meter, onset)),
            )
            for onset, length in zip(onsets, lengths, strict=True)
            for p in voicing
        ]

    # --- bass ---

    def _bass(self, bar: _Bar) -> list[Note]:
        center = interpolate(BASS_CENTER_BY_AROUSAL, bar.request.arousal)
        root = place(bar.chord.root_pitch_class(bar.tonic), center)
        line = BASS_STYLES[bar.feel.bass_style](self, bar, root)
        share = interpolate(ARTICULATION_BY_AROUSAL, bar.request.arousal)
        onsets = tuple(t for t, _ in line)
        lengths = self._lengths(onsets, bar.beats, share)
        return [
            Note(
                pitch=int(clamp(p, 0, 127)),
                start_beats=t,
                duration_beats=length,
                velocity=self._velocity(bar, Part.BASS, metric_weight(bar.meter, t)),
            )
            for (t, p), length in zip(line, lengths, strict=True)
        ]

    def _bass_pedal(self, bar: _Bar, root: int) -> list[tuple[float, int]]:
        """One long root: the calm floor under a pad."""
        return [(0.0, root)]

    def _bass_roots(self, bar: _Bar, root: int) -> list[tuple[float, int]]:
        """Root on the first group, fifth (or root) on the others."""
        fifth = self._chord_tone_near(bar, root + 7, root)
        return [(float(b), root if b == 0 else fifth) for b in bar.meter.strong_beats]

    def _bass_walking(self, bar: _Bar, root: int) -> list[tuple[float, int]]:
        """A note a beat: roots on strong beats, chord tones between, a step into the next root."""
        rng = _rng(self.seed, *bar.keys(_Purpose.BASS, bar.position.bar))
        line = []
        for beat in range(bar.meter.beats):
            if beat == 0:
                pitch = root
            elif beat in bar.meter.strong_beats:
                pitch = self._chord_tone_near(bar, root + 7, root)
            else:
                pitch = self._chord_tone_near(bar, root + rng.choice((3, 4, 7, 12)), root)
            line.append((float(beat), pitch))
        if bar.meter.beats >= 3:
            line[-1] = (line[-1][0], self._approach(bar, root))
        return line

    def _bass_octaves(self, bar: _Bar, root: int) -> list[tuple[float, int]]:
        """Driving eighths: root and octave, chord tones on strong beats, a step into the next."""
        line = []
        for step in range(bar.meter.beats * 2):
            t = step / 2
            pitch = root + 12 if step % 4 == 3 else root
            if metric_weight(bar.meter, t) == 3 and t > 0:
                pitch = self._chord_tone_near(bar, root + 7, root)
            line.append((t, pitch))
        line[-1] = (line[-1][0], self._approach(bar, root))
        return line

    def _chord_tone_near(self, bar: _Bar, target: int, fallback: int) -> int:
        """The chord tone closest to `target` (the fallback when the chord lacks one near it)."""
        classes = bar.chord.pitch_classes(bar.tonic)
        near = [p for p in range(target - 2, target + 3) if p % 12 in classes]
        return min(near, key=lambda p: (abs(p - target), p)) if near else fallback

    def _approach(self, bar: _Bar, root: int) -> int:
        """A scale step above or below the next chord's root, whichever sits nearer this root."""
        target = place(bar.next_chord.root_pitch_class(bar.tonic), root)
        degree = nearest_degree(bar.tonic, bar.mode, target)
        options = (degree_pitch(bar.tonic, bar.mode, degree + s) for s in (-1, 1))
        return min(options, key=lambda p: (abs(p - root), p))

    # --- drums ---

    def _drums(self, bar: _Bar) -> list[Note]:
        hits = DRUM_STYLES[bar.feel.drum_style](self, bar)
        return [
            Note(
                pitch=drum,
                start_beats=t,
                duration_beats=min(DRUM_HIT_BEATS, bar.beats - t),
                velocity=self._velocity(bar, Part.DRUMS, metric_weight(bar.meter, t), nudge),
            )
            for t, drum, nudge in sorted(hits)
        ]

    def _drums_silent(self, bar: _Bar) -> list[tuple[float, int, float]]:
        return []

    def _drums_brushes(self, bar: _Bar) -> list[tuple[float, int, float]]:
        """A soft ride on each group and a felt kick on one."""
        return [(float(b), RIDE, -14) for b in bar.meter.strong_beats] + [(0.0, KICK, -16)]

    def _drums_light(self, bar: _Bar) -> list[tuple[float, int, float]]:
        """Kick, side-stick backbeat, hats on the beat."""
        meter = bar.meter
        return (
            [(float(b), KICK, -6) for b in meter.kick_beats]
            + [(float(b), SIDE_STICK, -8) for b in meter.snare_beats]
            + [(float(b), CLOSED_HAT, -12) for b in range(meter.beats)]
        )

    def _drums_backbeat(self, bar: _Bar) -> list[tuple[float, int, float]]:
        """Kick and snare backbeat, eighth hats, pickup kicks; a fill to end the phrase."""
        meter = bar.meter
        rng = _rng(self.seed, *bar.keys(_Purpose.DRUMS, meter.beats, 2))
        pickups = [b - 0.5 for b in meter.kick_beats if b > 0 and rng.random() < 0.5]
        hits = (
            [(float(b), KICK, 0) for b in meter.kick_beats]
            + [(t, KICK, -8) for t in pickups]
            + [(float(b), SNARE, 0) for b in meter.snare_beats]
            + [(i / 2, CLOSED_HAT, -10) for i in range(meter.beats * 2)]
        )
        return self._fill(bar, hits, steps_per_beat=2) if bar.position.is_last else hits

    def _drums_drive(self, bar: _Bar) -> list[tuple[float, int, float]]:
        """Sixteenth hats, syncopated kicks, an open hat at the bar end, a crash on phrase one."""
        meter = bar.meter
        rng = _rng(self.seed, *bar.keys(_Purpose.DRUMS, meter.beats, 4))
        offbeats = [b + 0.5 for b in range(meter.beats - 1)]
        syncopations = rng.sample(offbeats, k=min(len(offbeats), 2))
        last_offbeat = meter.beats - 0.5
        hats = [
            (i / 4, CLOSED_HAT, -4 if i % 2 == 0 else -14)
            for i in range(meter.beats * 4)
            if i / 4 != last_offbeat
        ]
        hits = (
            [(float(b), KICK, 4) for b in meter.kick_beats]
            + [(t, KICK, -4) for t in syncopations]
            + [(float(b), SNARE, 6) for b in meter.snare_beats]
            + hats
            + [(last_offbeat, OPEN_HAT, -2)]
        )
        if bar.position.is_first:
            hits.append((0.0, CRASH, 4))
        return self._fill(bar, hits, steps_per_beat=4) if bar.position.is_last else hits

    @staticmethod
    def _fill(
        bar: _Bar, hits: list[tuple[float, int, float]], steps_per_beat: int
    ) -> list[tuple[float, int, float]]:
        """Replace the last beat with a snare-and-tom run down to the next phrase."""
        last_beat = bar.beats - 1
        kept = [h for h in hits if h[0] < last_beat or h[1] == KICK]
        toms = (SNARE, HIGH_TOM, MID_TOM, LOW_TOM)
        run = [
            (last_beat + i / steps_per_beat, toms[i * len(toms) // steps_per_beat], 2 * i - 2)
            for i in range(steps_per_beat)
        ]
        return kept + run


BASS_STYLES: dict[str, Callable[[RuleComposer, _Bar, int], list[tuple[float, int]]]] = {
    "pedal": RuleComposer._bass_pedal,
    "roots": RuleComposer._bass_roots,
    "walking": RuleComposer._bass_walking,
    "octaves": RuleComposer._bass_octaves,
}
DRUM_STYLES: dict[str, Callable[[RuleComposer, _Bar], list[tuple[float, int, float]]]] = {
    "silent": RuleComposer._drums_silent,
    "brushes": RuleComposer._drums_brushes,
    "light": RuleComposer._drums_light,
    "backbeat": RuleComposer._drums_backbeat,
    "drive": RuleComposer._drums_drive,
}


# --- small pitch helpers --------------------------------------------------------------------------


def _nearest_in(degree: int, steps: set[int], prefer_up: bool = True) -> int:
    """The scale degree nearest `degree` whose step (mod 7) is in `steps`."""
    for distance in range(7):
        order = (distance, -distance) if prefer_up else (-distance, distance)
        for candidate in (degree + d for d in order):
            if candidate % 7 in steps:
                return candidate
    raise ValueError(f"no scale step among {sorted(steps)}")


def _lift(degree: int, lift: int, steps: set[int]) -> int:
    """Move `lift` chord tones up (positive) or down (negative) from `degree`."""
    direction = 1 if lift > 0 else -1
    for _ in range(abs(lift)):
        degree += direction
        while degree % 7 not in steps:
            degree += direction
    return degree


def _reflect(degree: int, low: int, high: int) -> int:
    """Fold a degree that left the melody's range back into it, like a ball off a wall."""
    if degree > high:
        return max(low, 2 * high - degree)
    if degree < low:
        return min(high, 2 * low - degree)
    return degree
