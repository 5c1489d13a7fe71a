"""The status view of `serve` in a terminal: what is playing, where the mood is and where it is
heading, what the composer makes, what came in — redrawn in place with `rich`.

It only reads: `StatusView.render()` looks at the session, the clock and the input counters on
the trio thread and changes nothing, so it cannot delay the sender (a child process) nor the
performer. `serve_status` redraws it at most `rate_hz` times a second; warnings of the last
minute are kept by `RecentWarnings`, a logging handler.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from livekomp.affect import MOOD_WORDS
from livekomp.inputs.stats import InputStats
from livekomp.music.phrase import ComposedBar
from livekomp.session import Session

WARNING_WINDOW_S = 60.0
NOT_DROPS = frozenset({"received", "dispatched", "scheduled"})  # input counts that drop nothing
PLANE_COLUMNS, PLANE_ROWS = 21, 9  # the valence–arousal plane, in characters


class RecentWarnings(logging.Handler):
    """Keeps the warnings (and worse) logged in the last `window_s` seconds."""

    def __init__(
        self, window_s: float = WARNING_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(logging.WARNING)
        self.window_s = window_s
        self.clock = clock
        self.records: deque[tuple[float, str]] = deque(maxlen=50)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((self.clock(), record.getMessage()))

    def recent(self) -> list[str]:
        since = self.clock() - self.window_s
        return [text for at, text in self.records if at >= since]


def nearest_mood_word(valence: float, arousal: float) -> str:
    """The mood word whose point on the plane is nearest (valence, arousal)."""
    return min(
        MOOD_WORDS,
        key=lambda w: math.hypot(MOOD_WORDS[w][0] - valence, MOOD_WORDS[w][1] - arousal),
    )


def mood_plane(heard: tuple[float, float], heading: tuple[float, float]) -> str:
    """A small text plane, valence across and arousal up: `o` the mood heard, `+` where it is
    heading (the pad), `@` both in one place."""

    def cell(point: tuple[float, float]) -> tuple[int, int]:
        v, a = (max(-1.0, min(1.0, x)) for x in point)
        return round((v + 1) / 2 * (PLANE_COLUMNS - 1)), round((1 - a) / 2 * (PLANE_ROWS - 1))

    grid = [["·"] * PLANE_COLUMNS for _ in range(PLANE_ROWS)]
    mid_row, mid_col = PLANE_ROWS // 2, PLANE_COLUMNS // 2
    for c in range(PLANE_COLUMNS):
        grid[mid_row][c] = "─"
    for r in range(PLANE_ROWS):
        grid[r][mid_col] = "│"
    grid[mid_row][mid_col] = "┼"
    (hc, hr), (tc, tr) = cell(heard), cell(heading)
    grid[tr][tc] = "+"
    grid[hr][hc] = "@" if (hc, hr) == (tc, tr) else "o"
    return "\n".join("".join(row) for row in grid)


def _ms(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f} ms"


class StatusView:
    """Renders one frame of the status from live state; reads, never writes."""

    def __init__(
        self,
        session: Session,
        stats: InputStats,
        *,
        key: str,
        clock_source: Callable[[], str],
        warnings: RecentWarnings | None = None,
    ) -> None:
        self.session = session
        self.stats = stats
        self.key = key
        self.clock_source = clock_source  # e.g. "internal", "MIDI clock: following"
        self.warnings = warnings

    def fields(self) -> dict[str, str]:
        """Every figure of the view as text, by name (what `render` lays out)."""
        session = self.session
        fb = session.feedback()
        performer, composer, router = session.performer, session.composer, session.router
        position = "–" if fb.bar is None else f"{fb.bar}:{fb.beat}"
        fields = {
            "transport": "playing" if fb.playing else "stopped",
            "position": position,
            "tempo": f"{fb.tempo_bpm:.1f} BPM",
            "clock": self.clock_source(),
            "bars": str(performer.bars_total),
            "mood_word": nearest_mood_word(fb.valence, fb.arousal),
            "valence": f"{fb.valence:+.2f}",
            "arousal": f"{fb.arousal:+.2f}",
            "density": f"{fb.density:.2f}",
            "intensity": f"{fb.intensity:.2f}",
            "heading": f"{fb.target_valence:+.2f} {fb.target_arousal:+.2f}",
            "key": self.key,
            "style": fb.style,
        }
        now_bar, next_bar = self._bars(fb.bar)
        fields["mode"] = now_bar.mode if now_bar is not None else "–"
        fields["chord"] = now_bar.chord if now_bar is not None else "–"
        fields["next_chord"] = next_bar.chord if next_bar is not None else "–"
        latency = composer.latency()
        fields["composer"] = (
            f"fresh {fb.composer_fresh} buffered {fb.composer_buffered} "
            f"fallback {fb.composer_fallbacks}"
        )
        fields["latency"] = f"p50 {_ms(latency.get('p50_ms'))} p99 {_ms(latency.get('p99_ms'))}"
        fields["buffer"] = "–" if fb.composer_buffer is None else f"{fb.composer_buffer:.0%}"
        fields["line"] = fb.line or "–"
        fields["next_line"] = self._next_line()
        fields["scene"] = fb.scene or "–"
        last = router.last
        if last is None:
            fields["last_control"] = "–"
        else:
            value = last.value
            value = (
                ""
                if value is None
                else f" {value:+.2f}"
                if isinstance(value, float)
                else f" {value!r}"
            )
            fields["last_control"] = f"{last.param.value}{value} from {last.source or '?'}"
        drops = {
            f"{transport} {reason}": n
            for transport, reasons in self.stats.as_dict().items()
            for reason, n in reasons.items()
            if n and reason not in NOT_DROPS
        }
        if router.unhandled:
            drops["not understood"] = router.unhandled
        if router.styles_dropped:
            drops["style not loaded"] = router.styles_dropped
        fields["drops"] = ", ".join(f"{k} {n}" for k, n in drops.items()) or "none"
        return fields

    def _bars(self, sounding: int | None) -> tuple[ComposedBar | None, ComposedBar | None]:
        """The bar sounding now and the one after it, of those planned (1-based `sounding`)."""
        recent = list(self.session.recent_bars)
        if not recent:
            return None, None
        by_index = {bar.index: bar for bar, _ in recent}
        if sounding is None:  # stopped or in the preroll: the last planned comes next
            return None, recent[-1][0]
        return by_index.get(sounding - 1), by_index.get(sounding)

    def _next_line(self) -> str:
        """The first line placed on a beat still ahead, with its bar (1-based, counted like the
        transport's bar:beat); "–" when none."""
        session = self.session
        clock = session.clock
        origin = 0.0 if session.follow else session.performer.origin_beat
        if not clock.running:
            return "–"
        now_beat = clock.current_beat()
        for line in self.session.placed_lines:
            if line.beat is not None and line.beat > now_beat:
                bar = math.floor((line.beat - origin) / session.beats_per_bar + 1e-9) + 1
                return f"{line.text!r} at bar {bar}"
        return "–"

    def render(self) -> Group:
        f = self.fields()
        heard = (float(f["valence"]), float(f["arousal"]))
        heading = tuple(float(x) for x in f["heading"].split())
        left = Table.grid(padding=(0, 1))
        left.add_column(style="bold cyan", no_wrap=True)
        left.add_column()
        rows = [
            ("transport", f"{f['transport']}  {f['position']}  {f['tempo']}  bars {f['bars']}"),
            ("clock", f["clock"]),
            ("mood", f"{f['mood_word']}  v {f['valence']} a {f['arousal']}  → {f['heading']}"),
            ("", f"density {f['density']}  intensity {f['intensity']}"),
            ("music", f"{f['key']} {f['mode']}  chord {f['chord']} → {f['next_chord']}"),
            ("style", f"{f['style']}  scene {f['scene']}"),
            ("composer", f["composer"]),
            ("", f"fresh latency {f['latency']}  buffer {f['buffer']}"),
            ("sender", "lateness measured in the sender process, logged at exit"),
            ("voice", f"{f['line']}  next {f['next_line']}"),
            ("control", f["last_control"]),
            ("drops", f["drops"]),
        ]
        for name, value in rows:
            left.add_row(name, Text(value))
        outer = Table.grid(padding=(0, 2))
        outer.add_row(left, Text(mood_plane(heard, heading)))  # type: ignore[arg-type]
        recent = self.warnings.recent() if self.warnings is not None else []
        warn = Text("\n".join(recent[-5:]) or "none", style="yellow" if recent else "dim")
        return Group(
            Panel(outer, title="livekomp", expand=False),
            Panel(warn, title="warnings, last minute", expand=False),
        )


async def serve_status(
    view: StatusView,
    console: Console,
    *,
    rate_hz: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Redraw `view` in place on `console`, at most `rate_hz` times a second, until cancelled."""
    period_s = 1.0 / rate_hz
    with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
        task_status.started()
        while True:
            await trio.sleep(period_s)
            live.update(view.render(), refresh=True)
