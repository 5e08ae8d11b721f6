"""Property tests for schedules (SPEC 4.3): the SQL agrees with croniter, a well-kept cron library.

* ``prebuilds.cron_matches(expression, zone, instant)`` gives croniter's answer for random valid
  expressions, IANA time zones (with and without daylight saving time, with half-hour and
  45-minute offsets) and instants, many of them close to DST transitions and to hour boundaries.
* ``prebuilds.cron_expression_error`` accepts every expression of the grammar (null) and rejects
  (non-null, never an exception) every invalid mutation of one.

Where croniter differs from SPEC 4.3 the SPEC wins, and the oracle below is adjusted, not the SQL:

1. croniter reads a range whose two ends are equal, written ``5-5``, as the whole field (its
   documented choice: "Jan-Jan" means every month). SPEC 4.3 says a range ``a-b``, so ``5-5`` is
   just 5, as in Vixie cron. The oracle rewrites ``a-a`` to ``a`` before asking croniter.
2. croniter given a zone-aware datetime reconstructs the previous match across a DST gap: in the
   first minute after clocks spring forward (03:00:xx PDT on 9 March 2025), ``* 2 * * *`` matches,
   although hour 2 never happened that night. SPEC 4.3 reads the expression in the preset's time
   zone: what counts is the local wall-clock hour of the instant. The oracle therefore gives
   croniter the local wall-clock time (naive), which is exactly that reading and also what it
   does at the repeated hour of a fall-back night (both 01:xx match ``* 1 * * *``).
   ``test_croniter_aware_dst_artifact`` pins the difference.

Minute is always ``*``, so croniter's minute granularity loses nothing: within a matching hour
every minute matches.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ZONES = (
    "UTC",
    "America/Los_Angeles",
    "America/New_York",
    "America/St_Johns",  # UTC-3:30, with DST
    "America/Sao_Paulo",  # DST abolished in 2019
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",  # "negative DST" in the tz database: winter is the DST period
    "Australia/Sydney",  # southern hemisphere: DST from October to April
    "Australia/Lord_Howe",  # DST shifts by 30 minutes
    "Asia/Kathmandu",  # UTC+5:45
    "Asia/Kolkata",  # UTC+5:30
    "Asia/Tokyo",
    "Pacific/Auckland",
    "Pacific/Chatham",  # UTC+12:45 / +13:45
)

EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
LATEST = datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)

# Field bounds: hour, day of month, month, day of week (7 is Sunday too).
BOUNDS = ((0, 23), (1, 31), (1, 12), (0, 7))

PROPERTY_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@cache
def dst_transitions(zone: str) -> tuple[datetime, ...]:
    """The instants (UTC, to the second) at which the zone's UTC offset changes in 2025-2026."""
    tz = ZoneInfo(zone)
    step = timedelta(hours=6)
    found = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    while t < datetime(2027, 1, 1, tzinfo=UTC):
        before = t.astimezone(tz).utcoffset()
        if (t + step).astimezone(tz).utcoffset() != before:
            low, high = t, t + step
            while high - low > timedelta(seconds=1):
                middle = (low + (high - low) / 2).replace(microsecond=0)
                if middle.astimezone(tz).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            found.append(high)
        t += step
    return tuple(found)


# Expressions ------------------------------------------------------------------------------------


def items(low: int, high: int) -> st.SearchStrategy[str]:
    """One list item: a number or a range a-b (a <= b; a-a included) within the bounds."""
    number = st.integers(low, high).map(str)
    span = st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda ab: f"{min(ab)}-{max(ab)}"
    )
    return st.one_of(number, span)


def fields(low: int, high: int) -> st.SearchStrategy[str]:
    """A field: `*`, or a comma list of numbers and ranges."""
    return st.one_of(st.just("*"), st.lists(items(low, high), min_size=1, max_size=4).map(",".join))


SEPARATOR = st.lists(st.sampled_from([" ", "\t"]), min_size=1, max_size=3).map("".join)
PADDING = st.lists(st.sampled_from([" ", "\t", "\n"]), max_size=2).map("".join)


FIELD_LISTS: st.SearchStrategy[list[str]] = st.tuples(
    *(fields(low, high) for low, high in BOUNDS)
).map(lambda four: ["*", *four])


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A valid schedule: `* HOUR DOM MONTH DOW`, fields separated by spaces or tabs, possibly
    padded with whitespace."""
    parts = draw(FIELD_LISTS)
    text = parts[0]
    for part in parts[1:]:
        text += draw(SEPARATOR) + part
    return draw(PADDING) + text + draw(PADDING)


def for_croniter(expression: str) -> str:
    """The expression as croniter must be given it to mean what SPEC 4.3 says: `a-a` is `a`
    (croniter reads an equal range as the whole field; see the module docstring)."""
    return re.sub(r"\b(\d+)-\1\b", r"\1", expression)


def croniter_matches(expression: str, zone: str, instant: datetime) -> bool:
    """croniter's answer for the local wall-clock time of the instant in the zone."""
    wall_clock = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return bool(croniter.match(for_croniter(expression), wall_clock))


