"""MultiModN Lens engine: sequential modular multimodal networks that skip missing modalities."""
from .version import __version__  # noqa: E402

from .spec import DatasetSpec, SpecError, load_spec  # noqa: E402
from .data import Dataset, Preprocessor, TensorData, load_data, split, kfold  # noqa: E402
from .datasets import bundled_names, load_dataset  # noqa: E402
from .model import ModelConfig, ModelOutput, MultiModN, probabilities  # noqa: E402
from .baseline import PFusion  # noqa: E402
from .train import TrainConfig, fit, predict, train_model  # noqa: E402
from .metrics import metric_matrix, classification_metrics, regression_metrics  # noqa: E402
from .checkpoint import CheckpointError, Trained, build_model, load, save  # noqa: E402
from .explain import StateMap, Trace, attribute, narrative, shapley, trace  # noqa: E402

__all__ = ["__version__", "DatasetSpec", "SpecError", "load_spec", "Dataset", "Preprocessor", "TensorData",
           "load_data", "bundled_names", "load_dataset", "split", "kfold", "ModelConfig", "ModelOutput", "MultiModN",
           "probabilities", "PFusion", "TrainConfig", "fit", "predict", "train_model", "metric_matrix",
           "classification_metrics", "regression_metrics", "CheckpointError", "Trained", "build_model", "load",
           "save", "StateMap", "Trace", "attribute", "narrative", "shapley", "trace"]
