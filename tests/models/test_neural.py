"""The neural composer: deterministic, well-formed bars; memory of what was really played."""

import itertools

import pytest

from livekomp.composer import ComposerService, ComposerSettings, build_composer
from livekomp.models import tokens
from livekomp.models.neural import load_neural
from livekomp.music.phrase import BarRequest, Part
from livekomp.music.rules import RuleComposer


def request(index, valence=0.5, arousal=0.2, beats=4, tonic=2):
    return BarRequest(
        index=index, beats_per_bar=beats, tonic=tonic, valence=valence, arousal=arousal
    )


def play(composer, bars, **mood):
    out = []
    for i in range(bars):
        r = request(i, **mood)
        bar = composer.compose_bar(r)
        composer.accept(r, bar)
        out.append(bar)
    return out


def test_the_same_seed_composes_the_same_bars(tiny_checkpoints):
    a = play(load_neural(5, tiny_checkpoints), 6)
    b = play(load_neural(5, tiny_checkpoints), 6)
    c = play(load_neural(6, tiny_checkpoints), 6)
    assert [x.parts for x in a] == [y.parts for y in b]
    assert [x.parts for x in a] != [y.parts for y in c]


def test_the_cache_and_full_recompute_write_the_same_melody(tiny_checkpoints):
    cached = load_neural(3, tiny_checkpoints)
    naive = load_neural(3, tiny_checkpoints)
    for i in range(4):
        r = request(i)
        a = cached.compose_bar(r)
        b = naive.compose_bar(r, recompute=True)
        assert a.info["steps"] == b.info["steps"]
        cached.accept(r, a)
        naive.accept(r, b)


@pytest.mark.parametrize("beats", [3, 4, 7])
def test_bars_are_well_formed(tiny_checkpoints, beats):
    composer = load_neural(1, tiny_checkpoints)
    for bar in play(composer, 6, beats=beats):
        assert bar.composer == "neural"
        assert set(bar.parts) == set(Part)
        melody = bar.parts[Part.MELODY]
        assert melody, "every bar has melody"
        for part, notes in bar.parts.items():
            for note in notes:
                assert 0 <= note.start_beats < beats
                if part is not Part.DRUMS:
                    assert note.end_beats <= beats + 1e-9, (part, note)
        for earlier, later in itertools.pairwise(melody):
            assert earlier.end_beats <= later.start_beats + 1e-9  # one voice
        assert len(bar.info["chords"]) == 2


def test_the_onnx_runtime_writes_the_same_bars(tiny_checkpoints):
    torch_bars = play(load_neural(9, tiny_checkpoints), 4)
    onnx_bars = play(load_neural(9, tiny_checkpoints, runtime="onnx"), 4)
    assert list((tiny_checkpoints / "onnx").glob("melody-*.onnx"))
    same = sum(a.parts == b.parts for a, b in zip(torch_bars, onnx_bars, strict=False))
    assert same >= 3  # float differences may, rarely, tip one sample


def test_accept_remembers_what_was_played_not_what_was_sketched(tiny_checkpoints):
    composer = load_neural(2, tiny_checkpoints)
    sketched = composer.compose_bar(request(0))
    assert composer._memory.steps == []  # composing alone changes nothing
    rules_bar = RuleComposer(2).compose_bar(request(0))
    composer.accept(request(0), rules_bar)
    assert len(composer._memory.steps) == len(rules_bar.parts[Part.MELODY])
    assert composer._memory.last_note_bar == 0
    assert sketched.parts != rules_bar.parts


def test_a_corrupt_checkpoint_falls_back_to_the_rules_with_one_clear_line(tiny_checkpoints, caplog):
    weights = tiny_checkpoints / "harmony.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    composer, reason = build_composer(ComposerSettings(checkpoints=str(tiny_checkpoints)), seed=0)
    assert isinstance(composer, RuleComposer)
    assert "harmony.safetensors: corrupt" in reason
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and "the rule-based composer plays" in lines[0]


def test_rules_are_chosen_without_loading_anything(tmp_path):
    composer, reason = build_composer(
        ComposerSettings(composer="rules", checkpoints=str(tmp_path)), seed=0
    )
    assert isinstance(composer, RuleComposer) and reason is None


