"""Small helpers tests share to build and run models: one copy each."""

import numpy as np


def run_graph(graph_def, feed, *, fetch: str = "out:0", feed_name: str = "x:0"):
    """``fetch`` of a GraphDef for ``feed`` at ``feed_name``, in a fresh TF1 session."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(fetch, {feed_name: feed})


def give_batchnorms_trained_statistics(model, seed: int) -> None:
    """Random non-trivial BatchNorm statistics: fresh ones are identities grappler folds away."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
