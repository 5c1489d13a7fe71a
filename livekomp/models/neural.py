"""The neural composer: melody transformer, harmony and groove predictors, one bar at a time.

For each bar it (1) continues the melody that was actually played with the transformer, in the
bar's mood, until the model steps over the bar line; (2) asks the harmony predictor for the chord
under each half of that melody, given the chord before; (3) asks the groove predictor where the
accompaniment starts notes and how long (hence how stressed) each is; then voices the chords and
the bass on that groove, and reads the drums from it (music/drums.py: kick and snare on its
accents, hats on its onsets, fills at phrase ends; tables give the kit, metre and feel, since the
corpus has no drum parts). A style's groove adapter is thus heard in the drums too.

`compose_bar` only reads the composer's memory; `accept` writes the bar that was really played
(fresh, buffered or the rules'), so a late or abandoned request never bends the melody's history.
Sampling is seeded from the set's seed and the bar index (NumPy, whichever runtime runs the
trunk), so a rehearsal renders the same notes every time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from livekomp.models import checkpoint, lora, tokens
from livekomp.models.groove import STEPS, STEPS_PER_QUARTER, GroovePredictor
from livekomp.models.harmony import (
    CHORD_CLASSES,
    NO_CHORD,
    QUALITY_INTERVALS,
    HarmonyPredictor,
    chord_pitch_classes,
    chord_root_quality,
    chord_symbol,
    melody_features,
)
from livekomp.models.melody import MelodyTransformer
from livekomp.models.runtime import (
    Heads,
    OnnxTrunk,
    RuntimeUnavailable,
    TorchTrunk,
    Trunk,
    export_path,
    onnx_path,
    pick_device,
)
from livekomp.music.arrange import (
    ARTICULATION_BY_AROUSAL,
    BASS_CENTER_BY_AROUSAL,
    CHORD_CENTER_BY_AROUSAL,
    PAD_ARTICULATION_BY_AROUSAL,
    clamp,
    close_voicing,
    heard_mode,
    interpolate,
    mix_seed,
    part_velocity,
    place,
)
from livekomp.music.drums import drum_bar
from livekomp.music.phrase import BASE_STYLE, BarRequest, ComposedBar, Note, Part, adapters
from livekomp.music.theory import mode_for_valence, mode_steps

log = logging.getLogger("livekomp.composer")

TPQ = tokens.TICKS_PER_QUARTER
MAX_NOTES_PER_BAR = 24
ACCENT_VELOCITY = 5.0  # velocity per unit of agogic accent (log2 sixteenths) above the bar's mean
DENSITY_LOGIT_REACH = 2.0  # the density control's pull on groove onset logits at its ends
# The melody's register: a floor by arousal and a span above it. The chords are voiced below the
# melody's lowest note, so the floor also keeps them out of the bass's register.
MELODY_FLOOR_BY_AROUSAL = ((-1.0, 60.0), (1.0, 65.0))
MELODY_SPAN = 24
# Melody notes per beat the mood asks for, near the corpus's medians by proxy arousal (calm
# phrases 3.25-4.5 notes a bar, excited 5.25-8); a bar holds at least MIN_NOTES_SHARE of them,
# and no gap between onsets is longer than MAX_GAP_SHARE of the mood's mean gap.
MELODY_NOTES_PER_BEAT_BY_AROUSAL = ((-1.0, 0.6), (0.0, 1.0), (1.0, 1.8))
MIN_NOTES_SHARE = 0.6
MAX_GAP_SHARE = 2.0
# Logit penalty on repeating the pitch just played (on top of RECENT_PENALTY). The
# model learnt folk tunes, where a repeat is common, but in a calm mood its few long notes then
# settle on one pitch: a drone. Set so the repeated-pitch share lands in the corpus's range.
REPEAT_PENALTY = 0.5
# And a smaller one for each time a pitch sounded among the last few notes, so a phrase spreads
# over as many pitches as the corpus's do (distinct pitches per 4 bars) instead of circling three.
RECENT_PENALTY = 0.4
RECENT_NOTES = 8
# The neural composer's phrases are 4 bars; their first half bar and their last take these roots
# (semitones above the tonic), among the mode's chords.
PHRASE_BARS = 4
CADENCE_ROOTS: dict[tuple[int, int], tuple[int, ...]] = {(0, 0): (0,), (3, 1): (7, 0)}
# Chords a mode borrows, as (root above the tonic, quality) classes: the dominant of harmonic
# minor, whose leading tone is what makes a minor key sound minor (as the rules do).
BORROWED_CHORDS: dict[str, tuple[tuple[int, int], ...]] = {"minor": ((7, 0),)}


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.9
    top_p: float = 0.95
    chord_temperature: float = 0.6


@dataclass
class _Memory:
    """What was played: melody steps with their moods, the last chord, the last groove."""

    steps: list[tokens.Step] = field(default_factory=list)
    moods: list[tuple[float, float]] = field(default_factory=list)
    last_note_bar: int | None = None
    chord: int = NO_CHORD
    groove: list[float] = field(default_factory=lambda: [0.0] * STEPS)
    voicing: tuple[int, ...] = ()

    def snapshot(self) -> _Memory:
        """A copy that `accept` (on another thread) cannot change under a running bar."""
        return replace(
            self, steps=list(self.steps), moods=list(self.moods), groove=list(self.groove)
        )


def _sample(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_p: float) -> int:
    """Nucleus sampling from logits; -inf entries are never drawn."""
    scaled = logits.astype(np.float64) / max(temperature, 1e-6)
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
    kept = probs[keep] / probs[keep].sum()
    return int(keep[rng.choice(len(keep), p=kept)])


def asked_mode(request: BarRequest) -> str:
    """The mode valence asks for, by the rules' table: both composers mean the same by a mood."""
    return mode_for_valence(request.valence)


