"""The rule-based composer: acceptance criteria from the issue, checked on real output."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from livekomp.music.phrase import BarRequest, ComposedBar, Note, Part
from livekomp.music.rules import METERS, PROGRESSIONS, RuleComposer, meter_for, phrase_position
from livekomp.music.theory import (
    MODE_BY_VALENCE,
    detect_key,
    mode_for_valence,
    parse_key,
    scale_pitch_classes,
)

SEEDS = range(10)
PITCHED = (Part.MELODY, Part.CHORDS, Part.BASS)


def play(
    seed: int,
    bars: int = 16,
    *,
    valence: float = 0.3,
    arousal: float = 0.0,
    beats: int = 4,
    tonic: int = 0,
    density: float = 0.5,
    intensity: float = 0.5,
) -> list[ComposedBar]:
    composer = RuleComposer(seed)
    return [
        composer.compose_bar(
            BarRequest(i, beats, tonic, valence, arousal, density=density, intensity=intensity)
        )
        for i in range(bars)
    ]


def notes_of(bars: Iterable[ComposedBar], parts: Iterable[Part] = tuple(Part)) -> list[Note]:
    wanted = tuple(parts)
    return [n for bar in bars for part in wanted for n in bar.parts[part]]


def mean_velocity(notes: list[Note]) -> float:
    return sum(n.velocity for n in notes) / len(notes)


def chord_pitch_classes(bar: ComposedBar) -> set[int]:
    return {n.pitch % 12 for n in bar.parts[Part.CHORDS]}


def root_pitch_class(bar: ComposedBar) -> int:
    """The root of the bar's chord, read from its letter name ("Ebmaj7" -> 3)."""
    name = bar.info["chord_name"]
    assert isinstance(name, str)
    letters = name[:2] if name[1:2] in ("#", "b") else name[:1]
    return parse_key(letters)


def test_identity() -> None:
    composer = RuleComposer(1)
    bar = composer.compose_bar(BarRequest(0, 4, 0, 0.0, 0.0))
    assert RuleComposer.name == "rules" and bar.composer == "rules"
    assert bar.index == 0 and bar.beats_per_bar == 4
    assert set(bar.parts) == set(Part)
    assert bar.mode == mode_for_valence(0.0) and bar.chord


# --- valence: mode and key ------------------------------------------------------------------------


@pytest.mark.parametrize(("valence", "quality"), [(-0.8, "minor"), (0.8, "major")])
@pytest.mark.parametrize("parts", [(Part.MELODY, Part.CHORDS), PITCHED])
def test_valence_sets_the_detected_mode(
    valence: float, quality: str, parts: tuple[Part, ...]
) -> None:
    detected = []
    for seed, arousal in itertools.product(SEEDS, (-0.5, 0.0, 0.6)):
        notes = notes_of(play(seed, valence=valence, arousal=arousal, tonic=seed % 12), parts)
        detected.append(detect_key((n.pitch, n.duration_beats) for n in notes)[1])
    assert detected.count(quality) >= 0.9 * len(detected), detected


def test_sad_finds_the_right_tonic_too() -> None:
    hits = 0
    for seed in SEEDS:
        tonic = (5 * seed) % 12
        notes = notes_of(play(seed, valence=-0.8, tonic=tonic), PITCHED)
        hits += detect_key((n.pitch, n.duration_beats) for n in notes)[:2] == (tonic, "minor")
    assert hits >= 8


def test_mode_follows_valence() -> None:
    for _, mode in MODE_BY_VALENCE:
        assert mode in PROGRESSIONS
    for valence in (-1.0, -0.8, -0.3, 0.0, 0.3, 0.8, 1.0):
        bars = play(3, 4, valence=valence)
        assert {b.mode for b in bars} == {mode_for_valence(valence)}


def test_happy_harmony_is_richer_and_sad_harmony_is_darker() -> None:
    happy = [b.chord for seed in SEEDS for b in play(seed, valence=0.9)]
    sad = [b.chord for seed in SEEDS for b in play(seed, valence=-0.9)]
    assert sum("add9" in c or "maj" in c for c in happy) > len(happy) / 3
    assert sum(c[0].islower() for c in sad) > len(sad) / 3  # minor chords, by their numerals
    assert not any("add9" in c and "b9" not in c for c in sad)


# --- arousal: density, velocity, register, articulation -------------------------------------------


def test_arousal_doubles_the_notes_and_raises_velocity() -> None:
    for seed in SEEDS:
        calm = play(seed, arousal=-0.8)
        excited = play(seed, arousal=0.8)
        assert len(notes_of(excited)) >= 2 * len(notes_of(calm))
        assert len(notes_of(excited, [Part.MELODY])) >= 2 * len(notes_of(calm, [Part.MELODY]))
        assert mean_velocity(notes_of(excited)) > mean_velocity(notes_of(calm)) + 20


