"""report.html: the rehearsal report for people, one self-contained file (inline PNGs and CSS).

Drawn from what RunReport recorded (no music is computed here). Deterministic: Agg backend, PNG
metadata without software or dates, so one seed gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from livekomp.files import write_atomically

PART_COLOURS = {"melody": "#d62728", "chords": "#1f77b4", "bass": "#2ca02c", "drums": "#7f7f7f"}


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _marks(ax: plt.Axes, cue_bars: list[int], bars: int) -> None:
    for bar in cue_bars:
        ax.axvline(bar, color="orange", linewidth=1.5, linestyle="--")
    ax.set_xlim(0, max(bars, 1))
    ax.set_xticks(range(0, max(bars, 1) + 1, 4))
    ax.grid(axis="x", alpha=0.3)


def _piano_roll(report: dict, roll: list, cue_bars: list[int]) -> str:
    bpb = int(report["beats_per_bar"])
    bars = len(report["bars"])
    parts = list(PART_COLOURS)
    fig, axes = plt.subplots(len(parts), 1, figsize=(14, 9), sharex=True)
    for ax, part in zip(axes, parts, strict=True):
        for bar, name, pitch, start, duration in roll:
            if name == part:
                x = bar + start / bpb
                ax.broken_barh([(x, duration / bpb)], (pitch - 0.4, 0.8), color=PART_COLOURS[part])
        ax.set_ylabel(f"{part}\n(MIDI pitch)")
        _marks(ax, cue_bars, bars)
    axes[-1].set_xlabel("bar (orange dashes: setlist cues)")
    fig.tight_layout()
    return _png(fig)


def _mood(report: dict, cue_bars: list[int]) -> str:
    bars = report["bars"]
    x = [b["bar"] + 0.5 for b in bars]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True)
    top.plot(x, [b["mood"]["valence"] for b in bars], label="valence", color="#9467bd")
    top.plot(x, [b["mood"]["arousal"] for b in bars], label="arousal", color="#ff7f0e")
    top.set_ylim(-1.05, 1.05)
    top.axhline(0, color="black", linewidth=0.5)
    for b in bars:
        if b["bar"] == 0 or b["mode"] != bars[b["bar"] - 1]["mode"]:
            top.text(b["bar"] + 0.1, 0.92, b["mode"], fontsize=9)
    top.legend(loc="lower right")
    top.set_ylabel("mood (mode written at each change)")
    bottom_parts = list(PART_COLOURS)
    left = [0.0] * len(bars)
    for part in bottom_parts:
        counts = [b["notes"].get(part, 0) for b in bars]
        bottom.bar(
            [b["bar"] for b in bars],
            counts,
            bottom=left,
            width=0.9,
            align="edge",
            color=PART_COLOURS[part],
            label=part,
        )
        left = [a + c for a, c in zip(left, counts, strict=True)]
    bottom.set_ylabel("notes per bar")
    bottom.legend(loc="upper left", ncol=4)
    bottom.set_xlabel("bar")
    _marks(top, cue_bars, len(bars))
    _marks(bottom, cue_bars, len(bars))
    fig.tight_layout()
    return _png(fig)


def render_html(report: dict, roll: list, cue_bars: list[int], *, audio: bool) -> str:
    """The page as text: `report` is RunReport.as_dict(), `roll` its notes."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{b['bar']}</td><td>{esc(str(b['chord']))}</td><td>{esc(str(b['mode']))}</td>"
        f"<td>{esc(str(b['composer']))}</td><td>{esc(str(b.get('style', 'base')))}</td>"
        f"<td>{b['mood']['valence']:+.2f} / {b['mood']['arousal']:+.2f}</td></tr>"
        for b in report["bars"]
    )
    lines = "".join(
        f"<tr><td>{esc(str(line.get('bar', '')))}</td><td>{esc(str(line.get('kind', '')))}</td>"
        f"<td>{esc(str(line.get('text', '')))}</td>"
        f"<td>{esc(str(line.get('dropped', '') or line.get('backend', '')))}</td></tr>"
        for line in report["lines"]
    )
    player = '<h2>Listen</h2><audio controls preload="none" src="set.wav"></audio>' if audio else ""
    title = esc(str(report.get("title", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} — rehearsal report</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:1em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px}}
img{{width:100%}}</style></head><body>
<h1>{title}</h1>
<p>{esc(str(report.get("setlist", "")))} · seed {report.get("seed")} · {report.get("bpm")} bpm ·
{report.get("beats_per_bar")}/4 · key {esc(str(report.get("key")))} · {len(report["bars"])} bars</p>
{player}
<h2>Piano roll</h2>
<img alt="piano roll" src="data:image/png;base64,{_piano_roll(report, roll, cue_bars)}">
<h2>Mood, mode and notes per bar</h2>
<img alt="mood" src="data:image/png;base64,{_mood(report, cue_bars)}">
<h2>Spoken lines</h2>
<table><tr><th>bar</th><th>kind</th><th>text</th><th>voice</th></tr>{lines}</table>
<h2>Bars: chord, mode, composer, style</h2>
<table><tr><th>bar</th><th>chord</th><th>mode</th><th>composer</th><th>style</th>
<th>valence / arousal</th></tr>{rows}</table>
</body></html>
"""


def write_html_report(
    path: str | Path, report: dict, roll: list, cue_bars: list[int], *, audio: bool
) -> None:
    """Write report.html, whole or not at all."""
    write_atomically(path, render_html(report, roll, cue_bars, audio=audio).encode("utf-8"))
