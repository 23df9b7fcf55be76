"""Event-driven virtual time: the sandbox's clock moves only when every participant waits.

A *participant* is a thread that does the world's work: moto's interpreter threads, emulated builds and deployments,
hook invocations, scripted people. Each is a `VThread`, and every way it can block on another participant is one of
this module's primitives (`VEvent`, `VCondition`, `VThread.join`, `Scheduler.sleep`). The scheduler counts the
participants that are running; when the count reaches zero, nothing can happen any more without time passing, so
it moves the clock to the earliest pending deadline and wakes whoever waits for it. Compute therefore takes no
virtual time, and how busy the machine is cannot change what happens: a 6-minute build ends after every other
participant finished what it does at the same instant, whether the CPU is idle or saturated.

Three rules keep the count exact:
- the waker counts the woken thread as running before it wakes it (no gap in which the count is wrongly zero);
- a new thread is counted by its creator, before it starts;
- people (scripted approvers, operators) wake at their deadline only after the machines due at the same instant
  settled, one person at a time, in the order they were scheduled: a person acts on a world that stands still.

Threads that are not participants (the CLI's main thread, a loopback HTTP server, an HTTP client of
`sandbox serve`) may wait on these primitives too; they are not counted, so they never hold the clock.

With `pace` set (virtual seconds per wall second), deadlines come due no earlier than the wall clock allows, so a
train can be watched and operated from outside (`trainctl sandbox serve`); without it the clock jumps.

moto's interpreter and the hook code use `threading`/`time` as module globals; `swap()` points those globals at the
shims below for the duration of a simulation (see moto_fixes), so their own waits become virtual.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import sys
import threading
import time as _real_time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

MACHINE = 0  # due work of the world: builds ending, waits expiring, retries
PERSON = 1  # scripted people: act after the machines due at the same instant settled, one at a time


class HeldLock:
    """A re-entrant lock that a thread gives up while it waits in virtual time and takes back when it wakes.

    For work that must be atomic as AWS makes it (moto's request dispatch: a conditional write), done by threads that
    may wait for virtual time in the middle of it (an in-process Lambda sleeping through a Retry-After): holding a real
    lock through a virtual wait would stop every other participant, and the clock with them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> HeldLock:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
        else:
            self._lock.acquire()
            self._owner, self._depth = me, 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    def suspend(self) -> int:
        """Release it entirely if this thread holds it; the depth to restore."""
        if self._owner != threading.get_ident():
            return 0
        depth, self._depth, self._owner = self._depth, 0, None
        self._lock.release()
        return depth

    def restore(self, depth: int) -> None:
        if depth:
            self._lock.acquire()
            self._owner, self._depth = threading.get_ident(), depth


held_locks: list[HeldLock] = []  # given up around every virtual wait (see Scheduler._block)


class SandboxStalled(RuntimeError):
    """Every participant waits for something that has no deadline and nobody will cause: the world cannot move."""


class _Waiter:
    __slots__ = ("counted", "deadline", "reason", "sources", "wake", "woken")

    def __init__(self, counted: bool) -> None:
        self.wake = threading.Event()
        self.woken = False
        self.reason = ""
        self.sources: tuple[VEvent, ...] = ()
        self.counted = counted
        self.deadline: float | None = None


class Scheduler:
    """The virtual clock and the participant count. One per simulation; `activate()` makes it current."""

    def __init__(self, start: datetime, pace: float | None = None) -> None:
        self.start = start.astimezone(UTC)
        self.pace = pace
        self._lock = threading.Lock()
        self._now = 0.0  # virtual seconds since start
        self._running = 0
        self._timers: list[tuple[float, int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._threads: set[VThread] = set()
        self._changed = threading.Condition(self._lock)  # quiescence and thread ends, for non-participants
        self._wall_origin = _real_time.monotonic()
        self._virtual_origin = 0.0
        self._pacer: threading.Thread | None = None
        self._closed = False
        self._paused = 0  # run_until: a non-participant holding the clock at a moment it asked for
        if pace is not None:
            self._pacer = threading.Thread(target=self._pace_loop, name="vtime-pacer", daemon=True)
            self._pacer.start()

    # --- reading the clock --------------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the start."""
        return self._now

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._now)

    # --- waiting ------------------------------------------------------------------------------------------------

    def sleep(self, seconds: float, klass: int = MACHINE) -> None:
        """Let `seconds` of virtual time pass for this thread. People (`PERSON`) may sleep 0 to act 'now', once the
        machines due now have settled."""
        if seconds <= 0 and klass == MACHINE:
            return
        self.wait_any((), max(seconds, 0.0), klass)

    def wait_any(
        self,
        events: Iterable[VEvent],
        timeout: float | None,
        klass: int = MACHINE,
        unless: Callable[[], bool] | None = None,
    ) -> bool:
        """Block until one of `events` is set (True) or `timeout` virtual seconds passed (False).

        `unless` is checked after this waiter is registered and before it blocks, under the scheduler's lock: a
        condition another participant changes just before it sets an event (a stop before the pulse of moto's
        program_state_event) is then never missed.
        """
        sources = tuple(events)
        with self._lock:
            if any(e._flag for e in sources):
                return True
            if unless is not None and unless():
                return True
            waiter = self._register(sources, timeout, klass, counted=_is_participant(self))
        return self._block(waiter)

    def schedule(self, delay: float, target: Callable[[], object], name: str, klass: int = PERSON) -> VThread:
        """Run `target` in a new participant after `delay` virtual seconds. The deadline is taken now, in the
        caller's thread, so people scheduled for the same instant act in the order they were scheduled."""
        with self._lock:
            waiter = self._register((), max(delay, 0.0), klass, counted=True)

        def run() -> None:
            self._block(waiter)
            target()

        return spawn(run, name)

    def _register(self, sources: tuple[VEvent, ...], timeout: float | None, klass: int, counted: bool) -> _Waiter:
        waiter = _Waiter(counted=counted)
        waiter.sources = sources
        for event in sources:
            event._waiters.append(waiter)
        if timeout is not None:
            waiter.deadline = self._now + timeout
            heapq.heappush(self._timers, (waiter.deadline, klass, next(self._seq), waiter))
        return waiter

    def _block(self, waiter: _Waiter) -> bool:
        with self._lock:
            if waiter.counted:
                self._running -= 1  # a waiter woken before it blocked was counted again by its waker
            self._settle()
        depths = [lock.suspend() for lock in held_locks]
        try:
            waiter.wake.wait()
        finally:
            for lock, depth in zip(held_locks, depths, strict=True):
                lock.restore(depth)
        return waiter.reason == "set"

    # --- internals (all under self._lock) ------------------------------------------------------------------------

    def _wake(self, waiter: _Waiter, reason: str) -> None:
        if waiter.woken:
            return
        waiter.woken, waiter.reason = True, reason
        for event in waiter.sources:
            with contextlib.suppress(ValueError):
                event._waiters.remove(waiter)
        if waiter.counted:
            self._running += 1
        waiter.wake.set()

    def _settle(self) -> None:
        """Nobody may be running: move time to the next deadline and wake what is due (instant mode)."""
        if self._running <= self._paused:
            self._changed.notify_all()  # quiet: wait_quiet() may return
        if self._running > 0:
            return
        if self.pace is not None:
            return  # the pacer advances when the wall clock allows
        # A woken participant makes the count positive and ends the loop; a woken non-participant does not.
        while self._running == 0 and self._fire_next():
            pass

    def _next_timer(self) -> tuple[float, int, int, _Waiter] | None:
        while self._timers and self._timers[0][3].woken:
            heapq.heappop(self._timers)
        return self._timers[0] if self._timers else None

    def _fire_next(self) -> bool:
        head = self._next_timer()
        if head is None:
            return False
        deadline, klass, _, _ = head
        self._now = max(self._now, deadline)
        if klass == PERSON:
            self._wake(heapq.heappop(self._timers)[3], "timeout")
            return True
        # Every machine due at this instant wakes together (like builds that end in the same second).
        while self._timers and self._timers[0][0] <= deadline and self._timers[0][1] == MACHINE:
            self._wake(heapq.heappop(self._timers)[3], "timeout")
            self._next_timer()
        return True

    def _pace_loop(self) -> None:
        assert self.pace is not None
        with self._lock:
            while not self._closed:
                head = self._next_timer() if self._running == 0 else None
                if head is None:
                    self._changed.wait()
                    continue
                due_wall = self._wall_origin + (head[0] - self._virtual_origin) / self.pace
                delay = due_wall - _real_time.monotonic()
                if delay > 0:
                    self._changed.wait(min(delay, 1.0))
                    continue
                self._fire_next()
                self._wall_origin, self._virtual_origin = _real_time.monotonic(), self._now

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """A non-participant acts (sets up the world, serves an API call): no time passes until it is done."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self._settle()

    def run_until(self, seconds: float) -> None:
        """A non-participant (a test, an operator's console): let the world run until `seconds` of virtual time and
        hold it there, with everything due at that instant settled, until `resume()`."""
        with self._lock:
            waiter = self._register((), max(seconds - self._now, 0.0), MACHINE, counted=True)
            self._paused += 1
            self._settle()
        waiter.wake.wait()
        self.wait_quiet()

    def wait_quiet(self) -> None:
        """Non-participant: wait until nothing but the holders themselves runs."""
        with self._lock:
            while self._running > self._paused:
                self._changed.wait(5.0)

    def resume(self) -> None:
        with self._lock:
            self._running -= self._paused
            self._paused = 0
            self._settle()

    # --- threads ------------------------------------------------------------------------------------------------

    def _thread_started(self, thread: VThread) -> None:
        with self._lock:
            self._running += 1
            self._threads.add(thread)

    def _thread_failed_to_start(self, thread: VThread) -> None:
        with self._lock:
            self._running -= 1
            self._threads.discard(thread)
            self._settle()

    def _thread_ended(self, thread: VThread) -> None:
        with self._lock:
            thread._done._flag = True
            for waiter in list(thread._done._waiters):
                self._wake(waiter, "set")
            self._threads.discard(thread)
            self._running -= 1
            self._changed.notify_all()
            self._settle()

    # --- for the non-participant that drives a simulation ---------------------------------------------------------

    def wait_idle(self, real_timeout: float = 900.0) -> None:
        """Return once nothing runs and nothing is due: every participant ended or waits without a deadline.
        A clock held by `run_until` is resumed first.

        `real_timeout` is a hang guard for a sandbox defect (an un-instrumented wait), not a behaviour: no outcome
        depends on it. On expiry the participants' stacks are raised with the error."""
        self.resume()
        end = _real_time.monotonic() + real_timeout
        with self._lock:
            while self._running > 0 or self._next_timer() is not None:
                left = end - _real_time.monotonic()
                if left <= 0:
                    raise SandboxStalled("the sandbox made no progress in time:\n" + self._describe_threads())
                self._changed.wait(min(left, 5.0))

    def blocked_threads(self) -> list[str]:
        with self._lock:
            return sorted(t.name for t in self._threads)

    def _describe_threads(self) -> str:
        frames = sys._current_frames()
        lines = [f"running={self._running} now={self._now:.1f}s timers={len(self._timers)}"]
        for thread in sorted(self._threads, key=lambda t: t.name):
            frame = frames.get(thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)[-4:]) if frame else "  (no frame)\n"
            lines.append(f"- {thread.name}\n{stack}")
        return "\n".join(lines)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()


# --- the primitives ---------------------------------------------------------------------------------------------

_current: Scheduler | None = None


def current() -> Scheduler:
    if _current is None:
        raise RuntimeError("no virtual clock is active (trainctl.sandbox.vtime.activate)")
    return _current


def active() -> Scheduler | None:
    return _current


def activate(scheduler: Scheduler | None) -> None:
    global _current
    _current = scheduler


def _is_participant(scheduler: Scheduler) -> bool:
    thread = threading.current_thread()
    return isinstance(thread, VThread) and thread._scheduler is scheduler


class VEvent:
    """`threading.Event` in virtual time. `set()` wakes every current waiter, so moto's pulse (`set(); clear()`)
    wakes the waiters of that moment, as it does with real events."""

    def __init__(self) -> None:
        self._scheduler = current()
        self._flag = False
        self._waiters: list[_Waiter] = []

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        s = self._scheduler
        with s._lock:
            self._flag = True
            for waiter in list(self._waiters):
                s._wake(waiter, "set")

    def clear(self) -> None:
        with self._scheduler._lock:
            self._flag = False

    def wait(self, timeout: float | None = None, unless: Callable[[], bool] | None = None) -> bool:
        if self._scheduler.wait_any((self,), timeout, unless=unless):
            return True
        return self._flag


class VCondition:
    """`threading.Condition` in virtual time (the lock itself is real: it is only ever held for moments)."""

    def __init__(self, lock: Any = None) -> None:
        self._lock = lock if lock is not None else threading.RLock()
        self._waiting: list[VEvent] = []
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def wait(self, timeout: float | None = None) -> bool:
        event = VEvent()
        self._waiting.append(event)
        saved = self._lock._release_save() if hasattr(self._lock, "_release_save") else self._lock.release()
        try:
            return event.wait(timeout)
        finally:
            if hasattr(self._lock, "_acquire_restore"):
                self._lock._acquire_restore(saved)
            else:
                self._lock.acquire()
            with contextlib.suppress(ValueError):
                self._waiting.remove(event)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        result = predicate()
        while not result:
            if not self.wait(timeout) and timeout is not None:
                return predicate()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        for event in self._waiting[:n]:
            event.set()
        del self._waiting[:n]

    def notify_all(self) -> None:
        self.notify(len(self._waiting))


class VThread(threading.Thread):
    """A participant. Counted as running from `start()` (by its creator) until its target returns."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs, daemon=True if daemon is None else daemon)
        self._scheduler = current()
        self._done = VEvent()

    def start(self) -> None:
        self._scheduler._thread_started(self)
        try:
            super().start()
        except BaseException:
            self._scheduler._thread_failed_to_start(self)
            raise

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._scheduler._thread_ended(self)

    def join(self, timeout: float | None = None) -> None:
        if self._done.wait(timeout):
            super().join()  # it has only its last bookkeeping left: no virtual time passes

    def is_alive(self) -> bool:
        return not self._done.is_set() and super().is_alive()


def spawn(target: Callable[[], object], name: str) -> VThread:
    thread = VThread(target=target, name=name, daemon=True)
    thread.start()
    return thread


# --- module shims for code that uses `threading` / `time` as globals ---------------------------------------------


class _Shim(types.ModuleType):
    def __init__(self, name: str, real: types.ModuleType, overrides: dict[str, Any]) -> None:
        super().__init__(name)
        self._real = real
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _virtual_monotonic() -> float:
    return current().elapsed


def _virtual_time() -> float:
    return current().now().timestamp()


threading_shim = _Shim(
    "vtime.threading", threading, {"Thread": VThread, "Event": VEvent, "Condition": VCondition, "Timer": None}
)
time_shim = _Shim(
    "vtime.time",
    _real_time,
    {
        "sleep": lambda seconds: current().sleep(seconds),
        "monotonic": _virtual_monotonic,
        "time": _virtual_time,
        "perf_counter": _virtual_monotonic,
    },
)


@contextlib.contextmanager
def swapped(targets: dict[Any, dict[str, Any]]) -> Iterator[None]:
    """Point module globals at the shims for a while: {module: {global name: replacement}}."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for module, names in targets.items():
            for name, replacement in names.items():
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)
