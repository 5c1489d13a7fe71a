"""The composer service: answers the performer's request for the next bar, never late.

It owns the composers and a latency budget. The chain is: the primary composer if it answers
inside the budget, else the fallback (the rule-based composer, always available and fast). A
primary that raises is counted and the fallback plays. Live, a slow primary runs off the trio
thread; in rehearsal everything runs inline so the result is deterministic for a seed.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

import trio

from livekomp.music.phrase import BarRequest, ComposedBar

log = logging.getLogger("livekomp.composer")


class Composer(Protocol):
    name: str

    def compose_bar(self, request: BarRequest) -> ComposedBar: ...


class ComposerService:
    def __init__(
        self,
        primary: Composer,
        fallback: Composer | None = None,
        *,
        budget_s: float = 0.25,
        in_thread: bool = False,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.budget_s = budget_s
        self.in_thread = in_thread and fallback is not None
        self.outcomes: Counter[str] = Counter()
        self._limiter = trio.CapacityLimiter(1)

    async def compose(self, request: BarRequest) -> ComposedBar:
        try:
            if self.in_thread:
                bar = await self._compose_in_thread(request)
            else:
                bar = self.primary.compose_bar(request)
        except Exception:
            if self.fallback is None:
                raise
            log.exception(
                "composer %s failed on bar %d; the fallback plays", self.primary.name, request.index
            )
            self.outcomes["failed"] += 1
            bar = None
        if bar is None:
            assert self.fallback is not None
            self.outcomes["fallback"] += 1
            return self.fallback.compose_bar(request)
        self.outcomes["fresh"] += 1
        return bar

    async def _compose_in_thread(self, request: BarRequest) -> ComposedBar | None:
        with trio.move_on_after(self.budget_s):
            return await trio.to_thread.run_sync(
                self.primary.compose_bar, request, limiter=self._limiter, abandon_on_cancel=True
            )
        self.outcomes["late"] += 1
        return None

    def summary(self) -> dict[str, object]:
        return {"primary": self.primary.name, "outcomes": dict(sorted(self.outcomes.items()))}
