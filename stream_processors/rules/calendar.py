"""Working days for filing deadlines: Monday to Friday in China Standard Time, minus official
public holidays, plus the weekend days declared working days, for the years whose State Council
calendar is in packs/calendar-cn.yaml. Other years count Monday to Friday."""

from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path

import yaml

CHINA = timezone(timedelta(hours=8))
CALENDAR_FILE = Path(__file__).parent.parent / "packs" / "calendar-cn.yaml"


@cache
def _calendar() -> tuple[frozenset[date], frozenset[date]]:
    data = yaml.safe_load(CALENDAR_FILE.read_text())
    holidays = {
        date.fromisoformat(str(d)) for year in data["years"].values() for d in year.get("holidays", [])
    }
    working = {
        date.fromisoformat(str(d))
        for year in data["years"].values()
        for d in year.get("working_weekends", [])
    }
    return frozenset(holidays), frozenset(working)


def is_working_day(day: date) -> bool:
    holidays, working_weekends = _calendar()
    if day in working_weekends:
        return True
    return day.weekday() < 5 and day not in holidays


def working_days_deadline(start: datetime, days: int) -> datetime:
    """The end (China time) of the ``days``-th working day after ``start``'s day."""
    day = start.astimezone(CHINA).date()
    while days:
        day += timedelta(days=1)
        if is_working_day(day):
            days -= 1
    return datetime.combine(day + timedelta(days=1), time(), CHINA)
