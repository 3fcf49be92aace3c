"""Interpretation: step traces, modality Shapley values over presence masks, Captum feature attributions,
order sensitivity, cohort views and plain-language narratives.

Every number comes from `model.forward` (MultiModN, or P-Fusion where it makes sense); nothing here
re-implements encode → decode. Values are in the units a reader sees: binary P(positive), multiclass class
probabilities, regression the prediction in the target's units. Pure functions, no Streamlit.

Modules: _base (plumbing), steps (trace), coalitions (Shapley, leave-one-out), attribution (Captum),
ordering, cohort, narration, record. This package re-exports their names."""
from ._base import (  # noqa: F401
    _BLAS,
    BATCH_ROWS,
    METHODS,
    _chunks,
    _eval,
    _is_sequential,
    _labels,
    _one_blas_thread,
    _order,
    _present,
    _rows,
    _scalar,
    _task,
    _tasks,
    _values,
)
from .attribution import Attribution, _groups, _raw, attribute, attribute_modalities  # noqa: F401
from .coalitions import (  # noqa: F401
    ShapleyResult,
    _bits,
    _coalition_values,
    _exact_design,
    _patterns,
    _players,
    _sampled_design,
    leave_one_out,
    shapley,
)
from .cohort import StateMap, _fit_anywhere, _mean, _sd, cohort_importance, pattern_metrics, pattern_name  # noqa: F401
from .narration import _num, _pct, _push, narrative  # noqa: F401
from .ordering import order_sensitivity  # noqa: F401
from .record import RecordView, explain_record, record_view  # noqa: F401
from .steps import Trace, _run_all, trace  # noqa: F401

__all__ = [
    "METHODS", "BATCH_ROWS", "Trace", "trace", "ShapleyResult", "shapley", "leave_one_out", "Attribution",
    "attribute", "attribute_modalities", "order_sensitivity", "cohort_importance", "pattern_name",
    "pattern_metrics", "StateMap", "narrative", "explain_record", "RecordView", "record_view",
]
