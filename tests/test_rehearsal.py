"""Whole rehearsals in virtual time: the files they write and the music in them."""

from pathlib import Path

import mido
import pytest

from livekomp.composer import ComposerSettings, StyleUnavailable
from livekomp.inputs.setlist import load_setlist, parse_setlist
from livekomp.music.phrase import BarRequest, ComposedBar
from livekomp.music.rules import RuleComposer
from livekomp.music.theory import detect_key
from livekomp.rehearsal import rehearse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


RULES = ComposerSettings(composer="rules")


def render(tmp_path, data, seed=1, name="set", composer=RULES):
    """Rehearse `data`; the rule-based composer by default, whose music these tests pin down
    (the neural composer's controllability is measured by tools/evaluate.py)."""
    setlist = parse_setlist(data, Path(f"{name}.toml"))
    return rehearse(setlist, tmp_path / f"{name}-{seed}", seed=seed, composer=composer)


def notes_by_bar(midi_path, beats_per_bar=4):
    """(bar, channel, pitch, velocity, duration_beats) for every note in the file."""
    midi = mido.MidiFile(midi_path)
    notes = []
    for track in midi.tracks[1:]:
        tick = 0
        open_notes = {}
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                open_notes[(message.channel, message.note)] = (tick, message.velocity)
            elif message.type in ("note_off", "note_on"):
                start, velocity = open_notes.pop((message.channel, message.note))
                beat = start / midi.ticks_per_beat
                notes.append(
                    (
                        int(beat // beats_per_bar),
                        message.channel,
                        message.note,
                        velocity,
                        (tick - start) / midi.ticks_per_beat,
                    )
                )
        assert not open_notes, f"notes left hanging in {track.name}: {open_notes}"
    return notes


def key_of(notes):
    pitched = [(pitch, duration) for _, channel, pitch, _, duration in notes if channel != 9]
    return detect_key(pitched)


VALENCE_ARC = {
    "bpm": 110,
    "bars": 16,
    "key": "D",
    "cue": [{"bar": 0, "valence": -0.8, "arousal": 0.0}, {"bar": 8, "valence": 0.8}],
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_valence_from_sad_to_happy_goes_from_minor_to_major(tmp_path, seed):
    result = render(tmp_path, VALENCE_ARC, seed)
    notes = notes_by_bar(result.midi_path)
    first = [n for n in notes if n[0] < 8]
    second = [n for n in notes if n[0] >= 8]
    assert key_of(first)[1] == "minor"
    assert key_of(second)[1] == "major"
    modes = [bar["mode"] for bar in result.summary["bars"]]
    assert len(set(modes[:8])) == 1 and len(set(modes[8:])) == 1 and modes[0] != modes[8]


AROUSAL_RISE = {
    "bpm": 100,
    "bars": 16,
    "cue": [{"bar": 0, "valence": 0.2, "arousal": -0.8}, {"bar": 8, "arousal": 0.8}],
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arousal_rise_doubles_density_and_raises_velocity(tmp_path, seed):
    notes = notes_by_bar(render(tmp_path, AROUSAL_RISE, seed).midi_path)
    calm = [n for n in notes if n[0] < 8]
    excited = [n for n in notes if n[0] >= 8]
    assert len(excited) >= 2 * len(calm)
    melody_calm = [n for n in calm if n[1] == 0]
    melody_excited = [n for n in excited if n[1] == 0]
    assert len(melody_excited) >= 2 * len(melody_calm)

    def mean_velocity(ns):
        return sum(n[3] for n in ns) / len(ns)

    assert mean_velocity(excited) > mean_velocity(calm) + 10


@pytest.mark.parametrize("composer", ["rules", "neural"])
def test_same_seed_same_bytes_other_seed_other_music(tmp_path, composer):
    setlist = load_setlist(EXAMPLES / "sunrise.toml")
    settings = ComposerSettings(composer=composer)
    a = rehearse(setlist, tmp_path / "a", seed=5, composer=settings)
    b = rehearse(setlist, tmp_path / "b", seed=5, composer=settings)
    c = rehearse(setlist, tmp_path / "c", seed=6, composer=settings)
    assert a.summary["composer"]["primary"] == composer
    assert a.midi_path.read_bytes() == b.midi_path.read_bytes()
    assert a.summary_path.read_bytes() == b.summary_path.read_bytes()
    assert a.midi_path.read_bytes() != c.midi_path.read_bytes()


def test_midi_file_layout_and_tempo_map(tmp_path):
    setlist = load_setlist(EXAMPLES / "storm.toml")
    result = rehearse(setlist, tmp_path)
    midi = mido.MidiFile(result.midi_path)
    assert midi.type == 1
    assert [track.name for track in midi.tracks] == [
        "Storm waltz",
        "melody",
        "chords",
        "bass",
        "drums",
    ]
    tick = 0
    tempi = []
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "set_tempo":
            tempi.append((tick / midi.ticks_per_beat / 3, round(mido.tempo2bpm(message.tempo), 3)))
        if message.type == "time_signature":
            assert message.numerator == 3
    assert tempi == [(0.0, 132.0), (14.0, 144.0), (24.0, 120.0)]  # the bpm cues, on their bars
    channels = {
        channel
        for track in midi.tracks[1:]
        for channel in {m.channel for m in track if m.type == "note_on"}
    }
    assert channels == {0, 1, 2, 9}
    assert midi.length == pytest.approx(
        14 * 3 * 60 / 132 + 10 * 3 * 60 / 144 + 12 * 3 * 60 / 120, abs=0.1
    )


def test_summary_reports_every_bar_and_the_lines(tmp_path):
    result = rehearse(load_setlist(EXAMPLES / "sunrise.toml"), tmp_path, composer=RULES)
    summary = result.summary
    assert summary["seed"] == 7  # from the setlist
    assert [bar["bar"] for bar in summary["bars"]] == list(range(32))
    first, last = summary["bars"][0], summary["bars"][-1]
    assert first["mood"]["valence"] == -0.8 and first["mood"]["arousal"] == -0.8
    assert last["mood"]["valence"] > 0.5
    assert all(bar["composer"] == "rules" for bar in summary["bars"])
    assert set(first["notes"]) == {"melody", "chords", "bass", "drums"}
    assert [(line["bar"], line["kind"]) for line in summary["lines"]] == [
        (0, "say"),
        (8, "say"),
        (16, "say"),
        (28, "say"),
    ]
    notes = notes_by_bar(result.midi_path)
    for bar in (0, 20, 31):
        counted = sum(bar_notes for bar_notes in summary["bars"][bar]["notes"].values())
        assert counted == len([n for n in notes if n[0] == bar])


def test_ramps_glide_across_bars(tmp_path):
    data = {
        "bars": 12,
        "cue": [{"bar": 0, "valence": -1.0}, {"bar": 4, "valence": 1.0, "ramp_bars": 4}],
    }
    bars = render(tmp_path, data).summary["bars"]
    valences = [bar["mood"]["valence"] for bar in bars]
    assert valences[:4] == [-1.0] * 4
    assert valences[4] == pytest.approx(-1.0, abs=0.3)
    assert valences[4] < valences[5] < valences[6] < valences[7] < 1.0
    assert valences[8:] == [1.0] * 4


class StyledRules:
    """The rule-based composer standing in for a neural one with style adapters loaded: it
    says which adapters it loaded and refused, and records every request it is asked."""

    name = "styled"

    def __init__(self, seed: int, styles: tuple[str, ...], refused: dict[str, str]) -> None:
        self.rules = RuleComposer(seed)
        self.styles = styles
        self.refused_styles = refused
        self.requests: list[BarRequest] = []

    def compose_bar(self, request: BarRequest) -> ComposedBar:
        self.requests.append(request)
        return self.rules.compose_bar(request)


@pytest.fixture
def styled(monkeypatch):
    """Rehearsals build a StyledRules that loads every style asked for but "broken"."""
    built: list[tuple[ComposerSettings, StyledRules]] = []

    def build(settings, seed):
        loaded = tuple(name for name in settings.styles if name != "broken")
        refused = {"broken": "adapter rank 8 does not fit the melody model"}
        composer = StyledRules(seed, loaded, refused if "broken" in settings.styles else {})
        built.append((settings, composer))
        return composer, None

    monkeypatch.setattr("livekomp.rehearsal.build_composer", build)
    return built


def test_a_style_cue_is_heard_from_its_bar(tmp_path, styled):
    data = {"bars": 8, "cue": [{"bar": 0, "mood": "calm"}, {"bar": 4, "style": "reel"}]}
    result = render(tmp_path, data)
    ((settings, composer),) = styled
    assert settings.styles == ("reel",)  # the adapters the cues need are loaded first
    assert [r.index for r in composer.requests] == list(range(8))
    assert [r.style for r in composer.requests] == ["base"] * 4 + ["reel"] * 4
    bars = result.summary["bars"]
    assert ["style" in bar for bar in bars] == [False] * 4 + [True] * 4
    assert bars[4]["style"] == "reel"
    assert result.summary["totals"]["bars_by_style"] == {"base": 4, "reel": 4}
    assert result.summary["composer"]["styles"] == ["reel"]
    assert result.summary["composer"]["style_switches"] == 1


def test_a_refused_style_is_named_and_its_cue_dropped(tmp_path, styled, caplog):
    data = {
        "bars": 8,
        "cue": [
            {"bar": 2, "style": "broken"},
            {"bar": 4, "style": "reel"},
            {"bar": 6, "style": "base"},
        ],
    }
    setlist = parse_setlist(data, Path("set.toml"))
    with caplog.at_level("WARNING"):
        result = rehearse(setlist, tmp_path, seed=1, composer=RULES, style="hymn")
    ((settings, composer),) = styled
    assert settings.styles == ("hymn", "broken", "reel")
    assert [r.style for r in composer.requests] == ["hymn"] * 4 + ["reel"] * 2 + ["base"] * 2
    assert (
        "style 'broken': adapter rank 8 does not fit the melody model; "
        "refused, the base model carries on"
    ) in caplog.text
    summary = result.summary
    assert summary["composer"]["styles"] == ["hymn", "reel"]
    assert summary["composer"]["refused_styles"] == {
        "broken": "adapter rank 8 does not fit the melody model"
    }
    assert summary["styles_dropped"] == 1  # the cue at bar 2
    assert summary["controls_not_understood"] == 0


def test_a_starting_style_that_cannot_load_stops_the_rehearsal_before_it_plays(
    tmp_path, styled, caplog
):
    setlist = parse_setlist({"bars": 8, "cue": [{"bar": 4, "style": "reel"}]}, Path("set.toml"))
    reason = "style 'broken': adapter rank 8 does not fit the melody model"
    with pytest.raises(StyleUnavailable, match=reason):
        rehearse(setlist, tmp_path / "out", composer=RULES, style="broken")
    ((_, composer),) = styled
    assert composer.requests == []  # not one bar composed
    assert "refused" not in caplog.text  # the error is the one line, not a warning as well
    assert not (tmp_path / "out").exists()


def test_the_rule_based_composer_refuses_every_style(tmp_path, caplog):
    data = {"bars": 4, "cue": [{"bar": 2, "style": "reel"}]}
    with caplog.at_level("WARNING"):
        result = render(tmp_path, data)
    assert "style 'reel': the rules composer has no style adapters; refused" in caplog.text
    assert result.summary["composer"]["refused_styles"] == {
        "reel": "the rules composer has no style adapters"
    }
    assert result.summary["styles_dropped"] == 1
    assert not any("style" in bar for bar in result.summary["bars"])
