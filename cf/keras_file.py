"""Writing the CF model's `.keras` file from numpy factors, without importing TensorFlow.

An implicit (ALS) fit is numpy from end to end; building the Keras model only to save it cost a cold
`movierec train` the TensorFlow import (several seconds, most of the command on a small catalogue). A
`.keras` file is a zip of `metadata.json`, `config.json` (the registered class and its constructor
arguments) and `model.weights.h5` (each layer's variables under `layers/<name>/vars/<i>`). This writes
exactly what `keras.Model.save` writes for `cf.keras_model.CFModel`, so `keras.saving.load_model` loads it
(tests/test_cf_model.py checks the round trip against a model built and saved by Keras itself).
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

# CFModel's layers in creation order: Keras names the weight groups after the layer class, numbered.
_LAYERS = (
    ("embedding", "user_vecs"),
    ("embedding_1", "movie_vecs"),
    ("embedding_2", "user_bias"),
    ("embedding_3", "movie_bias"),
)


def keras_version() -> str:
    try:
        return version("keras")
    except PackageNotFoundError:  # writing needs no Keras; loading the file does
        return "3"


def write_cf_model(
    path: Path,
    user_vecs: np.ndarray,
    movie_vecs: np.ndarray,
    user_bias: np.ndarray,
    movie_bias: np.ndarray,
    global_bias: float,
    l2: float = 0.0,
    seed: int = 0,
) -> None:
    """Save factors as a `CFModel` `.keras` file (what `keras_model.from_factors(...).save(path)` writes)."""
    import h5py

    (n_users, dim), n_movies = user_vecs.shape, len(movie_vecs)
    config = {
        "module": "movierec.cf.keras_model",
        "class_name": "CFModel",
        "config": {"n_users": n_users, "n_movies": n_movies, "dim": dim, "l2": l2, "seed": seed,
                   "name": "cf_model"},
        "registered_name": "movierec>CFModel",
        "build_config": {"input_shape": [1, 2]},
        "compile_config": {},
    }  # fmt: skip
    meta = {"keras_version": keras_version(), "date_saved": datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    arrays = {
        "user_vecs": np.asarray(user_vecs, np.float32),
        "movie_vecs": np.asarray(movie_vecs, np.float32),
        "user_bias": np.asarray(user_bias, np.float32).reshape(n_users, 1),
        "movie_bias": np.asarray(movie_bias, np.float32).reshape(n_movies, 1),
    }
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        layers = h5.create_group("layers")
        for group, name in _LAYERS:
            v = layers.create_group(group).create_group("vars")
            v.attrs["name"] = name
            v.create_dataset("0", data=arrays[name])
        top = h5.create_group("vars")
        top.attrs["name"] = "cf_model"
        top.create_dataset("0", data=np.float32(global_bias))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buf.getbuffer())
