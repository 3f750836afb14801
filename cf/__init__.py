"""cf stage: the Keras collaborative-filtering model, its baselines, training, evaluation and export.

What other stages use (none of it imports TensorFlow):
- `Factors`: exported factors + biases + id maps; scores users x movies with numpy.
- `current_model(settings)`, `load_current_factors(settings)`: the current model's record and factors.
- `train_model(settings, ...)`: train on the ratings in DuckDB, save a new version, make it current.
"""

from cf.factors import Factors
from cf.registry import ModelRecord, current_model, list_models, load_current_factors, train_model

__all__ = ["Factors", "ModelRecord", "current_model", "list_models", "load_current_factors", "train_model"]
