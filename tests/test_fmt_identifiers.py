"""Years, codes and ids are written as labels (no thousands separators); quantities keep them (mmn_core.fmt)."""
import pytest

from app.common import raw_text
from mmn_core import fmt


@pytest.mark.parametrize("column", ["birth_year", "BirthYear", "yob", "patient_id", "patientID", "zip code",
                                    "ZIP", "icd10_code", "year"])
def test_identifier_columns_by_name(column):
    assert fmt.is_identifier(column)


@pytest.mark.parametrize("column", ["dose_mg", "income", "yearly_income", "experiencek", "identity_score",
                                    "birth_quarter", "", "heart rate"])
def test_quantity_columns_by_name(column):
    assert not fmt.is_identifier(column)


def test_a_year_keeps_its_digits_a_quantity_its_separators():
    assert fmt.value(1980, "birth_year") == "1980"
    assert fmt.value(1980.0, "birth_year", "") == "1980"
    assert fmt.value(1980, "dose_mg", "mg") == "1,980 mg"            # same number, a quantity
    assert fmt.value(123456, "patient_id") == "123456"
    assert fmt.value(3.5, "birth_year") == "3.50"                     # not a whole number: a measurement
    assert fmt.value(float("nan"), "birth_year") == fmt.MISSING
    assert fmt.number(1980) == "1,980"                                # the generic formatter is unchanged


def test_raw_values_in_the_dashboard_follow_the_column():
    assert raw_text(1980.0, column="birth_year") == "1980"
    assert raw_text(1980.0, "mg", column="dose") == "1,980 mg"
    assert raw_text(1980.0) == "1,980"
    assert raw_text(float("nan"), column="birth_year") == "not measured"
