"""Drums from the groove: the groove predictor says where and how hard, two tables say with what.

The neural composer's groove predictor (models/groove.py) gives each sixteenth of a bar an onset
(drawn from its probability: where the accompaniment starts a note) and an accent (the expected
length of a note starting there, log2 sixteenths: a long note is heard as stressed). The corpus
holds no drum parts, so the model cannot name a drum; this module reads its two outputs as a kit.

Who decides what (the groove model → the tables here):

- **kicks**: the groove's onsets with the strongest accents, never under the snare → how many
  per four beats, and on which grid (`DrumFeel`); the downbeat always.
- **snare**: in each backbeat beat, the beat or its off-beat eighth, whichever the groove accents
  more → which beats are the backbeat, in full and in half time, per metre (`DRUM_METRES`).
- **hats or ride**: the groove's onsets on the feel's grid → the steady pulse under them.
- **open hat, ghost notes, fill notes**: the groove's onsets and gaps say where they may fall →
  their odds (drawn from the caller's generator).
- **velocity**: each hit's accent against the bar's mean → a level per feel and per drum, and
  arousal × intensity through `part_velocity`, as in every part.
- **the kit itself**: nothing → which instruments (General MIDI keys, `Drum`), how sparse when
  calm, the ride when most excited, fills and crashes by the bar index (below).

The feel is picked from the request's arousal nudged by the density control (the rule composer's
bands, plus a ride band at the top); the model's own onsets grow denser with arousal as well.

Phrases: the neural composer has no phrase plan, so phrases are counted from the bar index in
fours. The last bar of every 4-bar phrase (index % 4 == 3) ends with a one-beat fill, the last bar
of every 8-bar phrase (index % 8 == 7) with a two-beat one, and the first bar of every phrase after
the first (index % 4 == 0, index > 0), the bar after a fill, opens with a crash. Where a setlist's
cues fall on multiples of four bars (the examples' do), a fill leads into each new section.

Everything random comes from the generator the caller passes, so a seed gives the same kit. The
groove model runs once a bar, for the accompaniment; the drums only read its answer (a few dozen
steps of Python), so they add nothing to the composer's one-bar budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from livekomp.affect import clamp
from livekomp.music.arrange import part_velocity
from livekomp.music.phrase import BarRequest, Note, Part

STEPS_PER_BEAT = 4  # the groove's grid: sixteenths
EIGHTH = 2  # steps
HIT_BEATS = 0.125  # drums are one-shots; short enough never to touch the next hit
DENSITY_REACH = 0.6  # how far the density control moves the feel's energy (as in the rules)
ACCENT_VELOCITY = 6.0  # velocity steps per unit of accent (log2 sixteenths) above the bar's mean
FILL_ODDS = 0.6  # chance that a fill step the groove leaves empty still sounds
FILL_RISE = 12.0  # velocity steps a fill grows over its span, into the next downbeat ...
FILL_ACCENT_SHARE = 0.5  # ... with the groove's accents shading it at half their weight
PHRASE_BARS = 4  # a fill ends each phrase of this many bars ...
LONG_PHRASE_BARS = 8  # ... and a longer one each phrase of this many
MAX_GHOSTS = 2


class Drum(IntEnum):
    """General MIDI percussion keys (channel 10) the kit uses."""

    KICK = 36
    SIDE_STICK = 37
    SNARE = 38
    CLOSED_HAT = 42
    LOW_TOM = 45
    OPEN_HAT = 46
    MID_TOM = 48
    CRASH = 49
    HIGH_TOM = 50
    RIDE = 51


FILL_DRUMS = (Drum.SNARE, Drum.HIGH_TOM, Drum.MID_TOM, Drum.LOW_TOM)  # down the kit

# Velocity steps of each role against the bar's level: the backbeat cuts, the hats sit under it.
ROLE_LEVEL = {
    "kick": 0.0,
    "snare": 4.0,
    "ghost": -24.0,
    "time": -10.0,  # closed hat or ride
    "open": -4.0,
    "crash": 4.0,
    "fill": -2.0,
}


@dataclass(frozen=True, slots=True)
class DrumMetre:
    """Where a bar's backbeat falls (0-based beats): what the groove's accents cannot say,
    since they only rank the steps."""

    backbeats: tuple[int, ...]  # the snare's beats in a full backbeat
    half_time: tuple[int, ...]  # its one beat (or two) in a half-time feel


# Every metre the models know (tokens.BAR_TICKS: whole bars of 1 to 8 quarter notes). The snare
# falls where the rule composer's meters put it, so both composers mean the same by a metre; only
# eight beats differ, played here as two bars of 4/4 rather than the rules' half time.
DRUM_METRES: dict[int, DrumMetre] = {
    1: DrumMetre(backbeats=(), half_time=()),
    2: DrumMetre(backbeats=(1,), half_time=(1,)),  # 2/4
    3: DrumMetre(backbeats=(2,), half_time=(2,)),  # 3/4: the snare on three, two left to the hats
    4: DrumMetre(backbeats=(1, 3), half_time=(2,)),  # 4/4
    5: DrumMetre(backbeats=(2, 4), half_time=(3,)),  # 5/4 as 3 + 2
    6: DrumMetre(backbeats=(3,), half_time=(3,)),  # 6/8 felt in two (3 + 3)
    7: DrumMetre(backbeats=(2, 5), half_time=(4,)),  # 7/4 as 2 + 2 + 3
    8: DrumMetre(backbeats=(1, 3, 5, 7), half_time=(2, 6)),  # two bars of 4/4
}


def drum_metre(beats_per_bar: int) -> DrumMetre:
    """The metre's row; longer bars (beyond the models' eight beats) backbeat on every other
    beat, and in half time on the third of every four."""
    if beats_per_bar in DRUM_METRES:
        return DRUM_METRES[beats_per_bar]
    return DrumMetre(
        backbeats=tuple(range(1, beats_per_bar, 2)), half_time=tuple(range(2, beats_per_bar, 4))
    )


@dataclass(frozen=True, slots=True)
class DrumFeel:
    """What one band of energy plays, and how much of the groove it takes up."""

    name: str
    kicks: int  # kicks per four beats at most; the downbeat is always one (0: no kick)
    kick_grid: int  # steps: kicks only on the groove's onsets on this grid
    backbeat: str  # "full", "half" (DrumMetre) or "" for none
    snare: Drum  # what plays the backbeat
    time: Drum | None  # the time-keeper: closed hat or ride (None: silence)
    pulse: int | None  # steps of the time-keeper's steady pulse; None: the groove's onsets alone
    onset_grid: int  # steps: the groove's onsets on this grid add time-keeper hits
    open_odds: float  # chance of one open hat where the groove leaves a gap after an off-beat
    ghost_odds: float  # chance of a ghost snare on each off-beat onset of the groove
    fill_grid: int | None  # steps of a fill's grid; None: no fills
    crash: bool  # a crash opens each phrase
    level: float  # velocity steps for the whole kit


# The first row whose threshold the energy reaches (the rule composer's bands: hushed, still,
# light, moving, driving; a ride band above).
DRUM_FEELS: tuple[tuple[float, DrumFeel], ...] = (
    (0.75, DrumFeel("riding", kicks=4, kick_grid=EIGHTH, backbeat="full", snare=Drum.SNARE,
                    time=Drum.RIDE, pulse=EIGHTH, onset_grid=1, open_odds=0.0, ghost_odds=0.35,
                    fill_grid=1, crash=True, level=4)),
    (0.45, DrumFeel("driving", kicks=3, kick_grid=EIGHTH, backbeat="full", snare=Drum.SNARE,
                    time=Drum.CLOSED_HAT, pulse=EIGHTH, onset_grid=1, open_odds=0.6,
                    ghost_odds=0.25, fill_grid=1, crash=True, level=2)),
    (-0.1, DrumFeel("moving", kicks=2, kick_grid=EIGHTH, backbeat="full", snare=Drum.SNARE,
                    time=Drum.CLOSED_HAT, pulse=STEPS_PER_BEAT, onset_grid=1, open_odds=0.4,
                    ghost_odds=0.0, fill_grid=EIGHTH, crash=True, level=0)),
    (-0.55, DrumFeel("light", kicks=2, kick_grid=STEPS_PER_BEAT, backbeat="full",
                     snare=Drum.SIDE_STICK, time=Drum.CLOSED_HAT, pulse=STEPS_PER_BEAT,
                     onset_grid=EIGHTH, open_odds=0.0, ghost_odds=0.0, fill_grid=EIGHTH,
                     crash=False, level=-6)),
    (-0.9, DrumFeel("still", kicks=1, kick_grid=STEPS_PER_BEAT, backbeat="half",
                    snare=Drum.SIDE_STICK, time=Drum.RIDE, pulse=None,
                    onset_grid=STEPS_PER_BEAT, open_odds=0.0, ghost_odds=0.0, fill_grid=None,
                    crash=False, level=-14)),
    (-math.inf, DrumFeel("hushed", kicks=0, kick_grid=STEPS_PER_BEAT, backbeat="",
                         snare=Drum.SIDE_STICK, time=None, pulse=None, onset_grid=STEPS_PER_BEAT,
                         open_odds=0.0, ghost_odds=0.0, fill_grid=None, crash=False, level=0)),
)  # fmt: skip


def drum_feel(request: BarRequest) -> DrumFeel:
    """The feel for a request: arousal, nudged by the density control."""
    energy = clamp(request.arousal + DENSITY_REACH * (2 * request.density - 1), -1.0, 1.0)
    return next(feel for threshold, feel in DRUM_FEELS if energy >= threshold)


def fill_beats(index: int, beats_per_bar: int) -> int:
    """How many beats at the end of bar `index` a fill takes: two on the last bar of an 8-bar
    phrase, one on the last of a 4-bar one, never the whole bar."""
    if index % LONG_PHRASE_BARS == LONG_PHRASE_BARS - 1:
        wanted = 2 if beats_per_bar >= 4 else 1
    elif index % PHRASE_BARS == PHRASE_BARS - 1:
        wanted = 1
    else:
        wanted = 0
    return min(wanted, beats_per_bar - 1)


def opens_phrase(index: int) -> bool:
    """The first bar of a phrase after the first: the bar after a fill."""
    return index > 0 and index % PHRASE_BARS == 0


def drum_bar(
    request: BarRequest,
    onsets: Sequence[bool],
    accents: Sequence[float],
    rng: np.random.Generator,
) -> list[Note]:
    """One bar of drums from the groove's onsets and accents (one per sixteenth from the
    downbeat; a bar longer than them repeats them), in the request's feel and metre."""
    feel = drum_feel(request)
    bar_steps = request.beats_per_bar * STEPS_PER_BEAT
    onset = [bool(onsets[s % len(onsets)]) for s in range(bar_steps)]
    accent = [float(accents[s % len(accents)]) for s in range(bar_steps)]
    mean = float(np.mean(accent))
    hits: dict[tuple[int, Drum], float] = {}  # (step, drum) → velocity steps

    def hit(
        step: int, drum: Drum, role: str, extra: float = 0.0, accent_share: float = 1.0
    ) -> None:
        stress = accent_share * ACCENT_VELOCITY * (accent[step] - mean)
        hits[(step, drum)] = feel.level + ROLE_LEVEL[role] + stress + extra

    fill_start = bar_steps - STEPS_PER_BEAT * (fill_beats(request.index, request.beats_per_bar))
    if feel.fill_grid is None:
        fill_start = bar_steps
    groove_steps = range(fill_start)  # where the groove pattern plays; the fill has the rest

    snares = _snare_steps(feel, request.beats_per_bar, accent, fill_start)
    for step in snares:
        hit(step, feel.snare, "snare")
    kicks = _kick_steps(feel, onset, accent, snares, bar_steps)
    for step in kicks:
        hit(step, Drum.KICK, "kick")

    crash = feel.crash and opens_phrase(request.index)
    if crash:
        hit(0, Drum.CRASH, "crash")
    if feel.time is not None:
        time_steps = [
            s
            for s in groove_steps
            if (feel.pulse is not None and s % feel.pulse == 0)
            or (onset[s] and s % feel.onset_grid == 0)
        ]
        if crash:
            time_steps = [s for s in time_steps if s != 0]  # the crash keeps the downbeat
        opened = _open_hat_step(feel, onset, time_steps, snares, rng)
        for step in time_steps:
            if step == opened:
                hit(step, Drum.OPEN_HAT, "open")
            else:
                hit(step, feel.time, "time")

    if feel.ghost_odds > 0:
        ghosts = [
            s
            for s in groove_steps
            if onset[s]
            and s % STEPS_PER_BEAT
            and s not in kicks
            and all(abs(s - t) > 1 for t in snares)
        ]
        chosen = [s for s in ghosts if rng.random() < feel.ghost_odds][:MAX_GHOSTS]
        for step in chosen:
            hit(step, Drum.SNARE, "ghost")

    if fill_start < bar_steps and feel.fill_grid is not None:
        span = bar_steps - fill_start
        for step in range(fill_start, bar_steps, feel.fill_grid):
            sure = step % STEPS_PER_BEAT == 0 or step + feel.fill_grid >= bar_steps
            if sure or onset[step] or rng.random() < FILL_ODDS:
                place = (step - fill_start) / span
                drum = FILL_DRUMS[int(place * len(FILL_DRUMS))]
                hit(step, drum, "fill", FILL_RISE * place, FILL_ACCENT_SHARE)

    beats = float(request.beats_per_bar)
    return [
        Note(
            pitch=int(drum),
            start_beats=step / STEPS_PER_BEAT,
            duration_beats=min(HIT_BEATS, beats - step / STEPS_PER_BEAT),
            velocity=part_velocity(request, Part.DRUMS, stress),
        )
        for (step, drum), stress in sorted(hits.items())
    ]


