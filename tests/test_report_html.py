"""report.html: written beside set.mid, self-contained, holding every section, same bytes twice."""

import re
from pathlib import Path

from livekomp.composer import ComposerSettings
from livekomp.inputs.setlist import load_setlist
from livekomp.rehearsal import rehearse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RULES = ComposerSettings(composer="rules")


def test_report_html_is_self_contained_complete_and_deterministic(tmp_path):
    setlist = load_setlist(EXAMPLES / "sunrise.toml")
    rehearse(setlist, tmp_path / "a", seed=3, composer=RULES)
    rehearse(setlist, tmp_path / "b", seed=3, composer=RULES)
    a = (tmp_path / "a" / "report.html").read_bytes()
    assert a == (tmp_path / "b" / "report.html").read_bytes()
    text = a.decode("utf-8")
    assert "http://" not in text and "https://" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<audio" not in text  # no set.wav without --audio
    for heading in ("Piano roll", "Mood, mode and notes per bar", "Spoken lines", "Bars: chord"):
        assert heading in text
    assert "And then, the sun." in text  # a spoken line of the setlist
    assert text.count("<tr><td>") >= setlist.bars  # one row per bar at least