def melody_register(request: BarRequest) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch of the melody: from a floor that rises a little with arousal
    to well above it. The model keeps the corpus's register (tunes around the octave above middle
    C); a window as high as the rules' melody would pin it to its floor, circling three notes."""
    floor = round(interpolate(MELODY_FLOOR_BY_AROUSAL, request.arousal))
    return floor, floor + MELODY_SPAN


def melody_notes_target(request: BarRequest) -> float:
    """How many melody notes a bar of this mood asks for (the density control scales it)."""
    per_beat = interpolate(MELODY_NOTES_PER_BEAT_BY_AROUSAL, request.arousal)
    return max(1.0, per_beat * request.beats_per_bar * (0.5 + request.density))


def pitch_mask(request: BarRequest) -> np.ndarray:
    """Which pitch tokens the melody may use: the asked mode's scale, in the melody's register."""
    steps = set(mode_steps(asked_mode(request)))
    low, high = melody_register(request)
    tonic = request.tonic % 12
    allowed = np.zeros(tokens.PITCH_VOCAB, dtype=bool)
    for index in range(tokens.PITCH_START):
        midi = tokens.pitch_of(index, tonic)
        allowed[index] = low <= midi <= high and (index + tokens.PITCH_LOW) % 12 in steps
    return allowed


def chord_mask(request: BarRequest) -> np.ndarray:
    """Which chord classes the harmony may choose: the triads of the asked mode, and the chords
    the mode borrows (`BORROWED_CHORDS`). Chromatic colour goes no further."""
    mode = asked_mode(request)
    steps = set(mode_steps(mode))
    allowed = np.zeros(CHORD_CLASSES, dtype=bool)
    for index in range(CHORD_CLASSES):
        root, quality = chord_root_quality(index)
        tones = {(root + i) % 12 for i in QUALITY_INTERVALS[quality]}
        allowed[index] = tones <= steps or (root, quality) in BORROWED_CHORDS.get(mode, ())
    return allowed


