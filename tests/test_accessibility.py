"""WCAG AA contrast of the dashboard's colours, measured (WCAG 2.1 relative luminance and contrast ratio):
modality colours and cohort-map dots are graphics (1.4.11: ≥ 3:1 against the white background), grey captions
are text (1.4.3: ≥ 4.5:1). The modality colours must also stay apart for colour-blind readers (CIELAB ΔE after
the Machado et al. 2009 full-severity simulation matrices)."""
from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from app import figures as F

WHITE = "#FFFFFF"
# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB
CVD = {"normal vision": np.eye(3),
       "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                                 [-0.011820, 0.042940, 0.968881]]),
       "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                               [-0.003882, -0.048116, 1.051998]]),
       "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                               [0.004733, 0.691367, 0.303900]])}


def rgb(color: str) -> np.ndarray:
    h = color.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], dtype=float)


def linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(color) -> float:
    r, g, b = linear(rgb(color) if isinstance(color, str) else color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b=WHITE) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def blend(color: str, alpha: float, under: str = WHITE) -> np.ndarray:
    """The colour a marker of this opacity shows on the background (sRGB 0–255)."""
    return alpha * rgb(color) + (1 - alpha) * rgb(under)


def lab(lin: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ np.clip(lin, 0, 1)
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def min_delta_e(colors, matrix) -> float:
    labs = [lab(matrix @ linear(rgb(c))) for c in colors]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(labs, 2))


def test_contrast_formula_matches_known_values():
    assert contrast("#000000") == pytest.approx(21.0)
    assert contrast("#767676") == pytest.approx(4.54, abs=0.01)           # the usual AA grey on white
    assert contrast("#FFFFFF") == pytest.approx(1.0)


def test_the_original_okabe_ito_failed_and_this_check_sees_it():
    for old in ("#E69F00", "#56B4E9", "#F0E442"):                         # orange, sky blue, yellow
        assert contrast(old) < 3.0


@pytest.mark.parametrize("color", F.PALETTE)
def test_every_modality_colour_reaches_3_to_1_on_white(color):
    assert contrast(color) >= 3.0, f"{color}: {contrast(color):.2f}:1"


def test_text_and_line_colours():
    assert contrast(F.STATUS_COLOR) >= 4.5            # grey captions on charts ("not measured")
    assert contrast(F.LINE_COLOR) >= 4.5              # step lines, also used for text
    assert contrast(F.PRIOR_COLOR) >= 3.0             # the prior's marker


@pytest.mark.parametrize("vision", list(CVD))
def test_modality_colours_stay_apart_for_colour_blind_readers(vision):
    # SUPPORT2 has ten kinds of data: the first ten colours; the first seven (a smaller dataset) further apart
    assert min_delta_e(F.PALETTE[:10], CVD[vision]) >= 8.0
    assert min_delta_e(F.PALETTE[:7], CVD[vision]) >= 11.0


def _outcome_traces(fig):
    return [t for t in fig.data if t.legendgroup == "outcome"]


@pytest.mark.parametrize("which", ["explorer", "present"])
def test_cohort_map_outcomes_as_drawn_are_visible_and_distinct(which):
    xy = np.random.default_rng(0).normal(size=(40, 2))
    y = np.r_[np.zeros(20), np.ones(20)]
    path = np.zeros((3, 2))
    if which == "explorer":
        fig = F.state_map(xy, y, outcome_type="binary", outcome_label="Death", classes=["no", "yes"], path_xy=path,
                          steps=["prior", "a", "b"], step_labels=["Prior", "A", "B"], colors={}, skipped=[False, True])
    else:
        fig = F.present_state_map(xy, y, outcome_type="binary", classes=["no", "yes"], path_xy=path, upto=1,
                                  steps=["prior", "a", "b"], status=["prior", "ran", "ran"], colors={})
    shown = [blend(t.marker.color, t.marker.opacity) for t in _outcome_traces(fig)]
    assert len(shown) == 2
    for c in shown:
        assert contrast(c) >= 3.0
    assert contrast(shown[0], shown[1]) >= 3.0


# --- every colour constant of app/figures.py, found by reading the module (a new constant is checked too) -------
HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
# The only exemption, by name: the axis frame and gridlines are decoration (values are read from the labelled ticks
# and the marks), which WCAG 1.4.11 does not cover; kept light on purpose so they stay behind the data.
DECORATION = {"_AXIS": {"linecolor", "gridcolor"}}


def _hex_in(value) -> list[str]:
    if isinstance(value, str):
        return [value] if HEX.match(value) else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [c for v in value for c in _hex_in(v)]
    return []


def _colour_constants() -> dict[str, str]:
    """'NAME' / 'NAME[i]' / 'NAME[key]' -> colour, for every module-level constant of app/figures.py holding one:
    the literals written in its top-level assignments (source) and the values of its UPPER_CASE globals
    (which includes colours built from others, e.g. METHOD_COLORS' OKABE_ITO[0])."""
    found = {}
    tree = ast.parse(Path(F.__file__).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if ast.unparse(target) in DECORATION:
                continue
            lits = [n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    and HEX.match(n.value)]
            for i, c in enumerate(lits):
                found[f"{ast.unparse(target)} literal {i}"] = c
    for name, value in vars(F).items():
        if isinstance(value, dict) and name in DECORATION:
            value = {k: v for k, v in value.items() if k not in DECORATION[name]}
        if name.isupper():
            for i, c in enumerate(_hex_in(value)):
                found[f"{name}[{i}]"] = c
    return found


def test_the_colour_constants_are_found():
    found = set(_colour_constants().values())
    assert {F.NONE_COLOR, F.PRIOR_COLOR, F.STATUS_COLOR, F.LINE_COLOR, *F.PALETTE, *F.OUTCOME_COLORS,
            *F.METHOD_COLORS.values(), *F.MODEL_COLORS.values()} <= found
    assert len(_colour_constants()) >= 40
    assert all(HEX.match(F._AXIS[k]) for k in DECORATION["_AXIS"])     # the exemption names real colour keys


@pytest.mark.parametrize("name", sorted(_colour_constants()))
def test_every_colour_constant_reaches_3_to_1_on_white(name):
    c = _colour_constants()[name]
    assert contrast(c) >= 3.0, f"{name} = {c}: {contrast(c):.2f}:1"


def test_the_old_grey_and_orange_failed_and_their_replacements_pass():
    assert contrast("#B0B0B0") < 3.0 and contrast("#E69F00") < 3.0
    assert contrast(F.NONE_COLOR) >= 3.0 and contrast(F.METHOD_COLORS["leave_one_out"]) >= 3.0
    # "not measured" stays apart from the prior's grey (lighter), and the methods keep distinct colours
    assert luminance(F.NONE_COLOR) > luminance(F.PRIOR_COLOR)
    assert len(set(F.METHOD_COLORS.values())) == len(F.METHOD_COLORS)


def test_the_binary_outcome_colours_are_palette_colours_apart_under_colour_blindness():
    assert set(F.OUTCOME_COLORS) <= set(F.PALETTE)
    for vision, m in CVD.items():
        assert min_delta_e(F.OUTCOME_COLORS, m) >= 20.0, vision
