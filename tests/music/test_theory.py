"""Music theory tables: key names, modes, scale degrees, chords and the key finder."""

from __future__ import annotations

import pytest

from livekomp.music.theory import (
    MODE_BY_VALENCE,
    MODE_QUALITY,
    MODES,
    brightness,
    degree_pitch,
    detect_key,
    diatonic_chord,
    mode_for_valence,
    mode_steps,
    nearest_degree,
    parse_key,
    scale_pitch_classes,
)


@pytest.mark.parametrize(
    ("text", "tonic"),
    [
        ("C", 0),
        ("c", 0),
        ("F#", 6),
        ("f#", 6),
        ("Gb", 6),
        ("Bb", 10),
        ("bb", 10),
        ("B", 11),
        ("Cb", 11),
        ("B#", 0),
        ("A minor", 9),
        ("a minor", 9),
        ("Ebm", 3),
        ("c#", 1),
        ("C# minor", 1),
        ("D major", 2),
        ("F♯", 6),
        ("E♭", 3),
        ("  G  ", 7),
        ("Abmaj", 8),
    ],
)
def test_parse_key(text: str, tonic: int) -> None:
    assert parse_key(text) == tonic


@pytest.mark.parametrize("text", ["", "H", "X#", "C minorish", "Cx", "12", "C dorian", "#C"])
def test_parse_key_rejects_nonsense_and_names_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a key") as caught:
        parse_key(text)
    assert repr(text) in str(caught.value)


def test_modes_are_seven_note_scales_from_the_tonic() -> None:
    for name, steps in MODES.items():
        assert len(steps) == 7, name
        assert steps[0] == 0
        assert list(steps) == sorted(steps) and steps[-1] < 12
    assert mode_steps("ionian") == mode_steps("major") == (0, 2, 4, 5, 7, 9, 11)
    assert mode_steps("aeolian") == mode_steps("minor") == (0, 2, 3, 5, 7, 8, 10)
    assert mode_steps("dorian") == (0, 2, 3, 5, 7, 9, 10)
    assert mode_steps("lydian")[3] == 6 and mode_steps("phrygian")[1] == 1
    with pytest.raises(ValueError, match="unknown mode 'klingon'"):
        mode_steps("klingon")


def test_mode_qualities_follow_the_third() -> None:
    assert {m for m, q in MODE_QUALITY.items() if q == "major"} == {"lydian", "major", "mixolydian"}
    assert MODE_QUALITY["dorian"] == MODE_QUALITY["phrygian"] == "minor"


def test_brightness_orders_the_church_modes() -> None:
    order = ["lydian", "major", "mixolydian", "dorian", "minor", "phrygian", "locrian"]
    assert [brightness(m) for m in order] == sorted((brightness(m) for m in order), reverse=True)


def test_mode_for_valence_is_monotone_in_brightness() -> None:
    valences = [v / 100 for v in range(-100, 101)]
    modes = [mode_for_valence(v) for v in valences]
    levels = [brightness(m) for m in modes]
    assert levels == sorted(levels)
    assert mode_for_valence(1.0) == "lydian" and mode_for_valence(0.4) == "major"
    assert MODE_QUALITY[mode_for_valence(-0.8)] == "minor"
    assert mode_for_valence(-1.0) == "phrygian"
    assert set(modes) == {mode for _, mode in MODE_BY_VALENCE}


def test_valence_sign_matches_mode_quality() -> None:
    for v in (0.2, 0.5, 0.8, 1.0):
        assert MODE_QUALITY[mode_for_valence(v)] == "major"
    for v in (-0.2, -0.5, -0.8, -1.0):
        assert MODE_QUALITY[mode_for_valence(v)] == "minor"


def test_scale_degrees_walk_the_mode_across_octaves() -> None:
    assert [degree_pitch(0, "major", d) for d in range(8)] == [60, 62, 64, 65, 67, 69, 71, 72]
    assert degree_pitch(9, "minor", 0) == 69
    assert degree_pitch(9, "minor", -1) == 67  # G below A in A minor
    assert degree_pitch(2, "dorian", 9) == 62 + 12 + 3  # D dorian's 3rd, an octave up
    for d in range(-14, 15):
        assert nearest_degree(7, "lydian", degree_pitch(7, "lydian", d)) == d
    assert nearest_degree(0, "major", 61) == 0  # C# is nearer C (tie goes low)
    assert scale_pitch_classes(2, "major") == {2, 4, 6, 7, 9, 11, 1}