def cadence_mask(roots: tuple[int, ...]) -> np.ndarray:
    """The chord classes on these roots (any quality: the mode's mask picks which)."""
    return np.array([chord_root_quality(i)[0] in roots for i in range(CHORD_CLASSES)])


def mode_third_mask(request: BarRequest) -> np.ndarray:
    """The chord classes that hold the asked mode's third above the tonic (i, ♭III, ♭VI in
    minor; I, iii, vi in major): the tone that tells major from minor."""
    third = mode_steps(asked_mode(request))[2]
    holds = np.zeros(CHORD_CLASSES, dtype=bool)
    for index in range(CHORD_CLASSES):
        root, quality = chord_root_quality(index)
        holds[index] = any((root + i) % 12 == third for i in QUALITY_INTERVALS[quality])
    return holds


class MelodyWriter:
    """Writes one bar of melody with the transformer, with the cache or by full recompute."""

    def __init__(self, model: MelodyTransformer, trunk: Trunk, sampling: Sampling) -> None:
        self.config = model.config
        self.trunk = trunk
        self.heads = Heads(model)
        self.sampling = sampling

    def context(
        self, memory: _Memory, mood: tuple[float, float]
    ) -> tuple[list[tokens.Step], list[tuple[float, float]]]:
        """START plus the latest played notes, leaving room for a bar; each step carries the
        mood of the note after it (the last one, this bar's mood)."""
        keep = self.config.context - 1 - MAX_NOTES_PER_BAR
        steps = [tokens.START, *memory.steps[-keep:]] if keep > 0 else [tokens.START]
        moods = [*memory.moods[-keep:], mood][-len(steps) :] if memory.steps else [mood]
        return steps, moods

    def write(
        self,
        memory: _Memory,
        request: BarRequest,
        rng: np.random.Generator,
        *,
        recompute: bool = False,
    ) -> list[tokens.Step]:
        """The bar's melody steps, sampled from the model with the pitches held to the asked
        mode's scale and the melody's register, and a repeated pitch made less likely."""
        bar_ticks = request.beats_per_bar * TPQ
        allowed_pitches = pitch_mask(request)
        target_notes = melody_notes_target(request)
        max_gap = max(1, round(MAX_GAP_SHARE * bar_ticks / target_notes))
        min_notes = max(1, round(MIN_NOTES_SHARE * target_notes))
        previous = [s.pitch for s in memory.steps[-RECENT_NOTES:]]
        mood = (request.valence, request.arousal)
        metre = tokens.metre_index(bar_ticks)
        steps, moods = self.context(memory, mood)
        if memory.last_note_bar is None:
            first_advance = 0
        else:
            first_advance = max(1, min(tokens.MAX_ADVANCE, request.index - memory.last_note_bar))

        def run(new: list[tokens.Step], new_moods: list[tuple[float, float]], cache):
            array = np.array([[[s.position, s.pitch, s.duration] for s in new]], dtype=np.int64)
            mood_array = np.array([new_moods], dtype=np.float32)
            return self.trunk(array, mood_array, metre, cache)

        hidden, cache = run(steps, moods, self.trunk.empty())
        written: list[tokens.Step] = []
        last_onset = -1
        while len(written) < min(MAX_NOTES_PER_BAR, bar_ticks):
            logits = self.heads.position(hidden[-1])
            allowed = np.full(tokens.POSITION_VOCAB, False)
            # The mood's density, held: the next onset no further than twice the mood's gap
            # between notes, and no end to the bar before most of its notes are written. The
            # model follows its context, so without this, the long notes of a calm passage
            # went on into an excited one (two notes a bar at arousal 0.8 in the sunrise set).
            if written:
                latest = min(bar_ticks, last_onset + 1 + max_gap)
                allowed[last_onset + 1 : latest] = True  # later in this bar
                if len(written) >= min_notes or latest <= last_onset + 1:
                    allowed[tokens.POSITIONS : tokens.POSITION_START] = True  # end the bar
            else:
                base = first_advance * tokens.POSITIONS
                allowed[base : base + min(bar_ticks, max_gap)] = True
            logits = np.where(allowed, logits, -np.inf)
            position = _sample(logits, rng, self.sampling.temperature, self.sampling.top_p)
            advance, onset = tokens.split_position(position)
            if written and advance > 0:
                break
            pitch_logits = self.heads.pitch(hidden[-1], position)
            pitch_logits = np.where(allowed_pitches, pitch_logits, -np.inf)
            if previous:
                pitch_logits[previous[-1]] -= REPEAT_PENALTY
            for earlier in previous:
                pitch_logits[earlier] -= RECENT_PENALTY
            pitch = _sample(pitch_logits, rng, self.sampling.temperature, self.sampling.top_p)
            previous = [*previous[1 - RECENT_NOTES :], pitch]
            duration_logits = self.heads.duration(hidden[-1], position, pitch)
            duration_logits[tokens.DURATION_START] = -np.inf
            duration = _sample(duration_logits, rng, self.sampling.temperature, self.sampling.top_p)
            step = tokens.Step(position, pitch, duration)
            written.append(step)
            last_onset = onset
            steps.append(step)
            moods.append(mood)
            if recompute:
                hidden, _ = run(steps, moods, self.trunk.empty())
            else:
                hidden, cache = run([step], [mood], cache)
        return written


