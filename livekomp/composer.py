"""The composer service: answers the performer's request for the next bar, never late.

It owns the composers, a latency budget and a buffer of bars already composed for the current mood
and for where the mood is heading. The chain is: a fresh bar from the primary composer if it
answers inside the budget, else the nearest buffered bar, else the fallback (the rule-based
composer, always available and fast). A primary that raises is counted and the chain goes on.

Live, the primary runs off the trio thread (one `CapacityLimiter`, shared with the buffer's
refills) and `serve_buffer` keeps the buffer topped up between requests. In rehearsal everything
runs inline, so the result is deterministic for a seed.

A primary with an `accept(request, bar)` method is told which bar was really played (fresh,
buffered or the fallback's), so its memory of the music is what the audience heard.

Style adapters: each request names the style it is composed in (`BarRequest.style`, `BASE_STYLE` for
the base models). A buffered bar only ever answers a request for its own style, metre and key. When
a request's style differs from the one before it, the phrases buffered for the old style are
dropped at the switch and the buffer refills for the new one: a switch is heard from the bar it
was asked for, and a late model then gives way to the rules, never to a bar of the old style.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import trio

from livekomp.measure import summarize_ms
from livekomp.music.phrase import BASE_STYLE, BarRequest, ComposedBar
from livekomp.music.rules import RuleComposer

log = logging.getLogger("livekomp.composer")

COMPOSERS = ("neural", "rules")
# While the primary keeps failing, the log says so again every this many bars.
FAILURE_LOG_EVERY = 16


class Composer(Protocol):
    name: str

    def compose_bar(self, request: BarRequest) -> ComposedBar: ...


class StyleUnavailable(ValueError):
    """A style that must play (the one a rehearsal starts in) cannot be loaded."""


@dataclass(frozen=True, slots=True)
class ComposerSettings:
    """Which composer plays and how its models run (`--composer`, `--device`, …)."""

    composer: str = "neural"  # neural | rules
    device: str = "auto"  # auto (CUDA, then MPS, then CPU) | cpu | cuda | mps
    runtime: str = "torch"  # torch | onnx
    int8: bool = False  # dynamic int8 quantization of the trunk's linear layers (CPU)
    checkpoints: str | None = None  # None: the checkpoints/ folder shipped with livekomp
    threads: int = 1  # CPU threads for inference
    budget_ms: float = 60.0  # how long a fresh bar may take before the chain moves on
    styles: tuple[str, ...] = ()  # style adapters to load, by name ("base" is never one)
    adapters: str | None = None  # the adapters folder; None: $LIVEKOMP_ADAPTERS, else ./adapters


def adapters_dir(given: str | Path | None = None) -> Path:
    """Where the style adapters are: `--adapters`, else $LIVEKOMP_ADAPTERS, else ./adapters."""
    return Path(given or os.environ.get("LIVEKOMP_ADAPTERS") or "adapters")


def build_composer(settings: ComposerSettings, seed: int) -> tuple[Composer, str | None]:
    """The primary composer, and why the rules play instead of the neural one (None if they
    don't). A missing or corrupt checkpoint is one clear log line, never a stop; a runtime's
    package that is not installed (`--runtime onnx` without onnx) raises RuntimeMissing."""
    if settings.composer == "rules":
        return RuleComposer(seed), None
    try:
        # Imported here: a rules-only run never pays for importing torch.
        from livekomp.models.checkpoint import DEFAULT_DIR, CheckpointError
        from livekomp.models.neural import load_neural
        from livekomp.models.runtime import RuntimeMissing, RuntimeUnavailable
    except ImportError as error:
        reason = f"the neural composer needs torch, numpy and safetensors ({error})"
    else:
        directory = Path(settings.checkpoints) if settings.checkpoints else DEFAULT_DIR
        try:
            composer = load_neural(
                seed,
                directory,
                device=settings.device,
                runtime=settings.runtime,
                quantize=settings.int8,
                threads=settings.threads,
                # Adapters that fail to load are refused one by one (`refused_styles`).
                styles=settings.styles,
                adapters_dir=adapters_dir(settings.adapters),
            )
            return composer, None
        except RuntimeMissing:
            raise  # asked for and not installed: the user installs it, the rules will not do
        except (CheckpointError, RuntimeUnavailable) as error:
            reason = str(error)
    log.warning("neural composer unavailable: %s; the rule-based composer plays", reason)
    return RuleComposer(seed), reason


def loaded_styles(primary: Composer) -> tuple[str, ...]:
    """The style adapters the primary composer loaded (none for the rule-based composer)."""
    return tuple(getattr(primary, "styles", ()))


def refuse_styles(
    primary: Composer, wanted: Iterable[str], *, required: str = BASE_STYLE
) -> dict[str, str]:
    """The styles asked for that will not play (name → why), each told in one warning line.

    The primary's own refusals (a broken or mismatched adapter), and any name a composer without
    adapters (the rules) could not load. If `required` is refused, StyleUnavailable is raised
    instead, before any warning: the command asked for it, and nothing should play without it.
    """
    refused = dict(getattr(primary, "refused_styles", {}))
    loaded = loaded_styles(primary)
    for name in (*wanted, required):
        if name != BASE_STYLE and name not in loaded and name not in refused:
            refused[name] = f"the {primary.name} composer has no style adapters"
    if required in refused:
        hint = "see `livekomp adapters list`"
        raise StyleUnavailable(f"{_told(required, refused[required])}; {hint}")
    for name, reason in refused.items():
        log.warning("%s; refused, the base model carries on", _told(name, reason))
    return refused


def _told(name: str, reason: str) -> str:
    """Why style `name` was refused, naming it once."""
    return reason if repr(name) in reason else f"style {name!r}: {reason}"


class PhraseBuffer:
    """Bars composed ahead, by style and mood cell; the nearest one of the request's style
    answers a late request."""

    def __init__(self, depth: int = 2, cells: int = 8, resolution: float = 0.25) -> None:
        self.depth = depth
        self.cells = cells
        self.resolution = resolution
        self._bars: dict[tuple[str, int, int], deque[tuple[BarRequest, ComposedBar]]] = {}

    @property
    def fill(self) -> float:
        """How full the buffer is, 0..1 (bars held over the most it can hold)."""
        held = sum(len(entries) for entries in self._bars.values())
        return held / (self.depth * self.cells)

    def cell(self, request: BarRequest) -> tuple[str, int, int]:
        return (
            request.style,
            round(request.valence / self.resolution),
            round(request.arousal / self.resolution),
        )

    def wants(self, request: BarRequest) -> bool:
        return len(self._bars.get(self.cell(request), ())) < self.depth

    def put(self, request: BarRequest, bar: ComposedBar) -> None:
        key = self.cell(request)
        self._bars.setdefault(key, deque(maxlen=self.depth)).append((request, bar))
        self._bars[key] = self._bars.pop(key)  # most recently filled last
        while len(self._bars) > self.cells:
            del self._bars[next(iter(self._bars))]

    def clear(self) -> None:
        self._bars.clear()

    def take(self, request: BarRequest) -> ComposedBar | None:
        """The bar composed nearest this request's mood, for the same style, metre and key,
        re-indexed."""
        wanted = (request.style, request.beats_per_bar, request.tonic)
        best, best_distance = None, math.inf
        for key, entries in self._bars.items():
            for i, (made_for, _bar) in enumerate(entries):
                if (made_for.style, made_for.beats_per_bar, made_for.tonic) != wanted:
                    continue
                distance = math.hypot(
                    made_for.valence - request.valence, made_for.arousal - request.arousal
                )
                if distance < best_distance:
                    best, best_distance = (key, i), distance
        if best is None:
            return None
        key, i = best
        made_for, bar = self._bars[key][i]
        del self._bars[key][i]
        info = {**bar.info, "buffered_for": [made_for.valence, made_for.arousal]}
        return replace(bar, index=request.index, info=info)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._bars.values())


class ComposerService:
    def __init__(
        self,
        primary: Composer,
        fallback: Composer | None = None,
        *,
        budget_s: float = 0.25,
        in_thread: bool = False,
        buffer: PhraseBuffer | None = None,
        heading: Callable[[], tuple[float, float]] | None = None,
        unavailable: str | None = None,
        refused_styles: Mapping[str, str] | None = None,
        log_every_bars: int = 0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.budget_s = budget_s
        self.in_thread = in_thread and fallback is not None
        self.buffer = buffer
        self.heading = heading
        self.unavailable = unavailable
        self.refused_styles = dict(refused_styles or {})
        self.log_every_bars = log_every_bars
        self.outcomes: Counter[str] = Counter()
        self.style_switches = 0
        self.fresh_s: deque[float] = deque(maxlen=10_000)
        self._limiter = trio.CapacityLimiter(1)
        self._refill = trio.Event()
        self._last: BarRequest | None = None
        self._failing = 0  # bars in a row the primary raised on

    async def compose(self, request: BarRequest) -> ComposedBar:
        if self._last is not None and request.style != self._last.style:
            self._switch_style(request)
        self._last = request
        try:
            if self.in_thread:
                bar = await self._compose_in_thread(request)
            else:
                bar = self._timed(request)
        except Exception as error:
            if self.fallback is None:
                raise
            self._failed(request, error)
            bar = None
        else:
            if self._failing and bar is not None:
                log.warning(
                    "composer %s is back from bar %d, after %d failed bars",
                    self.primary.name,
                    request.index,
                    self._failing,
                )
                self._failing = 0
        if bar is not None:
            self.outcomes["fresh"] += 1
        elif self.buffer is not None and (bar := self.buffer.take(request)) is not None:
            self.outcomes["buffered"] += 1
        else:
            assert self.fallback is not None
            self.outcomes["fallback"] += 1
            bar = self.fallback.compose_bar(request)
        accept = getattr(self.primary, "accept", None)
        if accept is not None:
            accept(request, bar)
        self._refill.set()
        if self.log_every_bars and (request.index + 1) % self.log_every_bars == 0:
            log.info("composer: %s", self.health())
        return bar

    def _failed(self, request: BarRequest, error: Exception) -> None:
        """One line for the stage when the primary starts failing, and every FAILURE_LOG_EVERY
        bars while it goes on (the traceback at debug level); the chain goes on."""
        self.outcomes["failed"] += 1
        self._failing += 1
        if self._failing == 1 or self._failing % FAILURE_LOG_EVERY == 0:
            log.warning(
                "composer %s failed on bar %d (%s: %s; %d bars in a row); the %s play",
                self.primary.name,
                request.index,
                type(error).__name__,
                error,
                self._failing,
                "buffered bars or the rules" if self.buffer is not None else "rules",
            )
        log.debug("composer %s failed", self.primary.name, exc_info=error)

    def _switch_style(self, request: BarRequest) -> None:
        """The old style's buffered phrases are dropped; the buffer refills for the new one."""
        self.style_switches += 1
        if self.buffer is not None and (dropped := len(self.buffer)):
            self.buffer.clear()
            log.info(
                "composer: style %s from bar %d; %d bars buffered for the old style dropped",
                request.style,
                request.index,
                dropped,
            )

    def _timed(self, request: BarRequest) -> ComposedBar:
        started = time.perf_counter()
        bar = self.primary.compose_bar(request)
        self.fresh_s.append(time.perf_counter() - started)
        return bar

    async def _compose_in_thread(self, request: BarRequest) -> ComposedBar | None:
        with trio.move_on_after(self.budget_s):
            return await trio.to_thread.run_sync(
                self._timed, request, limiter=self._limiter, abandon_on_cancel=True
            )
        self.outcomes["late"] += 1
        return None

    def _wanted(self) -> list[BarRequest]:
        """What the buffer should hold next: the current mood, and where it is heading."""
        if self._last is None:
            return []
        upcoming = replace(self._last, index=self._last.index + 1)
        wanted = [upcoming]
        if self.heading is not None:
            valence, arousal = self.heading()
            wanted.append(replace(upcoming, valence=valence, arousal=arousal))
        return wanted

    async def serve_buffer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED):
        """Keep the buffer topped up between requests (live only)."""
        task_status.started()
        if self.buffer is None:
            return
        while True:
            await self._refill.wait()
            self._refill = trio.Event()
            for request in self._wanted():
                while self.buffer.wants(request):
                    try:
                        bar = await trio.to_thread.run_sync(
                            self.primary.compose_bar, request, limiter=self._limiter
                        )
                    except Exception as error:
                        # The bar asked for next says so to the performer, once (compose).
                        log.debug("composing ahead for the buffer failed", exc_info=error)
                        break
                    if self._last is not None and self._last.style != request.style:
                        break  # the style switched while it was composed: not wanted now
                    self.buffer.put(request, bar)

    def latency(self) -> dict[str, float]:
        """Fresh bars' compose time (count, p50/p99/max in ms); empty before the first."""
        return summarize_ms(self.fresh_s) if self.fresh_s else {}

    def health(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "no bars"
        latency = self.latency()
        tail = f" | p99 {latency['p99_ms']:.1f} ms" if latency else ""
        fill = f" | buffer {len(self.buffer)}" if self.buffer is not None else ""
        switches = f" | style switches {self.style_switches}" if self.style_switches else ""
        return f"{self.primary.name}: {counts}{tail}{fill}{switches}"

    def summary(self) -> dict[str, object]:
        summary: dict[str, object] = {
            "primary": self.primary.name,
            "outcomes": dict(sorted(self.outcomes.items())),
        }
        runtime = getattr(self.primary, "runtime", None)
        if runtime:
            summary["runtime"] = runtime
        if self.unavailable:
            summary["neural_unavailable"] = self.unavailable
        summary["styles"] = list(loaded_styles(self.primary))
        summary["refused_styles"] = dict(self.refused_styles)
        summary["style_switches"] = self.style_switches
        latency = self.latency()
        if latency and self.in_thread:
            summary["fresh_latency"] = latency
        if self.buffer is not None:
            summary["buffer_fill"] = len(self.buffer)
        return summary