def test_arousal_raises_the_register_and_shortens_the_notes() -> None:
    calm = notes_of([b for seed in SEEDS for b in play(seed, arousal=-0.8)], [Part.MELODY])
    excited = notes_of([b for seed in SEEDS for b in play(seed, arousal=0.8)], [Part.MELODY])
    assert sum(n.pitch for n in excited) / len(excited) > sum(n.pitch for n in calm) / len(calm) + 5
    longest = max(n.duration_beats for n in excited)
    assert sum(n.duration_beats for n in calm) / len(calm) > 3 * sum(
        n.duration_beats for n in excited
    ) / len(excited)
    assert longest <= 4


def test_calm_chords_are_pads_and_excited_chords_are_stabs() -> None:
    calm = play(2, arousal=-0.8)
    excited = play(2, arousal=0.8)
    for bar in calm:
        assert {n.start_beats for n in bar.parts[Part.CHORDS]} == {0.0}
        assert min(n.duration_beats for n in bar.parts[Part.CHORDS]) > 3.5
    stabs = notes_of(excited, [Part.CHORDS])
    assert len({(n.start_beats) for n in stabs}) > 1
    assert max(n.duration_beats for n in stabs) < 1


def test_density_and_intensity_scale_what_they_should() -> None:
    sparse = play(4, density=0.1)
    busy = play(4, density=0.9)
    assert len(notes_of(busy)) > 1.5 * len(notes_of(sparse))
    soft = play(4, intensity=0.1)
    loud = play(4, intensity=0.9)
    assert mean_velocity(notes_of(loud)) > mean_velocity(notes_of(soft)) + 20
    assert [len(b.parts[Part.MELODY]) for b in soft] == [len(b.parts[Part.MELODY]) for b in loud]


def test_drums_are_sparse_when_calm_and_drive_when_excited() -> None:
    hushed = play(5, arousal=-1.0, density=0.2)
    assert notes_of(hushed, [Part.DRUMS]) == []
    calm = notes_of(play(5, arousal=-0.8), [Part.DRUMS])
    excited = notes_of(play(5, arousal=0.8), [Part.DRUMS])
    assert len(calm) <= 3 * 16 and max(n.velocity for n in calm) < 60
    assert len(excited) >= 16 * 16
    kit = {n.pitch for n in excited}
    assert {36, 38, 42} <= kit
    assert all(n.pitch in {35, 36, 37, 38, 42, 45, 46, 48, 49, 50, 51} for n in calm + excited)


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_music_and_different_seed_different_music() -> None:
    moods = dict(valence=-0.2, arousal=0.4)
    assert play(11, **moods) == play(11, **moods)
    assert play(11, **moods) != play(12, **moods)
    melodies = {tuple(notes_of(play(seed, **moods), [Part.MELODY])) for seed in SEEDS}
    assert len(melodies) == len(SEEDS)


def test_a_phrase_start_depends_only_on_seed_and_request() -> None:
    history = RuleComposer(21)
    for i in range(40):
        request = BarRequest(i, 4, 2, (i % 7) / 3 - 1, ((i * 3) % 5) / 2 - 1)
        bar = history.compose_bar(request)
        if phrase_position(21, i).is_first:
            assert RuleComposer(21).compose_bar(request) == bar


def test_skipping_bars_and_changing_mood_mid_phrase_still_works() -> None:
    composer = RuleComposer(8)
    for index in (0, 1, 5, 6, 7, 30, 31, 2, 100, 101):
        beats = 3 + index % 4
        bar = composer.compose_bar(
            BarRequest(index, beats, 9, (index % 5) / 2 - 1, 0.9 - index / 60)
        )
        assert_valid(bar)
        assert all(bar.parts[p] for p in PITCHED)


# --- validity -------------------------------------------------------------------------------------


def assert_valid(bar: ComposedBar) -> None:
    for part, notes in bar.parts.items():
        for n in notes:
            assert 0 <= n.start_beats < bar.beats_per_bar, (part, n)
            assert n.end_beats <= bar.beats_per_bar + 1e-9, (part, n)
            assert 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127


@pytest.mark.parametrize("beats", [2, 3, 4, 5, 6, 7])
def test_every_note_is_inside_its_bar_and_in_range(beats: int) -> None:
    moods = itertools.product((-1.0, -0.4, 0.3, 1.0), (-1.0, -0.3, 0.2, 1.0), (0.0, 1.0))
    for seed, (valence, arousal, knob) in enumerate(moods):
        bars = play(
            seed, 8, valence=valence, arousal=arousal, beats=beats, density=knob, intensity=knob
        )
        for bar in bars:
            assert_valid(bar)


