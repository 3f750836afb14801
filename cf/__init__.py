"""movierec.cf: the Keras collaborative-filtering model, its baselines, training, evaluation and registry.

What other layers use (none of it imports TensorFlow; training does, inside `train_model`):
- `Recommender`: the one model contract (fit, score, recommend over candidates for many users, save, load);
  `KerasCF`, `Popularity`, `BiasOnly` implement it.
- `current_model`, `load_current_model`, `list_models`, `save_model`, `stale_reason`: the versioned
  models on disk and their record in DuckDB (`cf.registry`).
- `train_model`, `UpdateRefused`: fitting, updating and retraining by rule (`cf.training`);
  `text_vectors`: the films' text vectors from the vector store, the CF model's content side (`cf.content`).
- `check_model`: what a model must show before it becomes current (finite, not worse than popularity).
"""

from movierec.cf.data import Ratings, load_ratings
from movierec.cf.explore import BECAUSE_LIKED, Because, because, cap_liked
from movierec.cf.factors import Factors
from movierec.cf.foldin import mark_folded, with_fresh_users
from movierec.cf.guard import check_model
from movierec.cf.keras_cf import KerasCF
from movierec.cf.ranking import (
    CF_FORMULA,
    SOURCE_CF,
    SOURCE_COLD,
    SOURCE_FOLD,
    Candidates,
    Ranked,
    check_weights,
    cold_formula,
)
from movierec.cf.recommender import BiasOnly, Popularity, Recommender
from movierec.cf.registry import (
    ModelRecord,
    current_model,
    list_models,
    load_current_model,
    load_model,
    recover_models,
    save_model,
    stale_reason,
)
from movierec.cf.train import HyperParams
from movierec.cf.training import UpdateRefused, text_vectors, train_model

__all__ = [
    "BECAUSE_LIKED",
    "CF_FORMULA",
    "SOURCE_CF",
    "SOURCE_COLD",
    "SOURCE_FOLD",
    "Because",
    "BiasOnly",
    "Candidates",
    "Factors",
    "HyperParams",
    "KerasCF",
    "ModelRecord",
    "Popularity",
    "Ranked",
    "Ratings",
    "Recommender",
    "UpdateRefused",
    "because",
    "cap_liked",
    "check_model",
    "check_weights",
    "cold_formula",
    "current_model",
    "list_models",
    "load_ratings",
    "load_current_model",
    "load_model",
    "mark_folded",
    "recover_models",
    "save_model",
    "stale_reason",
    "text_vectors",
    "train_model",
    "with_fresh_users",
]
