"""Replay a MIDI clock master's ticks through the follower's tick filter with stalls, offline.

    python -m tools.follow_replay [--runs 400] [--evidence FILE ...]

Each run takes a master's send times (by default a synthetic master like the live follow test's:
90 BPM, a tick left out on purpose, then 140 BPM; or the `sent` log of a kept
`follow-evidence.json`), delivers them as a JACK client would see them (at the start of the next
period of 128 frames at 48 kHz, a fraction of a millisecond after sending) and, with a chance per
tick, stalls the delivery for up to some time, then hands the held ticks over at once, as a
transport thread held up by a busy disk does. It counts the runs whose tick count, at the last
tick on the line, differs from the same run delivered without stalls. Nothing is lost in
delivery, so every difference is the filter miscounting.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from livekomp.clock.follow import RESET_GAP_S, TickFilter

PERIOD_S = 128 / 48_000
STALL_CHANCES = (0.002, 0.01, 0.03)  # per tick: a stall starts here
STALL_MAX_S = (0.02, 0.06, 0.15, 0.3)


def synthetic_master(rng: random.Random) -> list[float]:
    """A master's send times: 12 beats at 90 BPM with one tick left out, 24 beats at 140 BPM,
    each tick sent up to 0.3 ms late."""
    times: list[float] = []
    t = 0.0
    for bpm, beats in ((90.0, 12), (140.0, 24)):
        period = 60.0 / bpm / 24
        for _ in range(beats * 24):
            times.append(t + rng.uniform(0.0, 0.3e-3))
            t += period
    del times[150]
    return times


def runs_of_ticks(sent: list[float]) -> list[list[float]]:
    """The master's ticks, split where it was silent long enough for the filter to start over."""
    runs: list[list[float]] = [[]]
    for t in sent:
        if runs[-1] and t - runs[-1][-1] > RESET_GAP_S * 0.9:
            runs.append([])
        runs[-1].append(t)
    return runs


def deliver(
    sent: list[float], rng: random.Random, chance: float, stall_max_s: float
) -> list[float]:
    """Arrival times: at the next JACK period after sending, held back through any stall."""
    arrivals: list[float] = []
    release_s = -1.0
    for t in sent:
        arrival = t + 0.5e-3 + rng.random() * 0.3e-3
        arrival = (int(arrival / PERIOD_S) + 1) * PERIOD_S
        if rng.random() < chance:
            release_s = arrival + rng.uniform(0.005, stall_max_s)
        arrivals.append(max(arrival, release_s, arrivals[-1] if arrivals else 0.0))
    return arrivals


def counts_on_line(arrivals: list[float]) -> list[tuple[int, int]]:
    """(index, count) of every tick the filter put on its line."""
    tick_filter = TickFilter()
    return [(i, tick_filter.count) for i, t in enumerate(arrivals) if tick_filter.add(t).on_line]


def replay(masters: list[list[float]], runs: int) -> dict:
    miscounted: list[dict] = []
    total = 0
    for seed in range(runs):
        rng = random.Random(seed)
        chance, stall_max_s = rng.choice(STALL_CHANCES), rng.choice(STALL_MAX_S)
        for ticks in runs_of_ticks(masters[seed % len(masters)]):
            total += 1
            reference = dict(counts_on_line(deliver(ticks, random.Random(seed), 0.0, 0.01)))
            stalled = counts_on_line(deliver(ticks, rng, chance, stall_max_s))
            index, count = stalled[-1]
            if reference.get(index, count) != count:
                miscounted.append(
                    {
                        "seed": seed,
                        "stall_chance": chance,
                        "stall_max_ms": stall_max_s * 1e3,
                        "tick": index,
                        "count": count,
                        "without_stalls": reference[index],
                    }
                )
    return {"runs": total, "miscounted": len(miscounted), "cases": miscounted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--evidence", type=Path, nargs="*", default=[], help="follow-evidence.json")
    args = parser.parse_args()
    masters = [
        [t for t, message in json.loads(path.read_text())["sent"] if message == [0xF8]]
        for path in args.evidence
    ] or [synthetic_master(random.Random(seed)) for seed in range(8)]
    result = replay(masters, args.runs)
    for case in result["cases"]:
        print(json.dumps(case))
    print(f"{result['miscounted']} of {result['runs']} runs miscounted")


if __name__ == "__main__":
    main()