async def test_the_service_tells_the_composer_what_was_played(tiny_checkpoints):
    composer = load_neural(4, tiny_checkpoints)
    service = ComposerService(composer)
    bar = await service.compose(request(0))
    assert service.outcomes == {"fresh": 1}
    assert len(composer._memory.steps) == len(bar.parts[Part.MELODY])


def test_bar_numbers_that_jump_back_and_far_ahead_are_played_on(tiny_checkpoints):
    """Following a clock, a Song Position Pointer moves the bar count anywhere."""
    composer = load_neural(8, tiny_checkpoints)
    for index in (0, 1, 7, 3, 3, 200, 2):
        r = request(index)
        bar = composer.compose_bar(r)
        composer.accept(r, bar)
        assert bar.parts[Part.MELODY]
    positions = [s.position for s in composer._memory.steps]
    assert all(0 <= p < tokens.POSITION_START for p in positions)


@pytest.mark.parametrize("valence", [-0.8, -0.5, 0.5, 0.8])
def test_harmony_and_melody_keep_to_the_mode_valence_asks_for(tiny_checkpoints, valence):
    # Tiny untrained models choose chords and pitches almost at random: what keeps them in the
    # mode is the decoding, which is what is tested.
    from livekomp.models.harmony import chord_pitch_classes
    from livekomp.music.theory import mode_for_valence, mode_on_tonic, scale_pitch_classes

    composer = load_neural(2, tiny_checkpoints)
    tonic = 2
    mode = mode_for_valence(valence)
    scale = scale_pitch_classes(tonic, mode)
    third = (tonic + (3 if valence < 0 else 4)) % 12
    for bar in play(composer, 12, valence=valence, arousal=0.0):
        chords = bar.info["chords"]
        tones = [set(chord_pitch_classes(c, tonic)) for c in chords]
        borrowed_dominant = {(tonic + 7) % 12, (tonic + 11) % 12, (tonic + 2) % 12}
        assert all(t <= scale or (mode == "minor" and t == borrowed_dominant) for t in tones)
        assert any(third in t for t in tones), f"bar {bar.index} never states the third"
        assert {n.pitch % 12 for n in bar.parts[Part.MELODY]} <= scale
        assert bar.mode == mode
        pitched = [
            (n.pitch, n.duration_beats)
            for p in (Part.MELODY, Part.CHORDS, Part.BASS)
            for n in bar.parts[p]
        ]
        assert mode_on_tonic(pitched, tonic) == ("major" if valence > 0 else "minor")


@pytest.mark.parametrize("arousal", [-0.8, 0.0, 0.8])
def test_the_chords_sit_below_the_melody_and_never_double_it(tiny_checkpoints, arousal):
    composer = load_neural(4, tiny_checkpoints)
    for bar in play(composer, 12, valence=0.3, arousal=arousal):
        chords = bar.parts[Part.CHORDS]
        for note in bar.parts[Part.MELODY]:
            sounding = [c.pitch for c in chords if c.start_beats <= note.start_beats < c.end_beats]
            assert all(p < note.pitch for p in sounding), (bar.index, note, sounding)


def test_a_calm_melody_moves_instead_of_repeating_one_pitch():
    # The shipped models at "serene": without the repeat penalties the melody repeats its last
    # pitch 30-62 % of the time (mean 44 % over these seeds; the issue found up to 100 %). Held-out
    # corpus phrases of calm, happy mood repeat 9-33 % (interquartile range, tools/evaluate.py).
    shares = []
    for seed in range(4):
        composer = load_neural(seed)
        melody = [
            n.pitch
            for bar in play(composer, 16, valence=0.7, arousal=-0.7, tonic=seed * 5 % 12)
            for n in bar.parts[Part.MELODY]
        ]
        shares.append(sum(a == b for a, b in itertools.pairwise(melody)) / (len(melody) - 1))
        assert len(set(melody)) >= 6
    assert max(shares) < 0.33
    assert sum(shares) / len(shares) < 0.25