@dataclass(frozen=True)
class Style:
    """The models one style plays with: the base's, or copies with an adapter merged in."""

    writer: MelodyWriter
    groove: GroovePredictor


def _notes_from_steps(
    steps: list[tokens.Step], tonic: int, bar_ticks: int
) -> list[tuple[int, int, int]]:
    """(onset_ticks, midi_pitch, duration_ticks) of a bar's steps, monophonic, inside the bar."""
    rows = []
    for i, step in enumerate(steps):
        onset = tokens.split_position(step.position)[1]
        end = tokens.split_position(steps[i + 1].position)[1] if i + 1 < len(steps) else bar_ticks
        duration = min(tokens.DURATION_TICKS[step.duration], end - onset)
        rows.append((onset, tokens.pitch_of(step.pitch, tonic), max(1, duration)))
    return rows


def _melody_floors(rows: list[tuple[int, int, int]], request: BarRequest) -> tuple[int, int]:
    """For each half of the bar, the lowest melody pitch sounding in it (the register's floor
    when none does): the chords of that half are voiced wholly below it."""
    bar_ticks = request.beats_per_bar * TPQ
    floor = melody_register(request)[0]
    floors = []
    for half in (0, 1):
        low, high = half * bar_ticks // 2, (half + 1) * bar_ticks // 2
        sounding = [pitch for onset, pitch, d in rows if onset < high and onset + d > low]
        floors.append(min(sounding, default=floor))
    return floors[0], floors[1]


def _velocity(request: BarRequest, part: Part, accent: float = 0.0) -> int:
    """`part_velocity` with the accent in units of agogic stress (log2 sixteenths)."""
    return part_velocity(request, part, ACCENT_VELOCITY * accent)


