"""A record told step by step, for presenting one patient (or pupil, or day) to an audience: `build_story`.

One slide per step (the prior first): the prediction of one task after that kind of data was added, its
change, and one plain sentence; then a summary slide: the two or three kinds of data that mattered most (the
record's exact Shapley values), how far to trust that ranking (a `RecordFaithfulness`), what is missing and what
measuring it would likely do (an `Acquisition`), and what the headline has meant on held-out data (a
`HowSure`). Every number comes from a `RecordView` (hence from `MultiModN.forward`); this module only selects
and words them, so the presentation page renders and never computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fmt import json_safe, percent, points, signed, with_units
from .record import RecordView

PRIOR, RAN, NOT_MEASURED, SWITCHED_OFF = "prior", "ran", "not measured", "switched off"
MAX_MOVERS = 3
MIN_SHARE = 0.10        # a kind of data below 10 % of the total |Shapley| is not "what mattered most"


@dataclass(frozen=True)
class Slide:
    """After step `index` (0 = prior): the task's scalar `value` (binary P(positive), multiclass P(followed
    class), regression units), its `change` from the previous step (0 for the prior and skipped steps)."""
    index: int
    step: str
    label: str
    status: str
    value: float
    change: float
    value_text: str
    sentence: str
    biggest: bool


@dataclass(frozen=True)
class Mover:
    """One kind of data that mattered: its exact Shapley value for the task's scalar (sums with the others to
    final − prior), as a change ('+11 points') and a sentence."""
    modality: str
    label: str
    value: float
    text: str
    sentence: str


@dataclass(frozen=True)
class Missing:
    """A kind of data the record lacks; expected_change / flip_probability from the acquisition estimate (NaN
    when there is none)."""
    modality: str
    label: str
    expected_change: float
    flip_probability: float
    sentence: str


@dataclass(frozen=True)
class Summary:
    movers: tuple[Mover, ...]
    mattered: str
    final: str
    trust: str | None
    missing: tuple[Missing, ...]
    how_sure: str | None


@dataclass(frozen=True)
class Story:
    """K steps. values: (K+1,) the task's scalar after each step; status: (K+1,) PRIOR / RAN / NOT_MEASURED /
    SWITCHED_OFF; path_xy: (K+1, 2) the state after each step on the cohort map (None without a map);
    truth: binary / multiclass the actual class index, regression the actual value (NaN unknown);
    class_index / class_label: the multiclass class followed (None otherwise)."""
    record: str
    task: str
    task_label: str
    task_type: str
    class_index: int | None
    class_label: str | None
    units: str
    steps: list[str]
    step_labels: list[str]
    values: np.ndarray
    status: list[str]
    truth: float
    truth_text: str
    path_xy: np.ndarray | None
    slides: list[Slide]
    summary: Summary

    def to_json(self) -> dict:
        from dataclasses import asdict
        return json_safe(asdict(self))


# --- wording --------------------------------------------------------------------------------------------------
def _value(kind: str, v: float, units: str) -> str:
    return percent(v) if kind != "regression" else with_units(v, units)


def _change(kind: str, d: float, units: str) -> str:
    return points(d) if kind != "regression" else signed(d, units)


def _noun(kind: str, class_label: str | None) -> str:
    if kind == "multiclass":
        return f"the probability of '{class_label}'"
    return "the probability" if kind == "binary" else "the prediction"


def _step_sentence(label: str, status: str, before: float, after: float, kind: str, units: str, noun: str,
                   biggest: bool) -> str:
    if status == NOT_MEASURED:
        return f"{label} was not measured for this record, so the model skipped it: {noun} stays at " \
               f"{_value(kind, after, units)}."
    if status == SWITCHED_OFF:
        return f"{label} was switched off, so the model skipped it: {noun} stays at {_value(kind, after, units)}."
    b, a = _value(kind, before, units), _value(kind, after, units)
    if b == a:
        return f"{label} left {noun} at {a}."
    verb = "raised" if after > before else "lowered"
    tail = ", the biggest single change" if biggest else ""
    return f"{label} {verb} {noun} from {b} to {a}{tail}."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _movers(view: RecordView, task: str, cls: int | None, labels: dict, kind: str, units: str,
            noun: str) -> tuple[Mover, ...]:
    phi = np.asarray(view.shapley[task], dtype=float)
    if phi.ndim == 2:
        phi = phi[:, cls]
    total = float(np.abs(phi).sum())
    if total <= 0:
        return ()
    order = sorted(range(len(phi)), key=lambda j: -abs(phi[j]))
    out = []
    for rank, j in enumerate(order[:MAX_MOVERS]):
        # the top two whenever they moved anything; a third only with a real share of the total
        if abs(phi[j]) <= 0 or (rank >= 2 and abs(phi[j]) < MIN_SHARE * total):
            break
        m = view.shapley_modalities[j]
        size = _change(kind, abs(float(phi[j])), units).lstrip("+")
        verb = "raised" if phi[j] > 0 else "lowered"
        out.append(Mover(m, labels.get(m, m), float(phi[j]), _change(kind, float(phi[j]), units),
                         f"{labels.get(m, m)} {verb} {noun} by {size}."))
    return tuple(out)


def _trust(faith, labels: dict) -> str | None:
    """How far the ranking holds: taking away the top-ranked kinds of data (the RecordFaithfulness deletion
    curve, its method's order) against taking away as many at random (the mean random-order curve)."""
    if faith is None:
        return None
    p = len(faith.removed)
    if p < 2:
        return ("With a single kind of data there is no ranking to check." if p == 1 else
                "With no data measured there is no ranking to check.")
    k = min(2, p - 1)
    ours = abs(float(faith.deletion[0] - faith.deletion[k]))
    theirs = abs(float(faith.random[0] - faith.random[k]))
    top = _join([labels.get(m, m) for m in faith.removed[:k]])
    # the deletion order is the method's importance toward the record's answer, not |Shapley|: say so
    what = ("the kind of data that pushed most toward this answer" if k == 1 else
            "the two kinds of data that pushed most toward this answer")
    if theirs < 1e-12:
        s = f"Check: taking away {what} ({top}) moves the prediction; taking away as many at random does not."
    else:
        ratio = ours / theirs
        verdict = ("the ranking holds up" if ratio >= 1.5 else
                   "barely more than at random: treat the ranking with caution")
        s = (f"Check: taking away {what} ({top}) moves the prediction {ratio:.1f} times as much as taking away "
             f"{'one' if k == 1 else 'two'} at random — {verdict}.")
    ood = [labels.get(m, m) for m in faith.ood_skips if m in faith.removed[:k]]
    if ood:
        s += (f" Caution: {_join(ood)} {'was' if len(ood) == 1 else 'were'} almost never missing when the model "
              f"was trained, so it has rarely seen a record without {'it' if len(ood) == 1 else 'them'}.")
    return s


def _missing(view: RecordView, task: str, labels: dict, acq, kind: str, units: str, noun: str
             ) -> tuple[Missing, ...]:
    lacking = [m for m in view.steps[1:] if not view.measured.get(m, True)]
    est = {} if acq is None else acq.modalities
    ranked = [m for m in (acq.ranked(task) if acq is not None else []) if m in lacking]
    out = []
    for m in ranked + [m for m in lacking if m not in ranked]:
        lab = labels.get(m, m)
        if m in est:
            te = est[m].tasks[task]
            k = len(est[m].neighbours)
            answer = "the most likely outcome" if kind == "multiclass" else "the side of 50%"
            flip = "" if not np.isfinite(te.flip_probability) else \
                f"; it never changed {answer}" if te.flip_probability == 0 else \
                f"; it changed {answer} for {percent(te.flip_probability)} of them"
            size = points(te.expected_abs_change).lstrip("+") if kind != "regression" else \
                with_units(te.expected_abs_change, units)
            sentence = (f"{lab}: not measured. In {k} similar training records that had it, it moved {noun} by "
                        f"{size} on average{flip}.")
            out.append(Missing(m, lab, float(te.expected_abs_change), float(te.flip_probability), sentence))
        else:
            why = "no similar training record had it, so there is no estimate" if acq is not None else \
                "no estimate of what measuring it would change"
            out.append(Missing(m, lab, float("nan"), float("nan"), f"{lab}: not measured ({why})."))
    out.sort(key=lambda x: -x.expected_change if np.isfinite(x.expected_change) else 1.0)
    return tuple(out)


# --- the story ------------------------------------------------------------------------------------------------
def build_story(view: RecordView, spec, task: str, record: str = "", class_index: int | None = None,
                path_xy: np.ndarray | None = None, faithfulness=None, acquisition=None, how_sure=None) -> Story:
    """The slides of one record for one task. class_index: multiclass class to follow (default: the finally
    predicted one); path_xy: (K+1, 2) the view's states on a cohort map (StateMap.transform(view.states));
    faithfulness: RecordFaithfulness of the record for `task`; acquisition: Acquisition of the record;
    how_sure: HowSure of the final value."""
    if task not in view.value:
        raise ValueError(f"unknown task '{task}' (record has: {', '.join(view.value)})")
    tspec = spec.task(task)
    kind, units = tspec.type, tspec.units
    raw = np.asarray(view.value[task], dtype=float)
    cls, class_label = None, None
    if raw.ndim == 2:
        cls = int(raw[-1].argmax()) if class_index is None else int(class_index)
        if not 0 <= cls < raw.shape[1]:
            raise ValueError(f"class {cls} outside 0..{raw.shape[1] - 1}")
        class_label = tspec.class_display(view.classes[task][cls])
        raw = raw[:, cls]
    labels = {m.name: m.display for m in spec.modalities}
    steps = list(view.steps)
    k = len(steps) - 1
    if path_xy is not None and np.asarray(path_xy).shape != (k + 1, 2):
        raise ValueError(f"path_xy has shape {np.asarray(path_xy).shape}, expected ({k + 1}, 2)")
    status = [PRIOR] + [(NOT_MEASURED if not view.measured.get(m, True) else SWITCHED_OFF) if view.skipped[j]
                        else RAN for j, m in enumerate(steps[1:])]
    change = np.concatenate([[0.0], np.diff(raw)])
    change[[j for j, s in enumerate(status) if s != RAN]] = 0.0
    ran = [j for j, s in enumerate(status) if s == RAN]
    big = max(ran, key=lambda j: abs(change[j])) if len(ran) > 1 else None
    if big is not None and _value(kind, raw[big - 1], units) == _value(kind, raw[big], units):
        big = None                                        # "the biggest change" that reads as no change
    noun = _noun(kind, class_label)
    for_cls = f" for '{class_label}'" if class_label else ""
    step_labels = ["Before any data"] + [labels.get(m, m) for m in steps[1:]]
    slides = [Slide(0, PRIOR, step_labels[0], PRIOR, float(raw[0]), 0.0, _value(kind, raw[0], units),
                    f"Before any data, the model starts every record at {_value(kind, raw[0], units)}"
                    f"{for_cls}.", False)]
    for j in range(1, k + 1):
        slides.append(Slide(j, steps[j], step_labels[j], status[j], float(raw[j]), float(change[j]),
                            _value(kind, raw[j], units),
                            _step_sentence(step_labels[j], status[j], raw[j - 1], raw[j], kind, units, noun,
                                           j == big), j == big))
    # the actual outcome, in the followed scalar's terms
    lab = float(view.label.get(task, float("nan")))
    if not np.isfinite(lab) or (kind == "multiclass" and lab < 0):
        truth, truth_text = float("nan"), "not recorded"
    elif kind == "regression":
        truth, truth_text = lab, with_units(lab, units)
    else:
        truth = lab
        truth_text = tspec.class_display(view.classes[task][int(lab)]) if task in view.classes else str(int(lab))
    movers = _movers(view, task, cls, labels, kind, units, noun)
    mattered = ("What mattered most: " + _join([mv.label for mv in movers]) + "."
                if movers else "No kind of data moved this prediction.")
    what = tspec.display.lower() if tspec.display[:1].isupper() and not tspec.display[:2].isupper() \
        else tspec.display
    final = (f"The model's final answer: {_value(kind, raw[-1], units)}{for_cls}. What actually happened"
             f"{' — ' + what if kind == 'binary' else ''}: {truth_text}.")
    summary = Summary(movers, mattered, final, _trust(faithfulness, labels),
                      _missing(view, task, labels, acquisition, kind, units, noun),
                      None if how_sure is None else how_sure.sentence)
    return Story(record, task, tspec.display, kind, cls, class_label, units, steps, step_labels, raw.copy(), status,
                 truth, truth_text, None if path_xy is None else np.asarray(path_xy, dtype=float), slides, summary)


def record_story(trained, data, row: int, task: str, view: RecordView, record: str = "", path_xy=None,
                 donors=None, reliability=None) -> Story:
    """`build_story` with the engine's figures for record `row` of `data` (the whole TensorData): its
    faithfulness check, what measuring its missing modalities could change (`donors`: acquire.Donors; none
    when everything is measured) and what its final value meant on held-out records (`reliability`)."""
    from ..acquire import estimate
    from ..calibration import how_sure_for
    from ..faithfulness import record_faithfulness
    names = trained.model.modality_names
    faith = record_faithfulness(trained, data, row, task)
    lacks = any(not bool(data.present[m][row]) for m in names)
    acq = estimate(trained, data, row, donors) if donors is not None and lacks else None
    sure = None if reliability is None else how_sure_for(reliability, trained.spec.task(task), view.value[task][-1],
                                                         trained.prep.classes.get(task))
    return build_story(view, trained.spec, task, record, path_xy=path_xy, faithfulness=faith, acquisition=acq,
                       how_sure=sure)
