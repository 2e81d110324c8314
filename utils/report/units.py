"""Numbers with units for the run report: 0.1364 -> '13.6 %', 1764 -> '1,764 images', 185 -> '3 min 05 s'.

Every formatter returns None for a missing or unreadable value (None, a bool, text, NaN), so that the
report leaves that line out instead of failing.
"""

from __future__ import annotations


def as_number(value) -> float | None:
    """The value as a float; None when it is missing, a bool, not a number, or NaN."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN counts as missing


def percent(value) -> str | None:
    """0.1364 -> '13.6 %'."""
    number = as_number(value)
    return None if number is None else f"{100 * number:.1f} %"


def score(value) -> str | None:
    """A macro-F1 (0-1, no unit) with three decimals."""
    number = as_number(value)
    return None if number is None else f"{number:.3f}"


def count(value, unit: str = "images") -> str | None:
    """1764 -> '1,764 images'; a unit ending in s loses it for 1 (1 epoch)."""
    number = as_number(value)
    if number is None:
        return None
    whole = int(round(number))
    if whole == 1 and unit.endswith("s") and not unit.endswith("ss"):
        unit = unit[:-1]
    return f"{whole:,} {unit}".strip()


def seconds(value) -> str | None:
    """Seconds as '4.2 s', or '3 min 05 s' from two minutes on."""
    number = as_number(value)
    if number is None:
        return None
    if number < 120:
        return f"{number:.1f} s"
    minutes, rest = divmod(int(round(number)), 60)
    return f"{minutes} min {rest:02d} s"


def parameters(value) -> str | None:
    """2621384 -> '2.62 M parameters'."""
    number = as_number(value)
    return None if number is None else f"{number / 1e6:.2f} M parameters"


def rate(value, unit: str = "images/s") -> str | None:
    number = as_number(value)
    return None if number is None else f"{number:,.0f} {unit}"


def megabytes(value) -> str | None:
    number = as_number(value)
    return None if number is None else f"{number:.2f} MB"


def joined(values, separator: str = ", ") -> str | None:
    """A list of names as `a`, `b`; None when empty or not a list."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        return None
    return separator.join(f"`{value}`" for value in values)


def pair(first: str | None, second: str | None, first_label: str, second_label: str) -> str | None:
    """'13.6 % without TTA, 14.2 % with TTA', or whichever half exists."""
    parts = [f"{value} {label}" for value, label in ((first, first_label), (second, second_label)) if value is not None]
    return ", ".join(parts) or None
