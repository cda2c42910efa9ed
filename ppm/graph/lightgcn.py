"""LightGCN on the item-item co-click graph, in plain TensorFlow (tf.sparse, GradientTape).

LightGCN (He et al., SIGIR 2020, arXiv:2002.02126) keeps only neighbourhood aggregation:
``E^(k+1) = Â E^(k)`` with the symmetric-normalised adjacency ``Â = D^-1/2 A D^-1/2``
(§3.1.1 Eq. 3, matrix form Eq. 7-8), and the final embedding is the mean of the layers
``E = 1/(K+1) sum_k E^(k)`` (Eq. 4, ``alpha_k = 1/(K+1)``). Training minimises BPR (Eq. 15)
with L2 on the layer-0 embeddings of the batch.

Choices the paper leaves open for an item-item graph (it is written for a user-item one):

- ``A`` is weighted by co-click counts, so ``D`` is the weighted degree; there are no self
  loops (as in the paper) and a node without edges keeps a zero row in ``Â``.
- A training sample is an edge read in either direction ``(anchor, positive)``; every edge is
  seen twice per epoch whatever its weight (the weight acts through ``Â``). The negative is an
  item drawn uniformly, as in the paper's code; it may be a neighbour of the anchor.
- Scores are inner products of final embeddings (Eq. 5); the L2 term is
  ``l2 * (|e_a|^2 + |e_p|^2 + |e_n|^2) / 2`` averaged over the batch, on layer 0 (Eq. 15).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras


def normalized_adjacency(src, dst, weight, num_nodes: int) -> tf.sparse.SparseTensor:
    """``Â = D^-1/2 A D^-1/2`` of an undirected weighted graph (LightGCN Eq. 7-8).

    Args:
      src, dst: int [E] node indices of each edge (each undirected edge once).
      weight: float [E] edge weights, > 0.
      num_nodes: N.

    Returns:
      A float32 ``SparseTensor`` [N, N], symmetric, indices in canonical order.
    """
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    weight = np.asarray(weight, np.float64)
    rows, cols = np.concatenate([src, dst]), np.concatenate([dst, src])
    w = np.concatenate([weight, weight])
    degree = np.bincount(rows, weights=w, minlength=num_nodes)
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    values = (w * inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    return tf.sparse.reorder(tf.sparse.SparseTensor(np.stack([rows, cols], axis=1), values,
                                                    [num_nodes, num_nodes]))


def propagate(adjacency: tf.sparse.SparseTensor, embeddings: tf.Tensor,
              num_layers: int) -> tf.Tensor:
    """``1/(K+1) sum_{k=0..K} Â^k E`` (LightGCN Eq. 3-4). Shapes: [N, N], [N, d] -> [N, d]."""
    layers = [embeddings]
    for _ in range(num_layers):
        layers.append(tf.sparse.sparse_dense_matmul(adjacency, layers[-1]))
    return tf.add_n(layers) / float(num_layers + 1)


class LightGCN(tf.Module):
    """The layer-0 embedding table and the propagation over a fixed graph.

    Args:
      num_nodes: N, rows of the table.
      dim: embedding size d.
      num_layers: K propagation layers (0: plain embeddings, matrix factorisation).
      seed: seed of the N(0, ``init_stddev``) initial table.
      init_stddev: standard deviation of the initial table (the paper's code: 0.1).
    """

    def __init__(self, num_nodes: int, dim: int, num_layers: int, seed: int = 0,
                 init_stddev: float = 0.1, name: str | None = None):
        super().__init__(name=name)
        if num_nodes < 1 or dim < 1 or num_layers < 0 or init_stddev <= 0:
            raise ValueError(f"LightGCN needs num_nodes >= 1, dim >= 1, num_layers >= 0 and "
                             f"init_stddev > 0; got {num_nodes}, {dim}, {num_layers}, "
                             f"{init_stddev}")
        self.num_layers = num_layers
        self.embeddings = tf.Variable(
            tf.random.stateless_normal([num_nodes, dim], seed=[seed, 0], stddev=init_stddev),
            name="layer0")

    def __call__(self, adjacency: tf.sparse.SparseTensor) -> tf.Tensor:
        """Final embeddings [N, d] (Eq. 4)."""
        return propagate(adjacency, self.embeddings, self.num_layers)


def bpr_loss(final: tf.Tensor, layer0: tf.Tensor, anchors, positives, negatives,
             l2: float) -> tf.Tensor:
    """Mean BPR loss of a batch plus L2 on its layer-0 rows (LightGCN Eq. 15).

    Args:
      final: final embeddings [N, d]; layer0: the table [N, d].
      anchors, positives, negatives: int [B] node indices.
      l2: weight of the L2 term.

    Returns:
      A scalar: ``mean(softplus(s_an - s_ap)) + l2 * mean(|e0_a|^2 + |e0_p|^2 + |e0_n|^2) / 2``.
    """
    a, p, n = (tf.gather(final, i) for i in (anchors, positives, negatives))
    margin = tf.reduce_sum(a * (p - n), axis=1)
    reg = sum(tf.reduce_sum(tf.square(tf.gather(layer0, i)), axis=1)
              for i in (anchors, positives, negatives))
    return tf.reduce_mean(tf.nn.softplus(-margin)) + l2 * tf.reduce_mean(reg) / 2.0


def fit(model: LightGCN, adjacency: tf.sparse.SparseTensor, src, dst, *, epochs: int,
        batch_size: int, learning_rate: float, l2: float = 1e-4, seed: int = 0,
        progress: bool = True) -> list[float]:
    """Trains ``model`` with BPR and Adam over the edges ``(src, dst)``, both directions.

    Deterministic for a ``seed`` (NumPy draws the order and the negatives; the initial table
    has its own seed). Every step propagates over the whole graph, as the paper's code does:
    an epoch costs about ``2E / batch_size * K`` sparse products with ``nnz = 2E``, so a large
    graph wants a large ``batch_size``.

    Returns:
      The mean loss of each epoch.
    """
    if epochs < 1 or batch_size < 1 or learning_rate <= 0 or l2 < 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, learning_rate > 0, l2 >= 0; got "
                         f"{epochs}, {batch_size}, {learning_rate}, {l2}")
    from tqdm.auto import tqdm

    from ppm import console

    anchors = np.concatenate([src, dst]).astype(np.int64)
    positives = np.concatenate([dst, src]).astype(np.int64)
    num_nodes = int(model.embeddings.shape[0])
    optimizer = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)] * 3)
    def step(a, p, n):
        with tf.GradientTape() as tape:
            loss = bpr_loss(model(adjacency), model.embeddings, a, p, n, l2)
        grads = tape.gradient(loss, [model.embeddings])
        optimizer.apply_gradients(zip(grads, [model.embeddings]))
        return loss

    losses = []
    bar = tqdm(range(epochs), desc="LightGCN", unit="epoch", leave=False,
               disable=not (progress and console.interactive()))
    for _ in bar:
        order = rng.permutation(len(anchors))
        negatives = rng.integers(0, num_nodes, size=len(anchors))
        total = 0.0
        for s in range(0, len(order), batch_size):
            b = order[s:s + batch_size]
            total += float(step(anchors[b], positives[b], negatives[b])) * len(b)
        losses.append(total / len(order))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return losses
