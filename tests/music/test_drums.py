"""Drums read from a groove: kick and snare on its accents, hats on its onsets, fills at phrase
ends, the tables for what a groove cannot say. The grooves here are written by hand, so each test
knows where every accent is; tests/models/test_neural.py plays the same through the models."""

from __future__ import annotations

import numpy as np
import pytest

from livekomp.music.drums import (
    DRUM_METRES,
    FILL_DRUMS,
    Drum,
    drum_bar,
    drum_feel,
    fill_beats,
)
from livekomp.music.phrase import BarRequest, Note

STEPS = 32  # the groove predictor's grid: eight beats of sixteenths
TOMS = {Drum.HIGH_TOM, Drum.MID_TOM, Drum.LOW_TOM}
# A 4/4 groove like the model's: the downbeat longest, then beat three, the backbeats, eighths.
METRIC_ACCENTS = [2.2, 0.4, 1.2, 0.0, 1.6, 0.4, 1.1, 0.1, 2.0, 0.5, 1.0, 0.0, 1.6, 0.2, 1.0, 0.0]


def groove(onsets: set[int], accents: dict[int, float] | None = None, beats: int = 4):
    """Onsets on the given steps; accents of the metric profile, some steps overridden."""
    profile = (METRIC_ACCENTS * 8)[: beats * 4] + [0.0] * (STEPS - beats * 4)
    for step, value in (accents or {}).items():
        profile[step] = value
    return [s in onsets for s in range(STEPS)], profile[:STEPS]


def play(
    onsets: list[bool],
    accents: list[float],
    *,
    arousal: float = 0.0,
    index: int = 1,
    beats: int = 4,
    intensity: float = 0.5,
    seed: int = 0,
) -> list[Note]:
    request = BarRequest(index, beats, 0, 0.2, arousal, intensity=intensity)
    return drum_bar(request, onsets, accents, np.random.default_rng(seed))


def steps_of(notes: list[Note], *drums: Drum) -> list[int]:
    return sorted(round(n.start_beats * 4) for n in notes if n.pitch in drums)


def test_kicks_take_the_groove_onsets_it_accents_most():
    onsets = {0, 2, 6, 8, 10, 14}  # driving: three kicks, on eighths, off the snare's steps
    first = play(*groove(onsets, {2: 2.6, 10: 2.4}), arousal=0.6)
    assert steps_of(first, Drum.KICK) == [0, 2, 10]
    second = play(*groove(onsets, {2: 0.2, 6: 1.5, 8: 1.4, 10: 0.3, 14: 1.5}), arousal=0.6)
    assert steps_of(second, Drum.KICK) == [0, 6, 14]
    # A strong accent where the groove starts no note takes no kick.
    third = play(*groove(onsets - {2}, {2: 3.0, 10: 2.4}), arousal=0.6)
    assert steps_of(third, Drum.KICK) == [0, 8, 10]


def test_the_snare_takes_the_backbeat_or_its_offbeat_whichever_the_groove_accents():
    onsets = {0, 4, 8, 12}
    assert steps_of(play(*groove(onsets)), Drum.SNARE) == [4, 12]
    pushed = play(*groove(onsets, {6: 2.5}))  # the 'and' of two outweighs two
    assert steps_of(pushed, Drum.SNARE) == [6, 12]
    # Never a kick under the snare, whatever the accents say.
    crowded = play(*groove({0, 4, 6, 8, 12}, {4: 3.0, 12: 3.0}), arousal=0.6)
    assert not set(steps_of(crowded, Drum.KICK)) & set(steps_of(crowded, Drum.SNARE))


@pytest.mark.parametrize("beats", sorted(DRUM_METRES))
def test_the_backbeat_comes_from_the_metre_table(beats):
    onsets, _ = groove({0}, beats=beats)
    flat = [1.0] * STEPS  # no accent to move the snare off the table's beats
    notes = play(onsets, flat, beats=beats, index=1)
    assert steps_of(notes, Drum.SNARE) == [4 * b for b in DRUM_METRES[beats].backbeats]
    assert steps_of(notes, Drum.KICK) == [0]
    calm = play(onsets, flat, beats=beats, arousal=-0.7)  # still: half time, side stick
    assert steps_of(calm, Drum.SIDE_STICK) == [4 * b for b in DRUM_METRES[beats].half_time]
    for note in notes + calm:
        assert note.start_beats >= 0 and note.end_beats <= beats + 1e-9


def test_hats_play_the_groove_onsets_over_a_steady_pulse():
    hats = (Drum.CLOSED_HAT, Drum.OPEN_HAT)
    sparse = play(*groove({0, 8}))  # moving: a hat a beat, and one on each onset
    assert steps_of(sparse, *hats) == [0, 4, 8, 12]
    busy = play(*groove({0, 3, 6, 8, 11, 14}))
    assert steps_of(busy, *hats) == [0, 3, 4, 6, 8, 11, 12, 14]
    excited = play(*groove({0, 3, 6, 8, 11, 14}), arousal=0.9)  # riding: the ride, eighths
    assert steps_of(excited, Drum.RIDE) == [0, 2, 3, 4, 6, 8, 10, 11, 12, 14]
    calm = play(*groove({0, 3, 6, 8, 12}), arousal=-0.7)  # still: the groove's beats alone
    assert steps_of(calm, Drum.RIDE) == [0, 8, 12]