class NeuralComposer:
    """Composes bars with the three trained models; see the module docstring."""

    name = "neural"

    def __init__(
        self,
        melody: MelodyTransformer,
        harmony: HarmonyPredictor,
        groove: GroovePredictor,
        trunk: Trunk,
        seed: int,
        sampling: Sampling | None = None,
    ) -> None:
        self.seed = seed
        self.sampling = sampling or Sampling()
        self.harmony = harmony.cpu().eval()
        self._styles = {
            BASE_STYLE: Style(MelodyWriter(melody, trunk, self.sampling), groove.cpu().eval())
        }
        self.refused_styles: dict[str, str] = {}  # style name → why it was not loaded
        self.runtime = trunk.name
        self._memory = _Memory()
        self._lock = threading.Lock()

    @property
    def writer(self) -> MelodyWriter:
        """The base melody writer."""
        return self._styles[BASE_STYLE].writer

    @property
    def styles(self) -> tuple[str, ...]:
        """The style adapters loaded, by name (the base not among them)."""
        return adapters(self._styles)

    def add_style(
        self, name: str, melody: MelodyTransformer, trunk: Trunk, groove: GroovePredictor
    ) -> None:
        """Play requests for `name` with these models (call before playing)."""
        self._styles[name] = Style(MelodyWriter(melody, trunk, self.sampling), groove.cpu().eval())

    def warm_up(self) -> None:
        """One bar through every model of every style, so the first real request (and the
        first bar after a switch) pays no first-call costs."""
        for name in self._styles:
            self.compose_bar(
                BarRequest(0, beats_per_bar=4, tonic=0, valence=0.0, arousal=0.0, style=name)
            )

    # --- the composer protocol ---

    def compose_bar(self, request: BarRequest, *, recompute: bool = False) -> ComposedBar:
        with self._lock:
            memory = self._memory.snapshot()
        style = self._styles.get(request.style, self._styles[BASE_STYLE])
        rng = np.random.default_rng(mix_seed(self.seed, request.index, 0x6E657572))
        bar_ticks = request.beats_per_bar * TPQ
        tonic = request.tonic % 12
        steps = style.writer.write(memory, request, rng, recompute=recompute)
        melody_rows = _notes_from_steps(steps, tonic, bar_ticks)
        chords = self._chords(melody_rows, memory.chord, request, rng)
        onsets, accents = self._groove(style.groove, memory.groove, request, rng)
        ceilings = _melody_floors(melody_rows, request)
        # With one chord all bar its first strokes may sound on into the second half.
        first_below = ceilings[0] if chords[1] != chords[0] else min(ceilings)
        voicing = self._voicing(chords[0], memory.voicing, request, first_below)
        parts = {
            Part.MELODY: self._melody(melody_rows, request),
            Part.CHORDS: self._comp(chords, onsets, accents, voicing, ceilings[1], request),
            Part.BASS: self._bass(chords, onsets, accents, request),
            Part.DRUMS: self._drums(onsets, accents, request),
        }
        symbols = [chord_symbol(c) for c in chords]
        return ComposedBar(
            index=request.index,
            beats_per_bar=request.beats_per_bar,
            parts={part: tuple(notes) for part, notes in parts.items()},
            composer=self.name,
            mode=asked_mode(request),
            chord=symbols[0] if symbols[0] == symbols[-1] else "/".join(symbols),
            info={
                "runtime": self.runtime,
                "steps": [[s.position, s.pitch, s.duration] for s in steps],
                "chords": chords,
                "groove": [i for i, on in enumerate(onsets) if on],
                "valence": request.valence,
                "arousal": request.arousal,
                "heard_mode": heard_mode(parts, tonic),
                **(
                    {"style": request.style}
                    if request.style != BASE_STYLE and request.style in self._styles
                    else {}
                ),
            },
        )

    def accept(self, request: BarRequest, bar: ComposedBar) -> None:
        """Remember the bar that was played, whoever composed it."""
        bar_ticks = request.beats_per_bar * TPQ
        with self._lock:
            memory = self._memory
            mood = (request.valence, request.arousal)
            melody = sorted(bar.parts.get(Part.MELODY, ()), key=lambda n: n.start_beats)
            for i, note in enumerate(melody):
                onset = min(round(note.start_beats * TPQ), bar_ticks - 1)
                if memory.last_note_bar is None or i > 0:
                    advance = 0
                else:
                    # A new bar, even when the bar count jumps back (a Song Position Pointer
                    # while following a clock) or far ahead.
                    advance = min(max(request.index - memory.last_note_bar, 1), tokens.MAX_ADVANCE)
                memory.steps.append(
                    tokens.Step(
                        tokens.position_index(advance, onset),
                        tokens.pitch_index(note.pitch - tokens.TONIC_MIDI - request.tonic % 12),
                        tokens.duration_index(round(note.duration_beats * TPQ)),
                    )
                )
                memory.moods.append(mood)
                memory.last_note_bar = request.index
            del memory.steps[: -self.writer.config.context]
            del memory.moods[: -self.writer.config.context]
            chords = bar.info.get("chords") if bar.composer == self.name else None
            memory.chord = chords[-1] if chords else NO_CHORD
            groove = [0.0] * STEPS
            for note in bar.parts.get(Part.CHORDS, ()):
                step = round(note.start_beats * STEPS_PER_QUARTER)
                if step < STEPS:
                    groove[step] = 1.0
            memory.groove = groove
            chord_notes = bar.parts.get(Part.CHORDS, ())
            if chord_notes:
                last_start = max(n.start_beats for n in chord_notes)
                memory.voicing = tuple(
                    sorted(n.pitch for n in chord_notes if n.start_beats == last_start)
                )

    # --- the parts ---

    def _melody(self, rows: list[tuple[int, int, int]], request: BarRequest) -> list[Note]:
        if not rows:
            return []
        accents = [np.log2(max(d, 1) / 3) for _, _, d in rows]
        mean = float(np.mean(accents))
        return [
            Note(
                pitch=int(clamp(pitch, 0, 127)),
                start_beats=onset / TPQ,
                duration_beats=duration / TPQ,
                velocity=_velocity(request, Part.MELODY, 0.5 * (accent - mean)),
            )
            for (onset, pitch, duration), accent in zip(rows, accents, strict=True)
        ]

    @torch.inference_mode()
    def _chords(
        self,
        melody: list[tuple[int, int, int]],
        previous: int,
        request: BarRequest,
        rng: np.random.Generator,
    ) -> list[int]:
        """One chord class for each half of the bar, among the asked mode's (`chord_mask`)."""
        bar_ticks = request.beats_per_bar * TPQ
        allowed = chord_mask(request)
        states_mode = mode_third_mask(request)
        tonic = request.tonic % 12
        chords = []
        for half in (0, 1):
            low, high = half * bar_ticks // 2, (half + 1) * bar_ticks // 2
            notes = [(pitch, duration) for onset, pitch, duration in melody if low <= onset < high]
            if not notes and melody:  # a note held over the middle of the bar
                held = [(p, d) for o, p, d in melody if o < low]
                notes = held[-1:]
            features = torch.tensor([melody_features(notes, tonic, half)])
            mood = torch.tensor([[request.valence, request.arousal]])
            logits = self.harmony(features, torch.tensor([previous]), mood)[0].numpy()
            phrase_bar = request.index % PHRASE_BARS
            if (phrase_bar, half) in CADENCE_ROOTS:
                # A phrase opens on the tonic and closes on the dominant or the tonic: the
                # harmony says where home is, so the phrase is heard in the asked key, not its
                # relative (key finding over a phrase was 83-92 % right without it).
                cadence = allowed & cadence_mask(CADENCE_ROOTS[phrase_bar, half])
                if half == 1 and not states_mode[previous] and (cadence & states_mode).any():
                    cadence &= states_mode  # the tonic then, not a dominant without the third
                logits = np.where(cadence, logits, -np.inf)
            elif half == 1 and not states_mode[previous]:
                # The first half's chord left the mode's third out (v, iv, bVII in minor): this
                # one states it, so every bar says major or minor (the rules' tables do likewise).
                logits = np.where(allowed & states_mode, logits, -np.inf)
            logits = np.where(allowed, logits, -np.inf)
            top = np.argsort(-logits)[: min(4, int(allowed.sum()))]
            masked = np.full_like(logits, -np.inf)
            masked[top] = logits[top]
            previous = _sample(masked, rng, self.sampling.chord_temperature, 1.0)
            chords.append(previous)
        return chords

    @torch.inference_mode()
    def _groove(
        self,
        model: GroovePredictor,
        previous: list[float],
        request: BarRequest,
        rng: np.random.Generator,
    ) -> tuple[list[bool], list[float]]:
        """Accompaniment onsets on the sixteenth grid, and each step's accent."""
        bar_steps = min(request.beats_per_bar * STEPS_PER_QUARTER, STEPS)
        metre = tokens.metre_index(request.beats_per_bar * TPQ)
        logits, accents = model(
            torch.tensor([[request.valence, request.arousal]]),
            torch.tensor([metre]),
            torch.tensor([previous]),
        )
        logits = logits[0].numpy() + DENSITY_LOGIT_REACH * (2 * request.density - 1)
        probabilities = 1 / (1 + np.exp(-logits[:bar_steps]))
        draws = rng.random(bar_steps)
        onsets = [bool(d < p) for d, p in zip(draws, probabilities, strict=True)]
        onsets[0] = True  # the chord is always struck on the downbeat
        return onsets + [False] * (STEPS - bar_steps), accents[0].numpy().tolist()

    def _voicing(
        self, chord: int, previous: tuple[int, ...], request: BarRequest, below: int
    ) -> tuple[int, ...]:
        """The chord in close position near the arousal's centre, under the melody."""
        center = interpolate(CHORD_CENTER_BY_AROUSAL, request.arousal)
        tones = chord_pitch_classes(chord, request.tonic % 12)
        return close_voicing(tones, min(center, below - 4), previous, below=below)

    @staticmethod
    def _strokes(
        chords: list[int], onsets: list[bool], accents: list[float], bar_steps: int, grid: int
    ) -> list[tuple[int, int, float]]:
        """(start, end, accent above the bar's mean) of each accompaniment stroke: the groove's
        onsets on every `grid`-th step, and the middle of the bar when a new chord begins there."""
        starts = [i for i in range(0, min(bar_steps, STEPS), grid) if onsets[i]]
        half_step = bar_steps // 2
        if chords[1] != chords[0] and half_step not in starts:
            starts = sorted([*starts, half_step])  # a new chord is struck where it begins
        mean = float(np.mean([accents[i] for i in starts]))
        ends = [*starts[1:], bar_steps]
        return [(a, b, accents[a] - mean) for a, b in zip(starts, ends, strict=True)]

    def _comp(
        self,
        chords: list[int],
        onsets: list[bool],
        accents: list[float],
        first_voicing: tuple[int, ...],
        second_below: int,
        request: BarRequest,
    ) -> list[Note]:
        bar_steps = request.beats_per_bar * STEPS_PER_QUARTER
        half_step = bar_steps // 2
        share = interpolate(PAD_ARTICULATION_BY_AROUSAL, request.arousal)
        second = self._voicing(chords[1], first_voicing, request, second_below)
        notes = []
        for start, end, accent in self._strokes(chords, onsets, accents, bar_steps, 1):
            voicing = first_voicing if start < half_step else second
            velocity = _velocity(request, Part.CHORDS, accent)
            for pitch in voicing:
                notes.append(
                    Note(
                        pitch=int(clamp(pitch, 0, 127)),
                        start_beats=start / STEPS_PER_QUARTER,
                        duration_beats=(end - start) * share / STEPS_PER_QUARTER,
                        velocity=velocity,
                    )
                )
        return notes

    def _bass(
        self, chords: list[int], onsets: list[bool], accents: list[float], request: BarRequest
    ) -> list[Note]:
        """The root of each half bar's chord on the groove's onsets that fall on a beat (every
        eighth when excited), the fifth on the off-beats of an excited bar."""
        bar_steps = request.beats_per_bar * STEPS_PER_QUARTER
        half_step = bar_steps // 2
        grid = 2 if request.arousal > 0.4 else STEPS_PER_QUARTER
        center = interpolate(BASS_CENTER_BY_AROUSAL, request.arousal)
        share = interpolate(ARTICULATION_BY_AROUSAL, request.arousal)
        notes = []
        for start, end, accent in self._strokes(chords, onsets, accents, bar_steps, grid):
            chord = chords[0] if start < half_step else chords[1]
            root, _quality = chord_root_quality(chord)
            interval = 7 if (request.arousal > 0.4 and start % STEPS_PER_QUARTER) else 0
            pitch = place((request.tonic + root + interval) % 12, center)
            notes.append(
                Note(
                    pitch=int(clamp(pitch, 0, 127)),
                    start_beats=start / STEPS_PER_QUARTER,
                    duration_beats=(end - start) * share / STEPS_PER_QUARTER,
                    velocity=_velocity(request, Part.BASS, accent),
                )
            )
        return notes

    def _drums(self, onsets: list[bool], accents: list[float], request: BarRequest) -> list[Note]:
        """The kit read from this bar's groove (music/drums.py). Its draws (ghost notes, open hat,
        fill notes) come from a stream of their own, so they never shift another part's draws,
        nor theirs."""
        rng = np.random.default_rng(mix_seed(self.seed, request.index, 0x6472756D))
        return drum_bar(request, onsets, accents, rng)


