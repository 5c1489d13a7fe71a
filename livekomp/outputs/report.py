"""The run report: per bar, the mood used, the notes per part and which composer made it (and
the style asked for, when it was not the base models').

Everything in it is a function of the inputs and the seed (no wall-clock times, no absolute
paths), so the same rehearsal writes the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from livekomp.files import write_atomically
from livekomp.inputs.events import ControlEvent
from livekomp.mood import Mood
from livekomp.music.phrase import BASE_STYLE, ComposedBar, Part


class RunReport:
    def __init__(self, header: dict[str, object]) -> None:
        self.header = header
        self.bars: list[dict[str, object]] = []
        self.lines: list[dict[str, object]] = []
        self.extra: dict[str, object] = {}
        self._current_bar = 0
        # (bar, part, pitch, start_beats, duration_beats) for the piano roll; not in the JSON
        self.roll: list[tuple[int, str, int, float, float]] = []

    def on_bar(self, bar: ComposedBar, mood: Mood, style: str = BASE_STYLE) -> None:
        self._current_bar = bar.index
        entry: dict[str, object] = {
            "bar": bar.index,
            "mood": mood.as_dict(),
            "composer": bar.composer,
            "mode": bar.mode,
            "heard_mode": bar.info.get("heard_mode", ""),
            "chord": bar.chord,
            "notes": {part.value: bar.note_count(part) for part in Part},
        }
        if style != BASE_STYLE:
            entry["style"] = style
        self.bars.append(entry)
        for part, notes in bar.parts.items():
            self.roll.extend(
                (bar.index, part.value, n.pitch, n.start_beats, n.duration_beats) for n in notes
            )

    def on_line(self, kind: str, event: ControlEvent, bar: int | None = None) -> None:
        self.lines.append(
            {
                "bar": self._current_bar if bar is None else bar,
                "kind": kind,
                "text": event.value,
                "source": event.source,
            }
        )

    def on_spoken(self, line: dict[str, object]) -> None:
        """A line the voice placed (text, backend, bar, start_s, duration_s) or dropped."""
        self.lines.append(line)

    def totals(self) -> dict[str, object]:
        notes: Counter[str] = Counter()
        composers: Counter[str] = Counter()
        modes: Counter[str] = Counter()
        styles: Counter[str] = Counter()
        for bar in self.bars:
            notes.update(bar["notes"])  # type: ignore[arg-type]
            composers[str(bar["composer"])] += 1
            modes[str(bar["mode"])] += 1
            styles[str(bar.get("style", BASE_STYLE))] += 1
        totals: dict[str, object] = {
            "bars": len(self.bars),
            "notes": dict(notes),
            "bars_by_composer": dict(sorted(composers.items())),
            "bars_by_mode": dict(sorted(modes.items())),
        }
        if set(styles) - {BASE_STYLE}:
            totals["bars_by_style"] = dict(sorted(styles.items()))
        return totals

    def as_dict(self) -> dict[str, object]:
        return {
            **self.header,
            **self.extra,
            "totals": self.totals(),
            "bars": self.bars,
            "lines": self.lines,
        }

    def write(self, path: str | Path) -> None:
        """Write the report as JSON, whole or not at all."""
        text = json.dumps(self.as_dict(), indent=2, sort_keys=False, ensure_ascii=False)
        write_atomically(path, (text + "\n").encode("utf-8"))
