"""cf stage: the Keras collaborative-filtering model, its baselines, training, evaluation and export.

What other stages use (none of it imports TensorFlow):
- `Factors`: exported factors + biases + id maps; scores users x movies with numpy.
- `current_model(settings)`, `load_current_factors(settings)`: the current model's record and factors.
- `train_model(settings, ...)`: train on the ratings in DuckDB, save a new version, make it current.

Names resolve lazily, so importing `cf.cli` for `movierec --help` loads neither DuckDB nor numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from movierec.lazy import lazy_exports

if TYPE_CHECKING:
    from cf.factors import Factors
    from cf.registry import ModelRecord, current_model, list_models, load_current_factors, train_model

_EXPORTS = {
    "Factors": "cf.factors",
    "ModelRecord": "cf.registry",
    "current_model": "cf.registry",
    "list_models": "cf.registry",
    "load_current_factors": "cf.registry",
    "train_model": "cf.registry",
}
__all__ = ["Factors", "ModelRecord", "current_model", "list_models", "load_current_factors", "train_model"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
