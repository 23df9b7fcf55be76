"""The sandbox's virtual clock: overlapping waits, people acting in no virtual time, stopped waiters."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from trainctl.sandbox.clock import VirtualClock

START = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_given_parallel_waits_when_they_end_then_the_clock_shows_the_latest_end_not_the_sum() -> None:
    # 0.3 s of real time each, so all ten have begun long before the first ends
    clock = VirtualClock(START, scale=1e-3)
    threads = [threading.Thread(target=clock.sleep, args=(300,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.elapsed == 300


def test_given_a_person_acting_when_a_wait_comes_due_then_it_ends_only_after_they_are_done() -> None:
    clock = VirtualClock(START, scale=1e-6)
    acted_at: list[float] = []
    with clock.hold():
        waiter = threading.Thread(target=clock.sleep, args=(1800,))
        waiter.start()
        waiter.join(timeout=0.2)  # its real time (1.8 ms) is long up
        acted_at.append(clock.elapsed)
        assert waiter.is_alive()  # held back while the person acts
    waiter.join()
    assert acted_at == [0.0]
    assert clock.elapsed == 1800


def test_given_a_waiter_stopped_meanwhile_when_its_time_is_up_then_the_clock_does_not_move() -> None:
    clock = VirtualClock(START, scale=1e-6)
    assert clock.sleep(1800, still_waiting=lambda: False) is False
    assert clock.elapsed == 0


def test_given_an_interrupt_when_waiting_then_the_wait_ends_early_and_the_clock_stays() -> None:
    clock = VirtualClock(START, scale=1.0)
    interrupt = threading.Event()
    threading.Timer(0.05, interrupt.set).start()
    assert clock.sleep(3600, interrupt) is False
    assert clock.elapsed == 0
