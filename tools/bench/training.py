"""Training on one process against several under torchrun, for the same samples seen.

    python -m tools.bench training [--dataset cache/dataset/works.jsonl.gz]
                                   [--models harmony,groove] [--runs 1,2]
                                   [--train-args "--melody-epochs 1"] [--repeats 1]
                                   [--keep DIR] [--json FILE]

Runs `tools/train.py` on the same dataset with the same arguments, into folders of its own (never
`checkpoints/`): as one process, and under `torchrun --standalone --nproc_per_node=N` for each
other count in `--runs` (`PxT` also gives each process T threads), the list `--repeats` times in
turn. The batch sizes are global, so every run takes the same optimizer steps over the same
samples. For each model: the held-out figures each run wrote, its
training and wall minutes, and the samples it saw; for each run: the exact command, its wall
time from start to exit (interpreters, data preparation and evaluation included) and the load
average around it, since a shared machine's other work shows in the times. Prints its result as
JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def held_out(kind: str, result: dict) -> dict[str, float]:
    """The figures a model's test split got, as train.py wrote them."""
    if kind == "harmony":
        return {"test_nll": result["test_nll"], "test_accuracy": result["test_accuracy"]}
    if kind == "groove":
        return {f"test_{name}": value for name, value in result["test"].items()}
    return {f"test_{field}_nll": scores["nll"] for field, scores in result["test"].items()} | {
        "test_pitch_accuracy": result["test"]["pitch"]["accuracy"]
    }


def launcher(processes: int) -> list[str]:
    """How to start `tools/train.py` on `processes` processes with this interpreter."""
    if processes == 1:
        return [sys.executable]
    torchrun = Path(sys.executable).with_name("torchrun")
    start = (
        [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    )
    return [*start, "--standalone", f"--nproc_per_node={processes}"]


def train_once(dataset: Path, models: str, processes: int, extra: list[str], folder: Path) -> dict:
    """One run of train.py into `folder`; its command, times and per-model figures."""
    command = [
        *launcher(processes),
        "tools/train.py",
        f"--dataset={dataset}",
        f"--out={folder}",
        f"--state={folder / 'state'}",
        f"--models={models}",
        *extra,
    ]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with (folder / "train.log").open("w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall_s = time.perf_counter() - started
    if done.returncode:
        tail = (folder / "train.log").read_text()[-3000:]
        raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}):\n{tail}")
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        "command": shlex.join(command),
        "wall_s": round(wall_s, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "models": {
            kind: {
                "processes": metrics[kind]["processes"],
                "threads": metrics[kind]["threads"],
                "samples_seen": metrics[kind]["samples_seen"],
                "train_minutes": metrics[kind]["train_minutes"],
                "wall_minutes": metrics[kind]["wall_minutes"],
                **held_out(kind, metrics[kind]),
            }
            for kind in models.split(",")
        },
    }


def run_spec(text: str) -> tuple[int, int | None]:
    """`P` (processes, train.py's default threads) or `PxT` (and T threads each)."""
    processes, _, threads = text.partition("x")
    return int(processes), int(threads) if threads else None


def bench_training(
    dataset: Path,
    models: str,
    specs: list[tuple[int, int | None]],
    extra: list[str],
    keep: Path | None,
    repeats: int = 1,
) -> dict:
    """Each run in `specs`, the whole list `repeats` times in turn (1, N, 1, N …) so that a
    shared machine's other work falls on all alike; a repeat trains into the same folder, with
    the same command."""
    with tempfile.TemporaryDirectory() as temporary:
        base = keep or Path(temporary)
        runs = []
        for repeat in range(repeats):
            for processes, threads in specs:
                name = f"processes-{processes}" + (f"-threads-{threads}" if threads else "")
                folder = base / name
                folder.mkdir(parents=True, exist_ok=True)
                more = [*extra, f"--threads={threads}"] if threads else extra
                run = train_once(dataset.resolve(), models, processes, more, folder)
                runs.append({"repeat": repeat + 1, "name": name, "processes": processes, **run})
    return {
        "command": shlex.join(["python", "-m", "tools.bench", *sys.argv[1:]]),
        "dataset": str(dataset),
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "runs": runs,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", type=Path, default=ROOT / "cache" / "dataset" / "works.jsonl.gz"
    )
    parser.add_argument("--models", default="harmony,groove")
    parser.add_argument(
        "--runs",
        default="1,2",
        help="the runs, by processes, or PxT for P processes of T threads (default 1,2)",
    )
    parser.add_argument("--train-args", default="", help="more tools/train.py arguments, for all")
    parser.add_argument("--keep", type=Path, help="train here and keep it (default: a temp folder)")
    parser.add_argument("--repeats", type=int, default=1, help="each run this many times, in turn")


def run(args: argparse.Namespace) -> dict:
    specs = [run_spec(item) for item in args.runs.split(",")]
    extra = shlex.split(args.train_args)
    return bench_training(args.dataset, args.models, specs, extra, args.keep, args.repeats)
