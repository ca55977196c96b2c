"""Durations as people write them in config: `90s`, `5m`, `1h30m`, `1d`, `1w`, `250ms`, or a
bare number of seconds. Parsed to float seconds; `format_duration` writes them back."""

from __future__ import annotations

import math
import re

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(value: object) -> float:
    """Seconds for a duration; raises ValueError for anything else (bools, negatives, junk)."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _WHOLE.fullmatch(text):
                raise ValueError("not a duration") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError("not a duration")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError("not a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact form: 86400 -> '1d', 5400 -> '1h30m', 1.5 -> '1.5s'."""
    if seconds <= 0:
        return "0s"
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    out = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
