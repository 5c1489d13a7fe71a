"""The composer service's chain: fresh within the budget, else the fallback, never waiting."""

import threading
import time
from dataclasses import replace
from pathlib import Path

import trio

from livekomp.composer import ComposerService, ComposerSettings, PhraseBuffer, adapters_dir
from livekomp.music.phrase import BarRequest, ComposedBar, Note, Part

REQUEST = BarRequest(index=3, beats_per_bar=4, tonic=0, valence=0.5, arousal=0.0)


class Named:
    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.threads: list[str] = []

    def compose_bar(self, request: BarRequest) -> ComposedBar:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        notes = {Part.MELODY: (Note(60, 0.0, 1.0, 80),)}
        return ComposedBar(request.index, request.beats_per_bar, notes, self.name)


async def test_a_primary_inside_the_budget_answers_from_a_worker_thread():
    primary = Named("model")
    service = ComposerService(primary, Named("rules"), budget_s=5.0, in_thread=True)
    bar = await service.compose(REQUEST)
    assert bar.composer == "model"
    assert primary.threads and primary.threads[0] != threading.current_thread().name
    summary = service.summary()
    assert summary["primary"] == "model" and summary["outcomes"] == {"fresh": 1}
    assert summary["fresh_latency"]["count"] == 1


async def test_a_late_primary_gives_way_to_the_fallback_within_the_budget():
    release = threading.Event()

    class Stuck(Named):
        def compose_bar(self, request: BarRequest) -> ComposedBar:
            release.wait(10.0)  # a model that only finishes when the test lets it
            return super().compose_bar(request)

    service = ComposerService(Stuck("model"), Named("rules"), budget_s=0.05, in_thread=True)
    bar = await service.compose(REQUEST)
    assert not release.is_set()  # the answer came while the model was still busy
    release.set()
    assert bar.composer == "rules"
    assert service.outcomes == {"late": 1, "fallback": 1}


async def test_a_primary_that_raises_for_ten_bars_gives_way_to_the_rules_then_comes_back(caplog):
    """The model raises on every bar for 10 bars (a fault): the rules play each of them, the
    log says so in one line (no traceback on stage), and the model plays again when it can."""

    class Faulty(Named):
        def compose_bar(self, request: BarRequest) -> ComposedBar:
            if request.index < 10:
                raise RuntimeError("out of memory")
            return super().compose_bar(request)

    service = ComposerService(Faulty("model"), Named("rules"), budget_s=5.0, in_thread=True)
    caplog.set_level("INFO", logger="livekomp.composer")
    played = [(await service.compose(replace(REQUEST, index=i))).composer for i in range(14)]
    assert played == ["rules"] * 10 + ["model"] * 4
    assert service.outcomes == {"failed": 10, "fallback": 10, "fresh": 4}
    lines = [r.getMessage() for r in caplog.records if r.name == "livekomp.composer"]
    assert lines == [
        "composer model failed on bar 0 (RuntimeError: out of memory; 1 bars in a row); "
        "the rules play",
        "composer model is back from bar 10, after 10 failed bars",
    ]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= 20)


async def test_without_a_fallback_the_primary_runs_inline():
    primary = Named("rules")
    service = ComposerService(primary, in_thread=True)  # nothing to fall back to: no budget
    assert (await service.compose(REQUEST)).composer == "rules"
    assert primary.threads == [threading.current_thread().name]


def bar_for(request: BarRequest, name: str) -> ComposedBar:
    return ComposedBar(request.index, request.beats_per_bar, {Part.MELODY: ()}, name)


def test_the_buffer_answers_with_the_nearest_mood_for_the_same_metre_and_key():
    buffer = PhraseBuffer(depth=2)
    near = BarRequest(index=40, beats_per_bar=4, tonic=0, valence=0.4, arousal=0.1)
    far = BarRequest(index=41, beats_per_bar=4, tonic=0, valence=-0.9, arousal=0.9)
    other_metre = BarRequest(index=42, beats_per_bar=3, tonic=0, valence=0.5, arousal=0.0)
    for made_for, name in ((near, "near"), (far, "far"), (other_metre, "waltz")):
        buffer.put(made_for, bar_for(made_for, name))
    taken = buffer.take(REQUEST)
    assert taken.composer == "near" and taken.index == REQUEST.index
    assert taken.info["buffered_for"] == [0.4, 0.1]
    assert buffer.take(REQUEST).composer == "far"  # the nearest left
    assert buffer.take(REQUEST) is None  # the 3/4 bar never plays in 4/4
    assert len(buffer) == 1