def _load_style(
    name: str,
    adapters_dir: Path,
    base: dict[str, torch.nn.Module],
    base_sha: dict[str, str],
    make_trunk: Callable[[MelodyTransformer, Callable[[], Path]], Trunk],
) -> tuple[MelodyTransformer, Trunk | None, GroovePredictor]:
    """A style's merged melody model with its trunk, and its (merged or base) groove."""
    info = lora.read_style(name, adapters_dir)
    adapted = {
        kind: lora.merged(info, kind, base[kind], base_sha[kind])
        if kind in info.targets
        else base[kind]
        for kind in ("melody", "groove")
    }
    melody, trunk = adapted["melody"], None
    if "melody" in info.targets:
        sha = f"{info.file_sha('melody')[:16]}-{base_sha['melody'][:16]}"
        trunk = make_trunk(melody, lambda: export_path(info.folder, f"melody-{sha}.onnx"))
    return melody, trunk, adapted["groove"]


def load_neural(
    seed: int,
    directory: Path = checkpoint.DEFAULT_DIR,
    *,
    device: str = "auto",
    runtime: str = "torch",
    quantize: bool = False,
    threads: int = 1,
    styles: Sequence[str] = (),
    adapters_dir: Path = Path("adapters"),
) -> NeuralComposer:
    """Load the three checkpoints and the named style adapters, and warm them all up.

    Raises CheckpointError or RuntimeUnavailable for the base models. A style adapter that cannot
    be used is refused — `refused_styles` says why, naming it — and the others and the base
    carry on.
    """
    started = time.perf_counter()
    torch.set_num_threads(threads)
    chosen = pick_device(device)
    melody = checkpoint.load("melody", directory)
    harmony = checkpoint.load("harmony", directory)
    groove = checkpoint.load("groove", directory)

    def make_trunk(model: MelodyTransformer, onnx: Callable[[], Path]) -> Trunk:
        """The runtime's trunk; `onnx` says where the export lives (the onnx runtime only: it
        makes that folder)."""
        if runtime == "onnx":
            return OnnxTrunk(model, onnx(), threads=threads)
        return TorchTrunk(model, chosen, quantize=quantize)

    trunk = make_trunk(melody, lambda: onnx_path(directory))
    composer = NeuralComposer(melody, harmony, groove, trunk, seed)
    base = {"melody": melody, "groove": groove}
    base_sha = {kind: checkpoint.read_description(kind, directory)["sha256"] for kind in base}
    for name in dict.fromkeys(styles):  # each once, in order
        try:
            style_melody, style_trunk, style_groove = _load_style(
                name, adapters_dir, base, base_sha, make_trunk
            )
        except (lora.AdapterError, RuntimeUnavailable, OSError) as error:
            composer.refused_styles[name] = str(error)  # composer.refuse_styles tells of it
            continue
        composer.add_style(name, style_melody, style_trunk or trunk, style_groove)
    composer.warm_up()
    log.info(
        "neural composer ready (%s%s) in %.0f ms",
        trunk.name,
        f"; styles {', '.join(composer.styles)}" if composer.styles else "",
        (time.perf_counter() - started) * 1e3,
    )
    return composer
