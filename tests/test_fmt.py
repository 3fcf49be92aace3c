"""The one number formatter and JSON sanitizer (mmn_core.fmt) used by narrative, charts, report and CLI."""
import json
import math

import numpy as np

from mmn_core import fmt
from mmn_core.explain import _num, _pct
import app.figures as F


def test_numbers_as_people_read_them():
    assert fmt.number(1234.5) == "1,234"
    assert fmt.number(1980) == "1,980"
    assert fmt.number(3.456) == "3.46"
    assert fmt.number(12.34) == "12.3"
    assert fmt.number(0.01234) == "0.012"
    assert fmt.with_units(3.4, "mmol/L") == "3.40 mmol/L"
    assert fmt.with_units(5, "0-7") == "5 on a 0-7 scale"
    assert fmt.signed(-3, "kg") == "−3 kg" and fmt.signed(1.25) == "+1.25"
    assert fmt.percent(0.634) == "63%" and fmt.percent(0.634, 1) == "63.4%"
    assert fmt.points(0.07) == "+7 points" and fmt.points(-0.01) == "−1 point" and fmt.points(0.0) == "no change"


def test_missing_numbers_are_a_dash_everywhere():
    for bad in (math.nan, math.inf, -math.inf, None, np.float32("nan")):
        assert fmt.number(bad) == fmt.percent(bad) == fmt.signed(bad) == fmt.points(bad) == "–"
        assert fmt.with_units(bad, "mg") == "– mg"


def test_narrative_and_charts_share_the_formatter():
    # the narrative used to write 1234.5 as '1234' and NaN as 'nan%' while charts wrote '1,234' and '–'
    assert _num(1234.5) == F.number(1234.5) == "1,234"
    assert _pct(math.nan) == F.pct(math.nan) == "–"


def test_json_safe_gives_strict_json():
    obj = {"a": np.float64("nan"), 1: (np.int64(3), math.inf), "arr": np.array([1.5, np.nan])}
    out = fmt.json_safe(obj)
    assert out == {"a": None, "1": [3, None], "arr": [1.5, None]}
    json.dumps(out, allow_nan=False)      # raises if anything non-finite survived
