"""A logger that cannot flood: at most one line per reason per interval, and the next one says
how many it held back. Serves the inputs, the router and the voice alike."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable


class RateLimitedLog:
    """At most one log line per reason per `interval_s`; the next one says how many were held."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_s: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def log(self, level: int, reason: str, message: str) -> bool:
        """Log `message` unless `reason` logged less than `interval_s` ago. True if emitted."""
        now_s = self._clock()
        last_s = self._last_s.get(reason)
        if last_s is not None and now_s - last_s < self._interval_s:
            self._suppressed[reason] += 1
            return False
        self._last_s[reason] = now_s
        held = self._suppressed.pop(reason, 0)
        if held:
            message = f"{message} ({held} more suppressed)"
        self._logger.log(level, "%s", message)
        return True

    def warning(self, reason: str, message: str) -> bool:
        return self.log(logging.WARNING, reason, message)
