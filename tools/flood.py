"""An OSC flood from two sources against a live server, one allowed and one not.

Run inside a network namespace of its own (`tools.link_scenario.netns_command`, root only): it
gives `lo` two more addresses, starts `livekomp serve --osc-host 0.0.0.0 --osc-allow
10.77.0.0/24`, and floods it from 10.77.0.1 (allowed; happy XY values) and 10.88.0.1 (denied; sad
ones) as fast as the sockets take them. Then the allowed source sends a few slow controls that
must land. It writes one JSON object: the packets sent, how long the flood took, and the server's
summary (input counts, send timing, bars with their mood).

    python -m tools.flood OUT.json --count 100000 [--rate-hz 10000] [serve flags: --osc-rate 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder

from tools.peers import Serve

ALLOWED = "10.77.0.1"
DENIED = "10.88.0.1"
ALLOW = "10.77.0.0/24"


def xy(valence01: float) -> bytes:
    builder = OscMessageBuilder("/livekomp/xy")
    builder.add_arg(valence01, "f")
    builder.add_arg(0.5, "f")
    return builder.build().dgram


def sender(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped because a socket's buffer was full (this namespace)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [row for row in lines if row[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def flood(port: int, count: int, rate_hz: float) -> float:
    """`count` datagrams from each source, interleaved, at about `rate_hz` each (0: as fast
    as the sockets take them, which mostly fills the server's socket buffer); seconds taken."""
    happy, sad = xy(0.9), xy(0.0)
    allowed, denied = sender(ALLOWED), sender(DENIED)
    chunk = 50
    start_s = time.perf_counter()
    for sent in range(0, count, chunk):
        for _ in range(min(chunk, count - sent)):
            allowed.sendto(happy, (ALLOWED, port))
            denied.sendto(sad, (ALLOWED, port))
        if rate_hz > 0:
            ahead_s = start_s + (sent + chunk) / rate_hz - time.perf_counter()
            if ahead_s > 0:
                time.sleep(ahead_s)
    took_s = time.perf_counter() - start_s
    allowed.close()
    denied.close()
    return took_s


def run(out: Path, count: int, rate_hz: float, settle_s: float, extra: list[str]) -> None:
    for address in (ALLOWED, DENIED):
        subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", "lo"], check=True)
    with tempfile.TemporaryDirectory() as folder:
        serve = Serve(
            Path(folder),
            "--osc-host",
            "0.0.0.0",
            "--osc-allow",
            ALLOW,
            "--voice",
            "none",
            "--composer",
            "rules",
            "--slew-s",
            "0",
            *extra,
            record=None,
        )
        try:
            serve.wait_ready()
            time.sleep(settle_s)  # some bars before the flood
            kernel_before = udp_receive_errors()
            flood_s = flood(serve.osc_port, count, rate_hz)
            kernel_dropped = udp_receive_errors() - kernel_before
            time.sleep(1.5)  # the allowed source's bucket refills
            controls = 20
            allowed = sender(ALLOWED)
            for _ in range(controls):  # slow, well inside the rate: every one must land
                allowed.sendto(xy(1.0), (ALLOWED, serve.osc_port))
                time.sleep(0.01)
            allowed.close()
            time.sleep(settle_s)
            code = serve.stop()
            summary = json.loads(serve.summary_path.read_text())
            log = serve.log()
        finally:
            serve.kill()
    result = {
        "count_per_source": count,
        "flood_s": flood_s,
        "rate_hz_per_source": rate_hz,
        "kernel_dropped": kernel_dropped,
        "slow_controls": controls,
        "exit_code": code,
        "summary": summary,
        "log_lines_dropped": sum("input dropped" in line for line in log.splitlines()),
        "allow_lines": [line for line in log.splitlines() if "OSC accepted from" in line],
    }
    out.write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=100_000, help="datagrams per source")
    parser.add_argument(
        "--rate-hz", type=float, default=10_000, help="datagrams a second per source (0: flat out)"
    )
    parser.add_argument("--settle-s", type=float, default=2.0, help="music before and after")
    args, serve_args = parser.parse_known_args(argv)  # the rest go to `livekomp serve`
    run(args.out, args.count, args.rate_hz, args.settle_s, serve_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