def test_diatonic_chords() -> None:
    one = diatonic_chord("major", 1)
    assert one.pitch_classes(0) == {0, 4, 7} and one.symbol == "I" and one.name(0) == "C"
    assert diatonic_chord("major", 2, "seventh").symbol == "ii7"
    assert diatonic_chord("major", 2, "seventh").name(0) == "Dm7"
    assert diatonic_chord("major", 5, "seventh").symbol == "V7"
    assert diatonic_chord("major", 4, "seventh").symbol == "IVmaj7"
    assert diatonic_chord("major", 7).symbol == "vii°"
    assert diatonic_chord("major", 7, "seventh").symbol == "viiø7"
    assert diatonic_chord("minor", 6, "seventh").name(9) == "Fmaj7"
    assert diatonic_chord("harmonic_minor", 5).pitch_classes(9) == {4, 8, 11}  # E G# B
    assert diatonic_chord("phrygian", 2).symbol == "II"
    assert diatonic_chord("dorian", 4, "seventh").symbol == "IV7"
    assert diatonic_chord("lydian", 1, "add9").tones(0) == (0, 4, 7, 2)
    assert diatonic_chord("major", 5, "sus4").pitch_classes(0) == {7, 0, 2}
    assert diatonic_chord("minor", 1, "ninth").symbol == "i9"
    assert diatonic_chord("phrygian", 1, "add9").symbol == "iaddb9"


def test_unnamed_colours_say_so() -> None:
    odd = diatonic_chord("lydian", 1, "sus4")  # C F# G is no sus4
    assert not odd.named
    assert odd.symbol == "I(0,6,7)"
    with pytest.raises(ValueError, match="degree"):
        diatonic_chord("major", 8)
    with pytest.raises(ValueError, match="colour"):
        diatonic_chord("major", 1, "purple")


def test_every_plain_triad_and_seventh_is_named() -> None:
    for mode in ("lydian", "major", "mixolydian", "dorian", "minor", "phrygian", "locrian"):
        for degree in range(1, 8):
            assert diatonic_chord(mode, degree).named
            assert diatonic_chord(mode, degree, "seventh").named


def _weighted(pitches: list[int], durations: list[float] | None = None) -> list[tuple[int, float]]:
    return list(zip(pitches, durations or [1.0] * len(pitches), strict=True))


def test_detect_key_c_major_scale() -> None:
    tonic, quality, correlation = detect_key(_weighted([60, 62, 64, 65, 67, 69, 71, 72]))
    assert (tonic, quality) == (0, "major")
    assert correlation > 0.8


def test_detect_key_c_major_melody() -> None:
    # "Twinkle, twinkle": C C G G A A G, F F E E D D C
    melody = [60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60]
    durations = [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2]
    assert detect_key(_weighted(melody, durations))[:2] == (0, "major")


def test_detect_key_a_minor_melody() -> None:
    # An A minor line that leans on A, C and E and uses the raised leading tone.
    melody = [69, 72, 76, 74, 72, 71, 69, 68, 69, 64, 69, 72, 71, 69]
    durations = [2, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 3]
    tonic, quality, _ = detect_key(_weighted(melody, durations))
    assert (tonic, quality) == (9, "minor")


def test_detect_key_a_natural_minor_with_tonic_weight() -> None:
    scale = [69, 71, 72, 74, 76, 77, 79, 81]
    durations = [4, 1, 2, 1, 3, 1, 1, 4]  # dwell on the tonic triad
    assert detect_key(_weighted(scale, durations))[:2] == (9, "minor")


def test_detect_key_is_transposition_invariant() -> None:
    melody = [60, 64, 67, 65, 64, 62, 60, 67, 72]
    for shift in range(12):
        assert detect_key(_weighted([p + shift for p in melody]))[:2] == (shift, "major")


def test_detect_key_needs_weight() -> None:
    with pytest.raises(ValueError, match="positive weight"):
        detect_key([])
    with pytest.raises(ValueError, match="positive weight"):
        detect_key([(60, 0.0)])
