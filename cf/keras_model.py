"""The Keras CF model (user/movie embeddings + biases), a sparse-aware Adam for the rating objective, and
`from_factors`, which writes ALS factors (the implicit objective, `cf.als`) into the model's weights.

Imports TensorFlow/Keras at module load: import this module only inside functions that train or load.

Why a custom optimizer: Keras' Adam updates every row of every embedding table on every step (its moment
updates turn the sparse gradient of a gather into dense tables), so the cost of a step grows with the
catalogue, not the batch. `LazyAdam` applies Adam only to the rows a batch touched (the TF-Addons /
TF1 `LazyAdamOptimizer` rule). For the same reason L2 is applied to the looked-up rows of each batch, not
to whole tables (a whole-table regulariser has a dense gradient too).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="movierec")
class LazyAdam(keras.optimizers.Adam):
    """Adam whose moments and weights are only updated on the rows a sparse gradient touches."""

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        b1 = tf.cast(self.beta_1, dtype)
        b2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1.0 - tf.pow(b2, step)) / (1.0 - tf.pow(b1, step))
        # A batch repeats users and movies: sum their gradients first, then update each row once.
        rows, pos = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), pos, tf.shape(rows)[0])
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        m_rows = b1 * tf.gather(m, rows) + (1.0 - b1) * grad
        v_rows = b2 * tf.gather(v, rows) + (1.0 - b2) * tf.square(grad)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


@keras.saving.register_keras_serializable(package="movierec")
class CFModel(keras.Model):
    """sigmoid(user . movie + user_bias + movie_bias + global_bias) for input rows [[user_row, movie_row]].

    The interaction is a per-example dot product (sum over the embedding axis only), so a pair's score
    never depends on what else is in its batch (the reference's `tensordot(u, m, 2)` summed over the
    batch axis too).
    """

    def __init__(self, n_users: int, n_movies: int, dim: int = 128, l2: float = 1e-6, seed: int = 0, **kw):
        super().__init__(**kw)
        self.n_users, self.n_movies, self.dim, self.l2, self.seed = n_users, n_movies, dim, l2, seed
        init = keras.initializers.HeNormal(seed=seed)
        self.user_embedding = keras.layers.Embedding(
            n_users, dim, embeddings_initializer=init, name="user_vecs"
        )
        self.movie_embedding = keras.layers.Embedding(
            n_movies,
            dim,
            embeddings_initializer=keras.initializers.HeNormal(seed=seed + 1),
            name="movie_vecs",
        )
        self.user_bias = keras.layers.Embedding(n_users, 1, embeddings_initializer="zeros", name="user_bias")
        self.movie_bias = keras.layers.Embedding(
            n_movies, 1, embeddings_initializer="zeros", name="movie_bias"
        )
        self.global_bias = self.add_weight(shape=(), initializer="zeros", name="global_bias")

    def logits(self, inputs, training: bool = False):
        users, movies = inputs[:, 0], inputs[:, 1]
        u, m = self.user_embedding(users), self.movie_embedding(movies)
        bu, bm = self.user_bias(users)[:, 0], self.movie_bias(movies)[:, 0]
        if training and self.l2 > 0:
            # L2 on the rows this batch used (embeddings and biases alike): keeps updates sparse.
            penalty = ops.sum(ops.square(u), axis=-1) + ops.sum(ops.square(m), axis=-1)
            penalty = penalty + ops.square(bu) + ops.square(bm)
            self.add_loss(self.l2 * ops.mean(penalty))
        return ops.sum(u * m, axis=-1) + bu + bm + self.global_bias

    def call(self, inputs, training: bool = False):
        return ops.sigmoid(self.logits(inputs, training=training))

    def get_config(self) -> dict:
        return {
            "n_users": self.n_users,
            "n_movies": self.n_movies,
            "dim": self.dim,
            "l2": self.l2,
            "seed": self.seed,
            "name": self.name,
        }

    def weights_as_arrays(self) -> dict:
        """Factor tables and biases as numpy arrays (what `cf.factors.Factors` holds)."""
        return {
            "user_vecs": ops.convert_to_numpy(self.user_embedding.embeddings),
            "movie_vecs": ops.convert_to_numpy(self.movie_embedding.embeddings),
            "user_bias": ops.convert_to_numpy(self.user_bias.embeddings)[:, 0],
            "movie_bias": ops.convert_to_numpy(self.movie_bias.embeddings)[:, 0],
            "global_bias": float(ops.convert_to_numpy(self.global_bias)),
        }


def from_factors(
    user_vecs: np.ndarray,
    movie_vecs: np.ndarray,
    user_bias: np.ndarray | None = None,
    movie_bias: np.ndarray | None = None,
    global_bias: float = 0.0,
    l2: float = 0.0,
    seed: int = 0,
) -> CFModel:
    """A built CFModel whose weights are the given factors (how ALS results become the Keras model)."""
    (n_users, dim), n_movies = user_vecs.shape, len(movie_vecs)
    model = CFModel(n_users, n_movies, dim=dim, l2=l2, seed=seed)
    model(tf.zeros((1, 2), dtype=tf.int32))
    model.user_embedding.embeddings.assign(user_vecs.astype(np.float32))
    model.movie_embedding.embeddings.assign(movie_vecs.astype(np.float32))
    zeros_u, zeros_m = np.zeros(n_users, np.float32), np.zeros(n_movies, np.float32)
    model.user_bias.embeddings.assign((zeros_u if user_bias is None else user_bias)[:, None])
    model.movie_bias.embeddings.assign((zeros_m if movie_bias is None else movie_bias)[:, None])
    model.global_bias.assign(global_bias)
    return model


def build(n_users: int, n_movies: int, dim: int, l2: float, lr: float, seed: int) -> CFModel:
    keras.utils.set_random_seed(seed)
    model = CFModel(n_users, n_movies, dim=dim, l2=l2, seed=seed)
    model.compile(optimizer=LazyAdam(learning_rate=lr), loss=keras.losses.BinaryCrossentropy())
    model(tf.zeros((1, 2), dtype=tf.int32))  # build the weights
    return model
