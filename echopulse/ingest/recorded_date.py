"""The recording dates Health exports print, in the forms its locales write them.

A module of its own because two readers parse these dates: the Health CSV export and the PDF for the doctor.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_DATE = re.compile(
    r"^\s*(?P<a>\d{1,4})(?P<sep>[-./])\s*(?P<b>\d{1,2})[-./]\s*(?P<c>\d{2,4})\.?"
    r"(?:[,\s]+|T)(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,6}))?)?"
    r"\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?)?"
    r"\s*(?P<tz>Z|(?:UTC|GMT)?\s*[+\-−]\s*\d{1,2}(?::?\d{2})?|UTC|GMT)?\s*$"
)


def parse_recorded_date(text: str) -> datetime | None:
    """A Health export date (`2021-12-17 12:58:58 +0800`, `17.12.2021, 12:58:58 +0100`, `2021/12/17 …`).

    Timezone-aware when the text has an offset, naive when it has none. None when the text is not a date or
    day and month cannot be told apart (`03/04/2021`): a wrong start time is worse than none, and the
    original text stays in `meta["recorded_date"]`.
    """
    text = re.sub(r"(\d)\s*[年月]\s*", r"\1/", text)
    text = re.sub(r"(\d)\s*日", r"\1", text)
    match = _DATE.match(text)
    if match is None:
        return None
    ymd = _year_month_day(match["a"], match["b"], match["c"], match["sep"])
    if ymd is None:
        return None
    hour = int(match["hour"])
    if match["ampm"]:
        hour = hour % 12 + (12 if match["ampm"][0] in "Pp" else 0)
    fraction = (match["fraction"] or "0").ljust(6, "0")
    try:
        second = int(match["second"] or 0)
        return datetime(*ymd, hour, int(match["minute"]), second, int(fraction), tzinfo=_offset(match["tz"]))
    except ValueError:
        return None


def _year_month_day(a: str, b: str, c: str, sep: str) -> tuple[int, int, int] | None:
    """Year first (ISO, Japanese), or day first with dots (German); with slashes, only when unambiguous."""
    if len(a) == 4:
        return int(a), int(b), int(c)
    if len(a) > 2:
        return None
    year = int(c) if len(c) == 4 else 2000 + int(c)
    first, second = int(a), int(b)
    if sep == "." or first > 12 or first == second:
        return year, second, first
    if second > 12:
        return year, first, second
    return None


def _offset(text: str | None) -> timezone | None:
    if not text:
        return None
    match = re.search(r"([+\-−])\s*(\d{1,2}):?(\d{2})?$", text)
    if match is None:
        return UTC
    sign = -1 if match[1] in "-−" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3] or 0)))
