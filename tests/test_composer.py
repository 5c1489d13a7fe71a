"""The composer service's chain: fresh within the budget, else the fallback, never waiting."""

import threading
import time

from livekomp.composer import ComposerService
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


async def test_without_a_fallback_the_primary_runs_inline():
    primary = Named("rules")
    service = ComposerService(primary, in_thread=True)  # nothing to fall back to: no budget
    assert (await service.compose(REQUEST)).composer == "rules"
    assert primary.threads == [threading.current_thread().name]
