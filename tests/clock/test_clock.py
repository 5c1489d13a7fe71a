import pytest
import trio

from livekomp.clock.clock import MasterClock, TempoMap, check_bpm


class FakeTime:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_constant_map_round_trips() -> None:
    tempo_map = TempoMap.constant(120, origin_s=10.0)
    assert tempo_map.time_at(0) == 10.0
    assert tempo_map.time_at(4) == 12.0
    for beat in (0.0, 0.25, 3.5, 17.125):
        assert tempo_map.beat_at(tempo_map.time_at(beat)) == pytest.approx(beat)


def test_with_tempo_changes_from_its_beat_only() -> None:
    tempo_map = TempoMap.constant(120).with_tempo(60, from_beat=4)
    assert tempo_map.time_at(2) == 1.0  # before the change: untouched
    assert tempo_map.time_at(4) == 2.0
    assert tempo_map.time_at(6) == 4.0  # one second a beat afterwards
    assert tempo_map.beat_at(3.0) == pytest.approx(5.0)
    assert tempo_map.bpm_at(3.9) == 120 and tempo_map.bpm_at(4) == 60
    for beat in (1.0, 4.0, 9.75):
        assert tempo_map.beat_at(tempo_map.time_at(beat)) == pytest.approx(beat)


def test_with_tempo_drops_later_segments_and_merges_equal_tempo() -> None:
    tempo_map = TempoMap.constant(120).with_tempo(90, 8).with_tempo(60, 4)
    assert [s.bpm for s in tempo_map.segments] == [120, 60]
    assert TempoMap.constant(120).with_tempo(120, 4).segments == TempoMap.constant(120).segments


@pytest.mark.parametrize("bpm", [0, 10, 1000, float("nan"), float("inf")])
def test_bad_tempo_is_rejected(bpm: float) -> None:
    with pytest.raises(ValueError, match="BPM"):
        check_bpm(bpm)


def test_set_tempo_takes_effect_at_next_whole_beat() -> None:
    now = FakeTime()
    clock = MasterClock(120, now_s=now)
    changes: list[float] = []
    clock.add_listener(lambda: changes.append(now.now_s))
    clock.start()
    now.now_s = 1.25  # beat 2.5
    assert clock.current_beat() == pytest.approx(2.5)
    assert clock.set_tempo(60) == 3.0
    assert clock.time_at(3) == pytest.approx(1.5)
    assert clock.time_at(4) == pytest.approx(2.5)
    assert clock.bpm == 120  # still in the old tempo until beat 3
    assert changes == [0.0, 1.25]


def test_stopped_clock_has_no_map_and_keeps_its_tempo() -> None:
    now = FakeTime()
    clock = MasterClock(100, now_s=now)
    with pytest.raises(RuntimeError):
        _ = clock.tempo_map
    assert clock.set_tempo(150) == 0.0
    now.now_s = 5.0
    clock.start()
    assert clock.time_at(1) == pytest.approx(5.4)
    clock.stop()
    assert not clock.running
    assert clock.bpm == 150


async def test_sleep_until_beat_wakes_at_its_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    clock = MasterClock(120, now_s=trio.current_time)
    clock.start()
    start_s = trio.current_time()
    await clock.sleep_until_beat(4)
    assert trio.current_time() - start_s == pytest.approx(2.0, abs=1e-9)
    await clock.sleep_until_beat(1)  # already past: returns at once
    assert trio.current_time() - start_s == pytest.approx(2.0, abs=1e-9)


async def test_sleep_until_beat_replans_on_tempo_change(autojump_clock: trio.abc.Clock) -> None:
    clock = MasterClock(120, now_s=trio.current_time)
    clock.start()
    start_s = trio.current_time()
    woke_s: list[float] = []

    async def sleeper() -> None:
        await clock.sleep_until_beat(8)
        woke_s.append(trio.current_time() - start_s)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await clock.sleep_until_beat(1.5)
        assert clock.set_tempo(60) == 2.0
    # beats 0..2 at 0.5 s, then 6 beats at 1 s
    assert woke_s == [pytest.approx(7.0, abs=1e-9)]


def test_lock_follows_a_master_and_skips_shifts_too_small_to_matter() -> None:
    now = FakeTime()
    clock = MasterClock(120, now_s=now)
    changes: list[float] = []
    clock.add_listener(lambda: changes.append(clock.tempo_map.time_at(1.0)))
    assert clock.lock(0.0, 10.0, 100.0)  # starts the clock: beat 0 at 10 s, 0.6 s a beat
    assert clock.running and clock.time_at(2.0) == pytest.approx(11.2)
    # The next tick's fit moves beat 1 by 10 µs: not published.
    assert not clock.lock(1 / 24, 10.025 + 10e-6, 100.0, min_shift_s=20e-6)
    assert clock.lock(1 / 24, 10.025 + 50e-6, 100.0, min_shift_s=20e-6)
    assert len(changes) == 2
    assert clock.time_at(1.0) == pytest.approx(10.6 + 50e-6)
