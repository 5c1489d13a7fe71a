"""OSC feedback: what changed is sent, rate-limited, and it arrives at a real OSC receiver."""

from __future__ import annotations

import socket
from dataclasses import replace
from functools import partial

import pytest
import trio
from pythonosc.osc_message import OscMessage

from livekomp.outputs.osc import (
    FeedbackChanges,
    FeedbackSnapshot,
    encode,
    parse_target,
    serve_feedback,
)

BASE = FeedbackSnapshot(
    valence=0.0,
    arousal=0.0,
    density=0.5,
    intensity=0.5,
    target_valence=0.0,
    target_arousal=0.0,
    tempo_bpm=120.0,
    playing=True,
    bar=1,
    beat=1,
)


def decoded(datagrams: list[bytes]) -> dict[str, list]:
    messages = [OscMessage(d) for d in datagrams]
    return {m.address: m.params for m in messages}


def test_only_changes_are_sent_and_everything_on_refresh() -> None:
    changes = FeedbackChanges()
    first = decoded(changes.changed(BASE))
    assert first["/livekomp/fb/tempo"] == [120.0]
    assert first["/livekomp/fb/bar"] == [1] and first["/livekomp/fb/playing"] == [1]
    assert first["/livekomp/xy"] == [0.5, 0.5]
    assert "/livekomp/fb/line" not in first  # unknown values are not sent
    assert changes.changed(BASE) == []
    moved = replace(
        BASE, valence=-0.5, beat=2, line="Before the light", target_valence=-0.5, style="reel"
    )
    again = decoded(changes.changed(moved))
    assert again == {
        "/livekomp/fb/valence": [-0.5],
        "/livekomp/fb/beat": [2],
        "/livekomp/fb/line": ["Before the light"],
        "/livekomp/fb/style": ["reel"],
        "/livekomp/xy": [0.25, 0.5],
    }
    assert changes.changed(replace(moved, valence=-0.501)) == []  # below the resolution
    assert len(changes.changed(moved, everything=True)) == len(moved.values())


def test_encoding_and_targets() -> None:
    assert OscMessage(encode("/a", 3)).params == [3]
    assert OscMessage(encode("/a", "é")).params == ["é"]
    assert parse_target("192.168.1.20:9001") == ("192.168.1.20", 9001)
    assert parse_target(":9001") == ("127.0.0.1", 9001)
    for bad in ("9001", "host:", "host:99999", "host:port"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_target(bad)


async def test_feedback_arrives_at_a_python_osc_receiver_rate_limited() -> None:
    """Real UDP and real time (short): the receiver hears the changes, at most `rate_hz`
    snapshots a second."""
    receiver = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    state = {"snapshot": BASE}
    received: list[tuple[float, OscMessage]] = []

    async def receive() -> None:
        while True:
            datagram = await receiver.recv(65536)
            received.append((trio.current_time(), OscMessage(datagram)))

    with receiver:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await nursery.start(
                partial(
                    serve_feedback,
                    ("127.0.0.1", port),
                    lambda: state["snapshot"],
                    rate_hz=20.0,
                    refresh_s=60.0,
                )
            )
            # The beat changes 200 times a second: far faster than feedback may go.
            for i in range(100):
                state["snapshot"] = replace(BASE, beat=i % 4 + 1, scene="verse")
                await trio.sleep(0.005)
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    addresses = [m.address for _, m in received]
    assert addresses.count("/livekomp/fb/tempo") == 1  # unchanged: sent once
    assert ("/livekomp/fb/scene", ["verse"]) in [(m.address, m.params) for _, m in received]
    beats = [m for _, m in received if m.address == "/livekomp/fb/beat"]
    # 0.7 s at 20 snapshots a second: 14 at most (+ slack for a late timer), not 100.
    assert 2 <= len(beats) <= 17