def _snare_steps(
    feel: DrumFeel, beats_per_bar: int, accent: list[float], fill_start: int
) -> list[int]:
    """Each backbeat beat's snare, on its beat or its off-beat eighth, whichever the groove
    accents more (the beat on a tie); none inside a fill."""
    metre = drum_metre(beats_per_bar)
    beats = {"full": metre.backbeats, "half": metre.half_time}.get(feel.backbeat, ())
    steps = []
    for beat in beats:
        start = beat * STEPS_PER_BEAT
        best = max((start, start + EIGHTH), key=lambda s: (accent[s], -s))
        if best < fill_start:
            steps.append(best)
    return steps


def _kick_steps(
    feel: DrumFeel, onset: list[bool], accent: list[float], snares: list[int], bar_steps: int
) -> list[int]:
    """The downbeat, then the groove's onsets on the kick grid with the strongest accents, as
    many as the feel allows for the bar's length; never on a snare."""
    if feel.kicks == 0:
        return []
    most = max(1, round(feel.kicks * bar_steps / (4 * STEPS_PER_BEAT)))
    candidates = [
        s for s in range(feel.kick_grid, bar_steps, feel.kick_grid) if onset[s] and s not in snares
    ]
    strongest = sorted(candidates, key=lambda s: (-accent[s], s))
    return [0, *sorted(strongest[: most - 1])]


def _open_hat_step(
    feel: DrumFeel,
    onset: list[bool],
    time_steps: list[int],
    snares: list[int],
    rng: np.random.Generator,
) -> int | None:
    """Perhaps one open hat: the last off-beat eighth hat after which the groove rests for a
    sixteenth or two and no snare comes (the hat rings into the gap)."""
    if feel.open_odds <= 0 or feel.time is not Drum.CLOSED_HAT:
        return None
    gaps = [
        s
        for s in time_steps
        if s % STEPS_PER_BEAT == EIGHTH
        and not any(onset[t] for t in range(s + 1, min(s + 3, len(onset))))
        and s + EIGHTH not in snares
    ]
    if not gaps or rng.random() >= feel.open_odds:
        return None
    return gaps[-1]
