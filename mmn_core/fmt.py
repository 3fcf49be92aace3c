"""One way to write numbers for people (narrative, charts, report, CLI) and one way to make results valid JSON.

Everything here is pure and never raises on NaN/inf/None: a missing number is written "–" (and null in JSON).
"""
from __future__ import annotations

import math
import re

MISSING = "–"
# Column-name words that mark a number as a label rather than a quantity (a calendar year, a code, an id):
# written without thousands separators, as a spreadsheet or statistics package shows such a column.
IDENTIFIER_WORDS = frozenset({"year", "yr", "yob", "id", "code", "zip", "zipcode", "postcode", "icd"})


def _bad(v) -> bool:
    if v is None:
        return True
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


def number(v, digits: int | None = None) -> str:
    """A value in its units: thousands separated ('1,234.5' → '1,234'), about 3 significant digits, whole
    numbers stay whole, no exponent for everyday sizes; NaN/inf/None → '–'."""
    if _bad(v):
        return MISSING
    v = float(v)
    if digits is None and v.is_integer() and abs(v) < 1e15:
        return f"{v:,.0f}"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 0.1 else 3
    return f"{v:,.{digits}f}"


def is_identifier(column: str) -> bool:
    """Whether a column holds labels written as numbers: one of its words (split at '_', '-', spaces, digits and
    camelCase: 'birth_year', 'BirthYear', 'yob', 'patient_id', 'zip code') is in IDENTIFIER_WORDS. By the name,
    not by the value: 1980 is a year in 'birth_year' but a quantity in 'dose_mg', and no range of values tells
    them apart."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", str(column))
    return any(w.lower() in IDENTIFIER_WORDS for w in words)


def value(v, column: str = "", units: str = "") -> str:
    """A feature's raw value for people: with_units, except that a whole number in an identifier column
    (is_identifier: a year, a code, an id) keeps its digits as written ('Birth year = 1980', not '1,980')."""
    if not _bad(v) and float(v).is_integer() and is_identifier(column):
        return f"{float(v):.0f} {units}".strip()
    return with_units(v, units)


def with_units(v, units: str = "") -> str:
    """'3.4 mmol/L'; a unit that is a range ('0-7') is a scale: '5 on a 0-7 scale'."""
    s = number(v)
    if s != MISSING and units[:1].isdigit():
        return f"{s} on a {units} scale"
    return f"{s} {units}".strip()


def signed(v, units: str = "") -> str:
    """'+1.2 kg' / '−3 kg' (a true minus sign)."""
    if _bad(v):
        return MISSING
    return f"{'+' if float(v) >= 0 else '−'}{number(abs(float(v)))} {units}".strip()


def percent(p, digits: int = 0) -> str:
    """A probability as a percentage ('63%'); NaN/None → '–'."""
    if _bad(p):
        return MISSING
    return f"{100 * float(p):.{digits}f}%"


def points(d) -> str:
    """A change of a probability in percentage points ('+7 points', '−3 points', '+<1 point', 'no change')."""
    if _bad(d):
        return MISSING
    v = 100 * float(d)
    if abs(v) < 0.5:
        return "no change" if abs(v) < 0.05 else f"{'+' if v > 0 else '−'}<1 point"
    s = f"{abs(v):.0f}"
    return f"{'+' if v > 0 else '−'}{s} point{'s' if s != '1' else ''}"


def json_safe(obj):
    """A result as plain JSON types: NaN/inf → None, numpy arrays/scalars → lists/Python numbers, tuples → lists,
    keys → str. Use before every json.dumps of a result (CLI output, caches, benchmark files)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