def test_velocity_follows_the_accents_and_the_intensity():
    onsets, accents = groove({0, 2, 4, 6, 8, 10, 12, 14, 15})
    notes = play(onsets, accents)
    hats = {round(n.start_beats * 4): n.velocity for n in notes if n.pitch == Drum.CLOSED_HAT}
    assert len(hats) == 9  # the eighths and the last sixteenth: no gap for an open hat
    assert hats[0] > hats[8] > hats[4] > hats[2] > hats[14]  # in the order of the accents
    loud = play(onsets, accents, intensity=0.9)
    soft = play(onsets, accents, intensity=0.1)
    assert [(n.pitch, n.start_beats) for n in loud] == [(n.pitch, n.start_beats) for n in soft]
    assert all(a.velocity > b.velocity for a, b in zip(loud, soft, strict=True))


def test_fills_end_each_phrase_and_a_crash_opens_the_next():
    onsets, accents = groove({0, 4, 6, 8, 12, 14})
    for index in range(17):
        notes = play(onsets, accents, index=index, arousal=0.3)
        toms = steps_of(notes, *TOMS)
        if index % 4 == 3:
            span = 2 if index % 8 == 7 else 1
            assert fill_beats(index, 4) == span
            assert toms, index
            fill = [n for n in notes if n.pitch in FILL_DRUMS and n.start_beats >= 4 - span]
            assert fill[0].start_beats == 4 - span and fill[0].pitch == Drum.SNARE
            # The fill replaces the hats and the backbeat over its span.
            start = 16 - 4 * span
            assert [s for s in steps_of(notes, Drum.SNARE) if s < start] == [4]
            assert all(s < start for s in steps_of(notes, Drum.CLOSED_HAT, Drum.OPEN_HAT))
        else:
            assert fill_beats(index, 4) == 0
            assert not toms, index
        assert steps_of(notes, Drum.CRASH) == ([0] if index % 4 == 0 and index else []), index
    # The calm feels have neither.
    for index in (3, 4, 7, 8):
        assert not steps_of(play(onsets, accents, index=index, arousal=-0.7), *TOMS, Drum.CRASH)


def test_fills_take_the_groove_onsets_and_grow_louder_down_the_kit():
    onsets, accents = groove({0, 4, 8, 12, 13, 15}, {13: 0.0, 15: 0.0})
    notes = play(onsets, accents, index=3, arousal=0.6, seed=1)  # driving: sixteenth fills
    fill = sorted(
        (n for n in notes if n.start_beats >= 3 and n.pitch != Drum.KICK),
        key=lambda n: n.start_beats,
    )
    assert {13, 15} <= {round(n.start_beats * 4) for n in fill}  # every onset of the groove
    assert fill[0].pitch == Drum.SNARE and fill[-1].pitch == Drum.LOW_TOM
    assert fill[-1].velocity > fill[0].velocity


def test_calm_is_sparse_and_excitement_fills_the_kit():
    onsets, accents = groove({0, 4, 6, 8, 12, 14})
    counts = [len(play(onsets, accents, arousal=a)) for a in (-0.95, -0.7, -0.3, 0.6, 0.9)]
    assert counts[0] == 0  # hushed
    assert counts == sorted(counts) and counts[1] < counts[2] < counts[3], counts
    # The density control nudges the feel as it nudges the rule composer's.
    assert drum_feel(BarRequest(0, 4, 0, 0.0, 0.0, density=1.0)).name == "driving"
    assert drum_feel(BarRequest(0, 4, 0, 0.0, 0.0, density=0.25)).name == "light"


def test_the_same_generator_plays_the_same_bar():
    onsets, accents = groove({0, 2, 5, 6, 8, 10, 13, 14})
    bars = [play(onsets, accents, index=7, arousal=0.6, seed=s) for s in (4, 4, 5, 6, 7, 8)]
    assert bars[0] == bars[1]
    assert any(bar != bars[0] for bar in bars[2:])  # ghosts, the open hat, the fill are drawn


@pytest.mark.parametrize("beats", [1, 2, 12, 16])
def test_short_and_long_bars_stay_inside_themselves(beats):
    onsets, accents = groove(set(range(0, STEPS, 2)))
    for index in (3, 7, 8):
        for arousal in (-0.7, 0.0, 0.9):
            notes = play(onsets, accents, beats=beats, index=index, arousal=arousal)
            assert notes
            assert all(0 <= n.start_beats < beats and n.end_beats <= beats + 1e-9 for n in notes)


def test_the_kick_count_is_per_four_beats():
    for beats, most in ((2, 2), (3, 3), (4, 4), (6, 6), (8, 8)):  # riding: four per four beats
        onsets, accents = groove(set(range(0, 4 * beats, 2)), beats=beats)
        assert len(steps_of(play(onsets, accents, beats=beats, arousal=0.9), Drum.KICK)) == most
