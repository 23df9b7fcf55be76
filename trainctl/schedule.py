"""When the next train leaves: the stack's EventBridge Scheduler expression (parameters ScheduleExpression,
ScheduleTimezone, ScheduleState) evaluated with croniter.

EventBridge Scheduler's cron has six fields, `cron(minutes hours day-of-month month day-of-week year)`, with `?` in one
of the two day fields, day-of-week 1-7 = SUN-SAT, `L`, `W` and `#` (EventBridge Scheduler user guide, "Schedule types":
cron-based schedules). croniter reads a seven-field form, `minute hour day month day-of-week second year`, with
day-of-week 0-6 = SUN-SAT, `?` as `*`, `L<n>` for "the last <n>-day" and `<n>#<k>`. The conversion below maps only the
day-of-week numbers (and `<n>L`, Quartz's "last <n>-day", to croniter's `L<n>`); what croniter cannot evaluate
(`LW`) is refused with a reason rather than guessed.

Daylight saving time, as the Scheduler documents it: a time the clock skips in spring does not fire, and a time the
clock repeats in autumn fires once. croniter is therefore run on wall-clock (naive) times in the schedule's zone, and
a wall time that does not exist there is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]
from croniter.croniter import CroniterBadDateError, CroniterError  # type: ignore[import-untyped]

_DAY_NAMES = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}


class ScheduleError(ValueError):
    """The expression cannot be evaluated: what and why."""


@dataclass(frozen=True)
class NextTrain:
    expression: str
    timezone: str
    state: str
    next_fire: datetime | None  # aware, in the schedule's zone; None: see `note`
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "expression": self.expression,
            "timezone": self.timezone,
            "state": self.state,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "next_fire_utc": self.next_fire.astimezone(UTC).isoformat() if self.next_fire else None,
            "note": self.note,
        }


def _day_of_week_value(value: str) -> str:
    """One AWS day-of-week value (1-7 = SUN-SAT, or a name) as croniter's (0-6 = SUN-SAT, or the name)."""
    if value.upper() in _DAY_NAMES:
        return value.upper()
    if not value.isdigit() or not 1 <= int(value) <= 7:
        raise ScheduleError(f"day-of-week value {value!r}: expected 1-7 (SUN-SAT) or SUN-SAT")
    return str(int(value) - 1)


def _day_of_week(field: str) -> str:
    if field in {"?", "*"}:
        return "*"
    items = []
    for raw in field.split(","):
        item, slash, rest = raw.partition("/")
        step = slash + rest
        if item == "L":  # alone: the last day of the week, Saturday
            items.append("6" + step)
        elif m := re.fullmatch(r"(\w+)L", item):  # Quartz/AWS: the last <day> of the month
            items.append("L" + _day_of_week_value(m.group(1)))
        elif m := re.fullmatch(r"(\w+)#([1-5])", item):
            items.append(f"{_day_of_week_value(m.group(1))}#{m.group(2)}")
        elif m := re.fullmatch(r"(\w+)-(\w+)", item):
            items.append(f"{_day_of_week_value(m.group(1))}-{_day_of_week_value(m.group(2))}{step}")
        elif item == "*":
            items.append("*" + step)
        else:
            items.append(_day_of_week_value(item) + step)
    return ",".join(items)


def to_croniter(expression: str) -> str:
    """`cron(m h dom mon dow year)` as croniter's seven fields (`m h dom mon dow second year`)."""
    m = re.fullmatch(r"\s*cron\((.*)\)\s*", expression)
    if not m:
        raise ScheduleError(f"{expression!r} is not a cron(...) expression")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(
            f"{expression!r}: EventBridge Scheduler cron has 6 fields (minutes hours day-of-month month "
            f"day-of-week year), this has {len(fields)}"
        )
    minute, hour, dom, month, dow, year = fields
    if "LW" in dom.upper():
        raise ScheduleError(f"{expression!r}: 'LW' (last weekday of the month) cannot be evaluated here")
    dom = "*" if dom == "?" else dom
    return f"{minute} {hour} {dom} {month} {_day_of_week(dow)} 0 {year}"


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    """False for a wall time the clock skips in the zone (spring forward)."""
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def next_fire(expression: str, timezone: str, now: datetime) -> datetime | None:
    """The first time after `now` (aware) the schedule fires, in its zone; None when it never fires again.
    Raises ScheduleError when the expression cannot be evaluated (rate(...) among them: it counts from when the
    schedule was created, which its expression does not say)."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"time zone {timezone!r} is not an IANA zone name") from exc
    text = expression.strip()
    if at := re.fullmatch(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)", text):
        once = datetime.fromisoformat(at.group(1)).replace(tzinfo=zone)
        return once if once > now else None
    if text.startswith("rate("):
        raise ScheduleError(f"{text}: a rate schedule counts from its creation time; its next firing is not known here")
    converted = to_croniter(text)
    start = now.astimezone(zone).replace(tzinfo=None)
    try:
        times = croniter(converted, start)
        for _ in range(10_000):  # skipped wall times are rare; the bound only guards against a defect
            wall: datetime = times.get_next(datetime)
            if not _exists(wall, zone):
                continue
            aware = wall.replace(tzinfo=zone)  # fold=0: the first of a repeated autumn hour, which fires once
            if aware > now:
                return aware
    except CroniterBadDateError:
        return None  # e.g. a year field wholly in the past
    except (CroniterError, ValueError, KeyError) as exc:
        raise ScheduleError(f"{expression!r}: {exc}") from exc
    return None


def next_train(parameters: dict[str, str], now: datetime) -> NextTrain:
    """From the stack's parameters (template.yaml defaults when a parameter is absent)."""
    expression = parameters.get("ScheduleExpression") or "cron(0 9 ? * MON *)"
    timezone = parameters.get("ScheduleTimezone") or "UTC"
    state = parameters.get("ScheduleState") or "ENABLED"
    if state != "ENABLED":
        return NextTrain(expression, timezone, state, None, f"the schedule is {state}: no train leaves on its own")
    try:
        when = next_fire(expression, timezone, now)
    except ScheduleError as exc:
        return NextTrain(expression, timezone, state, None, str(exc))
    return NextTrain(expression, timezone, state, when, "" if when else "no future time matches the expression")
