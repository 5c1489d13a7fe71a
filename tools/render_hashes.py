"""Fingerprints of the example renders, to prove a refactor changed no behaviour.

    python tools/render_hashes.py --out before.json      # on the old commit
    python tools/render_hashes.py --compare before.json  # on the new one: exit 1 on a change

Renders every example setlist with `livekomp rehearse --audio`, for both composers at two
seeds, and records the SHA-256 of `set.mid`, `set.wav` and `summary.json`. A rehearsal is a
function of the setlist, the seed and the checkpoints, so any difference is a change in
behaviour.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 7)
COMPOSERS = ("neural", "rules")
FILES = ("set.mid", "set.wav", "summary.json")


def render_hashes(keep: Path | None = None) -> dict[str, str]:
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = keep or tmp_dir
        for setlist in sorted((REPO / "examples").glob("*.toml")):
            for composer in COMPOSERS:
                for seed in SEEDS:
                    name = f"{setlist.stem}/{composer}/seed{seed}"
                    out = Path(tmp) / name
                    relative = str(setlist.relative_to(REPO))  # the summary names it as given
                    command = [sys.executable, "-m", "livekomp.cli", "rehearse", relative]
                    command += ["--out", str(out), "--seed", str(seed), "--audio"]
                    command += ["--composer", composer]
                    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
                    for file in FILES:
                        digest = hashlib.sha256((out / file).read_bytes()).hexdigest()
                        hashes[f"{name}/{file}"] = digest
                    print(name, "rendered", flush=True)
    return hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the fingerprints to this JSON file")
    group.add_argument("--compare", type=Path, help="compare against fingerprints written before")
    parser.add_argument("--keep", type=Path, help="keep the renders in this folder, to diff them")
    args = parser.parse_args(argv)
    hashes = render_hashes(args.keep)
    if args.out is not None:
        args.out.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
        print(f"{len(hashes)} fingerprints written to {args.out}")
        return 0
    before = json.loads(args.compare.read_text())
    changed = sorted(k for k in before.keys() | hashes.keys() if before.get(k) != hashes.get(k))
    for key in changed:
        print(f"changed: {key}")
    print(f"{len(hashes) - len(changed)} of {len(before | hashes)} files byte-identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