def test_extremes_clamp_to_valid_midi() -> None:
    composer = RuleComposer(0)
    for tonic, valence, arousal, knob in itertools.product((0, 11, 23), (-1, 1), (-1, 1), (0, 1)):
        assert_valid(composer.compose_bar(BarRequest(3, 4, tonic, valence, arousal, knob, knob)))


@pytest.mark.parametrize("arousal", [-0.4, 0.0, 0.4])
def test_all_four_parts_play_at_moderate_arousal(arousal: float) -> None:
    for bar in play(6, arousal=arousal):
        assert all(bar.parts[part] for part in Part), bar.index


@pytest.mark.parametrize("valence", [-1.0, -0.8, -0.3, 0.0, 0.3, 0.8, 1.0])
def test_melody_stays_in_the_mode(valence: float) -> None:
    for seed in SEEDS:
        for bar in play(seed, valence=valence, arousal=seed / 5 - 1, tonic=seed):
            scale = scale_pitch_classes(seed, bar.mode)
            assert {n.pitch % 12 for n in bar.parts[Part.MELODY]} <= scale, bar.index


def test_strong_beat_melody_notes_are_chord_tones() -> None:
    for beats in (3, 4, 5, 6, 7):
        strong = set(METERS[beats].strong_beats)
        landed = total = 0
        for seed in SEEDS:
            for bar in play(seed, beats=beats, arousal=seed / 5 - 1, valence=1 - seed / 5):
                for n in bar.parts[Part.MELODY]:
                    if n.start_beats in strong:
                        total += 1
                        landed += n.pitch % 12 in chord_pitch_classes(bar)
        assert landed >= 0.9 * total, (beats, landed, total)


def test_bass_plays_the_chord_root_on_the_downbeat() -> None:
    for seed in SEEDS:
        for bar in play(seed, arousal=seed / 5 - 1):
            (downbeat,) = [n for n in bar.parts[Part.BASS] if n.start_beats == 0]
            assert downbeat.pitch < min(n.pitch for n in bar.parts[Part.CHORDS])
            assert downbeat.pitch % 12 == root_pitch_class(bar), bar.info["chord_name"]


# --- form -----------------------------------------------------------------------------------------


def test_phrases_are_two_to_four_bars_and_tile_the_piece() -> None:
    for seed in SEEDS:
        positions = [phrase_position(seed, i) for i in range(64)]
        assert {p.length for p in positions} <= {2, 3, 4}
        for before, after in itertools.pairwise(positions):
            if before.is_last:
                assert after.is_first and after.phrase != before.phrase
            else:
                assert (after.phrase, after.bar) == (before.phrase, before.bar + 1)


def test_phrases_repeat_their_rhythm_and_end_with_a_cadence() -> None:
    repeated = phrases = 0
    for seed in SEEDS:
        bars = play(seed, 32, arousal=seed / 10 - 0.2)
        by_phrase: dict[object, list[ComposedBar]] = {}
        for bar in bars:
            by_phrase.setdefault(bar.info["phrase"], []).append(bar)
        for phrase in by_phrase.values():
            if len(phrase) < 2:
                continue
            phrases += 1
            first = [n.start_beats for n in phrase[0].parts[Part.MELODY]]
            later = [[n.start_beats for n in b.parts[Part.MELODY]] for b in phrase[1:]]
            half = 2.0  # the cadence keeps the motif's first half in 4/4
            repeated += any(
                rhythm == first or [t for t in rhythm if t < half] == [t for t in first if t < half]
                for rhythm in later
            )
            cadence = phrase[-1]
            assert cadence.info["variation"] == "cadence"
            last = cadence.parts[Part.MELODY][-1]
            assert last.start_beats == 2.0 and last.duration_beats >= 1.0
    assert repeated >= 0.9 * phrases, (repeated, phrases)


def test_each_phrase_has_its_own_progression_from_the_mode_table() -> None:
    bars = play(13, 32, valence=-0.8)
    opening = [b.chord for b in bars if b.info["bar_in_phrase"] == 0]
    assert all(chord.startswith("i") for chord in opening)  # every phrase starts home


# --- meters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("beats", [2, 3, 5, 6, 7])
def test_odd_meters_groove_in_their_own_groups(beats: int) -> None:
    meter = meter_for(beats)
    assert meter.beats == beats
    bars = play(9, 8, beats=beats, arousal=0.2)
    for bar in bars:
        assert bar.beats_per_bar == beats
        kicks = {n.start_beats for n in bar.parts[Part.DRUMS] if n.pitch == 36}
        assert {float(b) for b in meter.kick_beats} <= kicks
        assert max(n.end_beats for n in notes_of([bar])) > beats - 1


@pytest.mark.parametrize("beats", [1, 8, 9, 12])
def test_unusual_bar_lengths_still_work(beats: int) -> None:
    assert meter_for(beats).beats == beats
    for bar in play(1, 6, beats=beats, arousal=0.7):
        assert_valid(bar)