def test_the_buffer_keeps_a_few_bars_per_mood_and_forgets_the_oldest_moods():
    buffer = PhraseBuffer(depth=2, cells=2)
    for valence in (-0.5, 0.0, 0.5):
        request = BarRequest(index=0, beats_per_bar=4, tonic=0, valence=valence, arousal=0.0)
        assert buffer.wants(request)
        buffer.put(request, bar_for(request, "a"))
        buffer.put(request, bar_for(request, "b"))
        assert not buffer.wants(request)
    assert len(buffer) == 4  # two moods of two bars; the first mood was dropped
    gone = BarRequest(index=0, beats_per_bar=4, tonic=0, valence=-0.5, arousal=0.0)
    assert buffer.wants(gone)


async def test_a_late_primary_gives_way_to_a_buffered_bar_before_the_rules():
    release = threading.Event()

    class Stuck(Named):
        def compose_bar(self, request: BarRequest) -> ComposedBar:
            release.wait(10.0)
            return super().compose_bar(request)

    buffer = PhraseBuffer()
    ahead = BarRequest(index=9, beats_per_bar=4, tonic=0, valence=0.5, arousal=0.1)
    buffer.put(ahead, bar_for(ahead, "buffered model"))
    service = ComposerService(
        Stuck("model"), Named("rules"), budget_s=0.05, in_thread=True, buffer=buffer
    )
    first = await service.compose(REQUEST)
    second = await service.compose(REQUEST)
    release.set()
    assert first.composer == "buffered model" and second.composer == "rules"
    assert service.outcomes == {"late": 2, "buffered": 1, "fallback": 1}


async def test_the_buffer_fills_for_the_current_mood_and_where_it_is_heading():
    accepted = []

    class Remembering(Named):
        def accept(self, request: BarRequest, bar: ComposedBar) -> None:
            accepted.append((request.index, bar.composer))

    buffer = PhraseBuffer(depth=1)
    service = ComposerService(
        Remembering("model"),
        Named("rules"),
        budget_s=5.0,
        in_thread=True,
        buffer=buffer,
        heading=lambda: (-0.8, 0.7),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve_buffer)
        await service.compose(REQUEST)
        with trio.fail_after(5):
            while len(buffer) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert accepted == [(3, "model")]  # the composer learns what was played, not the buffer
    heading = BarRequest(index=4, beats_per_bar=4, tonic=0, valence=-0.8, arousal=0.7)
    assert buffer.take(heading).info["buffered_for"] == [-0.8, 0.7]
    current = replace(REQUEST, index=4)
    assert buffer.take(current).info["buffered_for"] == [REQUEST.valence, REQUEST.arousal]


REEL = replace(REQUEST, style="reel")


def test_the_buffer_never_answers_with_another_styles_bar():
    buffer = PhraseBuffer()
    buffer.put(REQUEST, bar_for(REQUEST, "base"))
    buffer.put(REEL, bar_for(REEL, "reel"))
    hymn = replace(REQUEST, style="hymn")
    assert buffer.take(hymn) is None and buffer.wants(hymn)  # hymn has cells of its own
    assert buffer.take(REEL).composer == "reel"
    assert buffer.take(REEL) is None  # the base bar is just as near, and not the reel's
    assert buffer.take(REQUEST).composer == "base"


async def test_a_style_switch_drops_the_old_styles_phrases():
    class Broken(Named):
        def compose_bar(self, request: BarRequest) -> ComposedBar:
            raise RuntimeError("no fresh bars today")

    buffer = PhraseBuffer()
    for _ in range(2):
        buffer.put(REQUEST, bar_for(REQUEST, "buffered base"))
    service = ComposerService(Broken("model"), Named("rules"), buffer=buffer)
    played = [(await service.compose(REQUEST)).composer]
    played.append((await service.compose(REEL)).composer)  # the switch: the base bar left goes
    assert len(buffer) == 0
    buffer.put(REEL, bar_for(REEL, "buffered reel"))
    played.append((await service.compose(REEL)).composer)
    played.append((await service.compose(REQUEST)).composer)  # and back
    assert played == ["buffered base", "rules", "buffered reel", "rules"]
    assert service.style_switches == 2
    assert service.summary()["style_switches"] == 2
    assert "style switches 2" in service.health()


async def test_the_buffer_refills_for_the_new_style():
    buffer = PhraseBuffer(depth=1)
    service = ComposerService(
        Named("model"), Named("rules"), budget_s=5.0, in_thread=True, buffer=buffer
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve_buffer)
        await service.compose(REQUEST)
        await service.compose(replace(REEL, index=4))
        with trio.fail_after(5):
            while not buffer.take(replace(REEL, index=5)):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert buffer.take(replace(REQUEST, index=5)) is None  # nothing of the old style


def test_the_adapters_folder(monkeypatch):
    monkeypatch.delenv("LIVEKOMP_ADAPTERS", raising=False)
    assert adapters_dir(ComposerSettings().adapters) == Path("adapters")
    monkeypatch.setenv("LIVEKOMP_ADAPTERS", "/srv/styles")
    assert adapters_dir() == Path("/srv/styles")
    assert adapters_dir(ComposerSettings(adapters="mine").adapters) == Path("mine")
