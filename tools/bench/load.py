"""Background load for the benchmarks and tests that measure timing under it: busy processes
(other cores: a small torch matmul loop, or pure Python without torch), disk writers (a file of
random bytes written and synced to disk, then compressed, over and over: the CPU-and-disk load
that once made the clock-follow test fail), busy Python threads in this process (they hold the
GIL), and livekomp's own `RuleComposer` composing bar after bar in a thread here, as a composer
does live."""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import threading
import time
import zlib
from pathlib import Path

from livekomp.music.phrase import BarRequest
from livekomp.music.rules import RuleComposer


def _burn_forever() -> None:
    """Busy CPU work until killed: a small torch matmul loop if torch is here, else pure Python."""
    try:
        import torch

        torch.set_num_threads(1)
        a = torch.randn(128, 128)
        while True:
            a = torch.tanh(a @ a)
    except ImportError:
        x = 0
        while True:
            for i in range(10_000):
                x = (x * 31 + i) % 1_000_003


DISK_CHUNK = 1 << 20
DISK_FILE_MB = 300  # like `dd bs=1M count=300 conv=fsync`, then `gzip -1`


def _write_forever(folder: str) -> None:
    """Until killed: write DISK_FILE_MB of random bytes and sync them to disk, then compress the
    file at level 1, again and again (the disk busy with writes, a core with the rest)."""
    path = Path(folder) / f"load-{os.getpid()}.bin"
    try:
        while True:
            with path.open("wb") as out:
                for _ in range(DISK_FILE_MB):
                    out.write(os.urandom(DISK_CHUNK))
                out.flush()
                os.fsync(out.fileno())
            packer = zlib.compressobj(1)
            with path.open("rb") as source:
                while chunk := source.read(DISK_CHUNK):
                    packer.compress(chunk)
            packer.flush()
    finally:
        path.unlink(missing_ok=True)


def _burn_until(stop: threading.Event) -> None:
    # Pure-Python work in this process: it holds the GIL, like a composer's Python glue code.
    x = 0
    while not stop.is_set():
        for i in range(1_000):
            x = (x * 31 + i) % 1_000_003


def _compose_until(stop: threading.Event) -> None:
    # livekomp's own composer, bar after bar through a wandering mood: the in-process work live.
    composer = RuleComposer(seed=1)
    index = 0
    while not stop.is_set():
        phase = index * 0.37
        request = BarRequest(
            index=index,
            beats_per_bar=4,
            tonic=index % 12,
            valence=math.sin(phase),
            arousal=math.cos(phase * 0.7),
            density=0.5 + 0.4 * math.sin(phase * 1.3),
        )
        composer.compose_bar(request)
        index += 1


class Load:
    """`procs` busy processes (other cores), `disk` disk writers (in a temporary folder of
    their own, removed at the end), `threads` busy threads and `composers` composer threads here
    (GIL contention)."""

    def __init__(self, procs: int, threads: int, composers: int = 0, disk: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self._procs = [context.Process(target=_burn_forever, daemon=True) for _ in range(procs)]
        self._folder = tempfile.TemporaryDirectory(prefix="livekomp-load-") if disk else None
        if self._folder is not None:
            self._procs += [
                context.Process(target=_write_forever, args=(self._folder.name,), daemon=True)
                for _ in range(disk)
            ]
        self._stop = threading.Event()
        targets = [_burn_until] * threads + [_compose_until] * composers
        self._threads = [
            threading.Thread(target=target, args=(self._stop,), daemon=True) for target in targets
        ]

    def __enter__(self) -> Load:
        for worker in (*self._procs, *self._threads):
            worker.start()
        time.sleep(1.0)  # let spawned interpreters get going
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.terminate()
            proc.join()
        for thread in self._threads:
            thread.join()
        if self._folder is not None:
            self._folder.cleanup()  # a killed writer leaves its file behind


def describe_load(procs: int, threads: int, composers: int = 0, disk: int = 0) -> str:
    try:
        import torch  # noqa: F401

        kind = "torch matmul"
    except ImportError:
        kind = "pure Python"
    return (
        f"{procs} busy process(es) ({kind}), {disk} disk writer(s) ({DISK_FILE_MB} MB synced, "
        f"then compressed), {threads} busy thread(s) in-process (GIL), "
        f"{composers} RuleComposer thread(s) in-process (GIL)"
    )