# Instants ---------------------------------------------------------------------------------------

UNIFORM = st.integers(int(EARLIEST.timestamp()), int(LATEST.timestamp())).map(
    lambda s: datetime.fromtimestamp(s, UTC)
)
# Every UTC offset used is a multiple of 15 minutes, so local hours begin on UTC quarter hours:
# the instants around them test the edges of hour ranges.
QUARTER_HOUR_EDGES = st.tuples(
    st.integers(int(EARLIEST.timestamp()) // 900, int(LATEST.timestamp()) // 900),
    st.sampled_from([-1, 0, 1]),
).map(lambda qs: datetime.fromtimestamp(qs[0] * 900 + qs[1], UTC))


@cache
def near_transitions(zone: str) -> st.SearchStrategy[datetime]:
    """Instants within 3 hours of one of the zone's DST transitions in 2025/2026 (and within 90
    seconds of it, where calendars jump), or uniform instants for zones without any."""
    transitions = dst_transitions(zone)
    if not transitions:
        return UNIFORM
    offsets = st.one_of(st.integers(-3 * 3600, 3 * 3600), st.integers(-90, 90))
    return st.tuples(st.sampled_from(transitions), offsets).map(
        lambda to: to[0] + timedelta(seconds=to[1])
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, list[datetime]]:
    """An expression, a zone and up to 16 instants to read it at."""
    zone = draw(st.sampled_from(ZONES))
    instants = draw(
        st.lists(
            st.one_of(UNIFORM, QUARTER_HOUR_EDGES, near_transitions(zone)),
            min_size=1,
            max_size=16,
        )
    )
    return draw(expressions()), zone, instants


# Properties -------------------------------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=250)
@given(case=cases())
def test_cron_matches_agrees_with_croniter(
    conn: psycopg.Connection[Any], case: tuple[str, str, list[datetime]]
) -> None:
    expression, zone, instants = case
    rows = conn.execute(
        """
        select prebuilds.cron_matches(%(expression)s, %(zone)s, t.at),
               (t.at at time zone %(zone)s)::text
        from unnest(%(instants)s::timestamptz[]) with ordinality as t (at, n)
        order by t.n
        """,
        {"expression": expression, "zone": zone, "instants": instants},
    ).fetchall()
    for instant, (sql_says, server_wall_clock) in zip(instants, rows, strict=True):
        wall_clock = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        # Not a cron question: the server's tz database must read the instant as Python's does.
        assert server_wall_clock == wall_clock.isoformat(sep=" "), (
            f"time zone data differ for {zone} at {instant.isoformat()}: "
            f"server {server_wall_clock}, zoneinfo {wall_clock}"
        )
        expected = croniter_matches(expression, zone, instant)
        assert sql_says == expected, (
            f"cron_matches({expression!r}, {zone!r}, {instant.isoformat()}) = {sql_says}; "
            f"croniter at {wall_clock} local: {expected}"
        )


@settings(PROPERTY_SETTINGS, max_examples=80)
@given(batch=st.lists(expressions(), min_size=1, max_size=10))
def test_valid_expressions_are_accepted(conn: psycopg.Connection[Any], batch: list[str]) -> None:
    rows = conn.execute(
        """
        select t.expression, prebuilds.cron_expression_error(t.expression)
        from unnest(%s::text[]) with ordinality as t (expression, n)
        order by t.n
        """,
        [batch],
    ).fetchall()
    assert [(e, error) for e, error in rows if error is not None] == []


# Invalid expressions: a valid one with one thing broken. Each mutation is invalid whatever it is
# applied to.

MINUTES = st.sampled_from(["0", "30", "0-59", "*/5", "*/1", "0,30", "x", "**", "?"])
NAMES = {
    3: st.sampled_from(["JAN", "jan", "Feb", "DEC", "JAN-MAR"]),
    4: st.sampled_from(["MON", "mon", "Sun", "SAT", "MON-FRI"]),
}
GARBAGE = st.sampled_from(
    [
        "L", "?", "#", "W", "H", "5L", "1#2", "15W", "a", "1-", "-1", "1-2-3", "1--2", "+1",
        "1.0", "1e1", "0x1", "*1", "1*", "**", "100",
        "\u0663", "\uff13", "1\u0663",  # Arabic-Indic and fullwidth digits
    ]
)  # fmt: skip


@cache
def out_of_range(index: int) -> st.SearchStrategy[int]:
    low, high = BOUNDS[index - 1]
    below = st.integers(max(low - 10, 0), low - 1) if low > 0 else st.nothing()
    return st.one_of(below, st.integers(high + 1, 99))


@st.composite
def invalid_expressions(draw: st.DrawFn) -> str:
    parts = draw(FIELD_LISTS)
    kind = draw(
        st.sampled_from(
            [
                "too few fields", "too many fields", "minute", "out of range", "backwards",
                "step", "name", "empty item", "garbage", "blank",
            ]
        )
    )  # fmt: skip
    index = draw(st.integers(1, 4))  # a field other than the minute

    def with_item(item: str) -> list[str]:
        """parts with `item` added to field `index` (replacing `*`), somewhere in its list."""
        current = [] if parts[index] == "*" else parts[index].split(",")
        position = draw(st.integers(0, len(current)))
        changed = list(parts)
        changed[index] = ",".join([*current[:position], item, *current[position:]])
        return changed

    if kind == "too few fields":
        keep = draw(st.integers(1, 4))
        parts = parts[:keep]
    elif kind == "too many fields":
        parts = parts + draw(st.lists(st.sampled_from(["*", "1", "2025"]), min_size=1, max_size=2))
    elif kind == "minute":
        parts = [draw(MINUTES), *parts[1:]]
    elif kind == "out of range":
        bad = draw(out_of_range(index))
        low, high = BOUNDS[index - 1]
        item = draw(
            st.sampled_from([str(bad), f"{min(bad, low)}-{max(bad, low)}", f"{low}-{bad}"])
            if bad > high
            else st.just(str(bad))
        )
        parts = with_item(item)
    elif kind == "backwards":
        low, high = BOUNDS[index - 1]
        a = draw(st.integers(low + 1, high))
        b = draw(st.integers(low, a - 1))
        parts = with_item(f"{a}-{b}")
    elif kind == "step":
        step = draw(st.integers(1, 12))
        parts = list(parts)
        parts[index] = parts[index] + f"/{step}"
    elif kind == "name":
        index = draw(st.sampled_from([3, 4]))
        parts = with_item(draw(NAMES[index]))
    elif kind == "empty item":
        where = draw(st.sampled_from(["leading", "trailing", "double"]))
        parts = list(parts)
        field = parts[index]
        parts[index] = {
            "leading": "," + field,
            "trailing": field + ",",
            "double": field.replace(",", ",,", 1) if "," in field else field + ",,1",
        }[where]
    elif kind == "garbage":
        parts = with_item(draw(GARBAGE))
    else:
        return draw(st.sampled_from(["", " ", "\t", "\n"]))
    return " ".join(parts)


@settings(PROPERTY_SETTINGS, max_examples=120)
@given(batch=st.lists(invalid_expressions(), min_size=1, max_size=10))
def test_invalid_expressions_are_rejected(conn: psycopg.Connection[Any], batch: list[str]) -> None:
    rows = conn.execute(
        """
        select t.expression, prebuilds.cron_expression_error(t.expression)
        from unnest(%s::text[]) with ordinality as t (expression, n)
        order by t.n
        """,
        [batch],
    ).fetchall()
    assert [e for e, error in rows if error is None] == []


# The two places where croniter, used naively, differs from SPEC 4.3 ----------------------------


def test_croniter_equal_range_quirk(conn: psycopg.Connection[Any]) -> None:
    """`* * * * 5-5` is Fridays only (SPEC: a range a-b); croniter alone reads it as every day."""
    tuesday = datetime(2025, 6, 3, 12, tzinfo=UTC)
    assert croniter.match("* * * * 5-5", tuesday.replace(tzinfo=None))  # croniter's reading
    row = conn.execute(
        "select prebuilds.cron_matches('* * * * 5-5', 'UTC', %s)", [tuesday]
    ).fetchone()
    assert row == (False,)
    assert not croniter_matches("* * * * 5-5", "UTC", tuesday)


def test_croniter_aware_dst_artifact(conn: psycopg.Connection[Any]) -> None:
    """03:00:30 PDT on 9 March 2025, the first minute after the clocks skipped 02:00-02:59:
    hour 2 did not happen, so `* 2 * * *` does not match (SPEC: the local hour). croniter given
    the zone-aware time says it does; given the wall-clock time it agrees with the SQL."""
    zone = "America/Los_Angeles"
    instant = datetime(2025, 3, 9, 10, 0, 30, tzinfo=UTC)
    aware = instant.astimezone(ZoneInfo(zone))
    assert aware.hour == 3
    assert croniter.match("* 2 * * *", aware)  # the artifact
    assert not croniter_matches("* 2 * * *", zone, instant)
    row = conn.execute(
        "select prebuilds.cron_matches('* 2 * * *', %s, %s), prebuilds.cron_matches("
        "'* 3 * * *', %s, %s)",
        [zone, instant, zone, instant],
    ).fetchone()
    assert row == (False, True)
