"""The event-driven virtual clock: time moves only when every participant waits, whatever the CPU does."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from trainctl.sandbox import vtime
from trainctl.sandbox.vtime import PERSON, Scheduler, VEvent, VThread

START = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[Scheduler]:
    scheduler = Scheduler(START)
    vtime.activate(scheduler)
    yield scheduler
    vtime.activate(None)
    scheduler.close()


def _run(clock: Scheduler, *targets: object) -> None:
    with clock.holding():  # the world starts all at once
        for i, target in enumerate(targets):
            vtime.spawn(target, f"t{i}")  # type: ignore[arg-type]
    clock.wait_idle(real_timeout=60)


def test_given_parallel_sleeps_when_they_end_then_the_clock_shows_the_latest_end_not_the_sum(clock: Scheduler) -> None:
    ends: list[float] = []
    _run(clock, *[lambda d=d: (clock.sleep(d), ends.append(clock.elapsed)) for d in (300, 120, 300, 60)])
    assert sorted(ends) == [60, 120, 300, 300]
    assert clock.elapsed == 300


def test_given_compute_between_waits_when_the_cpu_is_slow_then_virtual_time_does_not_move(clock: Scheduler) -> None:
    seen: list[float] = []

    def busy_then_wait() -> None:
        digest = b""
        for i in range(20000):  # real compute: takes real time, never virtual time
            digest = hashlib.sha256(digest + str(i).encode()).digest()
        seen.append(clock.elapsed)
        clock.sleep(10)
        seen.append(clock.elapsed)

    def sleeper() -> None:
        clock.sleep(5)
        seen.append(clock.elapsed)

    _run(clock, busy_then_wait, sleeper)
    assert seen == [0.0, 5.0, 10.0]  # the sleeper's 5 s could not pass while the other thread computed


def test_given_a_person_and_a_machine_due_at_the_same_instant_then_the_machine_settles_first(clock: Scheduler) -> None:
    order: list[str] = []

    def machine() -> None:
        clock.sleep(60)
        order.append("build ended")
        vtime.spawn(lambda: order.append("follow-up work"), "follow-up")

    def person() -> None:
        clock.sleep(60, PERSON)
        order.append("operator acted")

    _run(clock, person, machine)
    assert order == ["build ended", "follow-up work", "operator acted"]


def test_given_two_people_due_together_then_they_act_one_at_a_time_in_the_order_scheduled(clock: Scheduler) -> None:
    order: list[str] = []

    def person(name: str) -> None:
        order.append(f"{name} starts")
        vtime.spawn(lambda: order.append(f"{name}'s effect"), f"{name}-effect")

    with clock.holding():
        for name in ("first", "second", "third"):
            clock.schedule(0, lambda name=name: person(name), name)
    clock.wait_idle(real_timeout=60)
    assert order == [
        "first starts",
        "first's effect",
        "second starts",
        "second's effect",
        "third starts",
        "third's effect",
    ]


def test_given_a_waiter_when_the_event_is_pulsed_then_it_wakes_at_that_instant(clock: Scheduler) -> None:
    event = VEvent()
    woke: list[tuple[bool, float]] = []

    def waiter() -> None:
        woke.append((event.wait(86400), clock.elapsed))

    def stopper() -> None:
        clock.sleep(30)
        event.set()
        event.clear()  # moto pulses program_state_event

    _run(clock, waiter, stopper)
    assert woke == [(True, 30.0)]


def test_given_a_condition_changed_before_the_wait_when_unless_is_given_then_the_wait_does_not_block(
    clock: Scheduler,
) -> None:
    stopped = {"now": True}
    results: list[bool] = []
    _run(clock, lambda: results.append(VEvent().wait(86400, unless=lambda: stopped["now"])))
    assert results == [True]
    assert clock.elapsed == 0


def test_given_a_timeout_when_nobody_sets_the_event_then_the_wait_ends_at_the_deadline(clock: Scheduler) -> None:
    results: list[tuple[bool, float]] = []
    _run(clock, lambda: results.append((VEvent().wait(3600), clock.elapsed)))
    assert results == [(False, 3600.0)]


def test_given_a_thread_join_with_a_timeout_when_the_thread_outlives_it_then_join_returns_at_the_timeout(
    clock: Scheduler,
) -> None:
    seen: list[tuple[bool, float]] = []

    def parent() -> None:
        child = VThread(target=lambda: clock.sleep(7200), name="child")
        child.start()
        child.join(timeout=60)
        seen.append((child.is_alive(), clock.elapsed))
        child.join()
        seen.append((child.is_alive(), clock.elapsed))

    _run(clock, parent)
    assert seen == [(True, 60.0), (False, 7200.0)]


def test_given_everyone_waits_without_a_deadline_then_the_world_is_idle_with_blocked_threads(clock: Scheduler) -> None:
    forever = VEvent()
    vtime.spawn(forever.wait, "stuck")
    clock.wait_idle(real_timeout=60)
    assert clock.blocked_threads() == ["stuck"]
    forever.set()  # a non-participant (this test) may wake it
    clock.wait_idle(real_timeout=60)
    assert clock.blocked_threads() == []


def test_given_a_non_participant_waiting_then_it_does_not_hold_the_clock(clock: Scheduler) -> None:
    done = VEvent()
    vtime.spawn(lambda: (clock.sleep(100), done.set()), "worker")
    assert done.wait(timeout=None) is True  # this test's thread waits, uncounted
    assert clock.elapsed == 100


def test_given_a_busy_machine_beside_it_when_the_same_world_runs_twice_then_the_timeline_is_identical(
    clock: Scheduler,
) -> None:
    def world(log: list[tuple[float, str]]) -> None:
        now = vtime.current()

        def build(name: str, minutes: int) -> None:
            now.sleep(minutes * 60)
            log.append((now.elapsed, name))

        threads = [VThread(target=build, args=(f"svc{i}", 6 + i % 3), name=f"svc{i}") for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.append((now.elapsed, "wave done"))

    noise_stop = threading.Event()

    def noise() -> None:  # a CPU hog beside the world (not a participant)
        x = 0
        while not noise_stop.is_set():
            x += 1

    hog = threading.Thread(target=noise, daemon=True)
    hog.start()
    try:
        first: list[tuple[float, str]] = []
        _run(clock, lambda: world(first))
        second_clock = Scheduler(START)
        vtime.activate(second_clock)
        second: list[tuple[float, str]] = []
        vtime.spawn(lambda: world(second), "again")
        second_clock.wait_idle(real_timeout=60)
    finally:
        noise_stop.set()
    assert sorted(first) == sorted(second)
    assert first[-1] == (480.0, "wave done")


def test_given_a_pace_when_a_deadline_is_far_then_it_comes_due_no_earlier_than_the_wall_clock_allows() -> None:
    paced = Scheduler(START, pace=1000.0)  # 1000 virtual seconds per wall second
    vtime.activate(paced)
    try:
        vtime.spawn(lambda: paced.sleep(60), "sleeper")
        paced.wait_idle(real_timeout=60)
        assert paced.elapsed == 60
    finally:
        vtime.activate(None)
        paced.close()
