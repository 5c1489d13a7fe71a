from pathlib import Path

import pytest

from livekomp.inputs.events import Param
from livekomp.inputs.setlist import SetlistError, load_setlist, parse_setlist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_load(path):
    setlist = load_setlist(path)
    assert setlist.bars > 0 and setlist.cues
    assert [cue.bar for cue in setlist.cues] == sorted(cue.bar for cue in setlist.cues)


def test_cue_events():
    setlist = parse_setlist(
        {
            "bpm": 90,
            "bars": 8,
            "key": "Bb",
            "cue": [
                {"bar": 4, "valence": 0.5, "ramp_bars": 2, "say": "hello"},
                {"bar": 0, "mood": "grief", "bpm": 80},
            ],
        },
        Path("set.toml"),
    )
    assert setlist.beats_per_bar == 4
    assert [cue.bar for cue in setlist.cues] == [0, 4]
    first, second = setlist.cues
    assert {e.param for e in first.events} == {Param.MOOD, Param.TEMPO}
    assert {e.param: e.value for e in second.events} == {Param.VALENCE: 0.5, Param.SAY: "hello"}
    assert second.ramp_bars == 2


def test_style_cues_and_the_styles_a_setlist_needs():
    setlist = parse_setlist(
        {
            "bars": 16,
            "cue": [
                {"bar": 12, "style": "reel"},
                {"bar": 0, "mood": "calm", "style": " hymn "},
                {"bar": 4, "style": "reel"},
                {"bar": 8, "style": "base", "valence": 0.5},
            ],
        },
        Path("set.toml"),
    )
    styles = [
        (cue.bar, event.value)
        for cue in setlist.cues
        for event in cue.events
        if event.param is Param.STYLE
    ]
    assert styles == [(0, "hymn"), (4, "reel"), (8, "base"), (12, "reel")]
    assert setlist.styles == ("hymn", "reel")  # each once, in cue order; base is no adapter
    assert parse_setlist({"bars": 4}, Path("set.toml")).styles == ()


BAD = [
    ({"bars": 8, "cue": [{"bar": 9, "valence": 0}]}, "cue[0].bar: 9 is outside 0..7"),
    ({"bars": 8, "cue": [{"bar": 1, "valance": 0}]}, "cue[0].valance: unknown cue key"),
    ({"bars": 8, "cue": [{"bar": 1, "valence": 2}]}, "cue[0].valence: 2 is outside -1..1"),
    ({"bars": 8, "cue": [{"bar": 1, "valence": "hi"}]}, "cue[0].valence: expected a number"),
    ({"bars": 8, "cue": [{"valence": 0.1}]}, "cue[0].bar: every cue needs a bar"),
    ({"bars": 8, "cue": [{"bar": 1}]}, "cue[0]: the cue changes nothing"),
    ({"bars": 8, "cue": [{"bar": 1, "mood": "zzz"}]}, "cue[0].mood: 'zzz' is not a mood"),
    ({"bars": 8, "cue": [{"bar": 1, "say": "  "}]}, "cue[0].say: expected non-empty text"),
    ({"bars": 8, "cue": [{"bar": 1, "style": "my style"}]}, "cue[0].style: 'my style' is not a"),
    ({"bars": 8, "cue": [{"bar": 1, "style": "../reel"}]}, "cue[0].style: '../reel' is not a"),
    ({"bars": 8, "cue": [{"bar": 1, "style": "2"}]}, "cue[0].style: '2' is not a style name"),
    ({"bars": 8, "cue": [{"bar": 1, "style": "x" * 65}]}, "cue[0].style: 'xxx"),
    ({"bars": 8, "cue": [{"bar": 1, "style": 3}]}, "cue[0].style: expected non-empty text"),
    ({"bars": 8, "key": "H"}, "key:"),
    ({"bars": 0}, "bars: 0 is outside"),
    ({"bpm": 100}, "bars: the setlist must say"),
    ({"bars": 8, "tempo": 100}, "tempo: unknown key"),
    ({"bars": 8, "bpm": 5000}, "bpm: 5000 is outside"),
    ({"bars": 8, "cue": {"bar": 1}}, "cue: cues are written as [[cue]] tables"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_setlists_name_file_cue_and_key(data, message):
    with pytest.raises(SetlistError) as info:
        parse_setlist(data, Path("gig.toml"))
    assert str(info.value).startswith("gig.toml: ")
    assert message in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("bars = [\n")
    with pytest.raises(SetlistError, match=r"bad\.toml: not valid TOML"):
        load_setlist(bad)
    with pytest.raises(SetlistError, match="no such setlist file"):
        load_setlist(tmp_path / "missing.toml")
