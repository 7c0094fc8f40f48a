"""Compute one example model's output alone, in this fresh process, with plain TF/Keras.

Usage: python reference_alone.py FORMAT PATH OUT.npy
The reference for "each model returns what it returns when loaded alone": it uses the
framework's own loading code, not tfhost's.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from tfhost.examples import SAMPLE_X

fmt, path, out = sys.argv[1:4]
if fmt in ("tf2_saved_model", "keras_saved_model", "keras_export"):
    result = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(SAMPLE_X))
    y = next(iter(result.values())).numpy()
elif fmt == "tf1_saved_model":
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        y = session.run(sig.outputs["y"].name, {sig.inputs["x"].name: SAMPLE_X})
elif fmt == "frozen_graph":
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        y = session.run("y:0", {"x:0": SAMPLE_X})
elif fmt == "keras":
    import keras

    y = np.asarray(keras.saving.load_model(path)(SAMPLE_X))
elif fmt == "keras_h5":
    import tf_keras

    y = tf_keras.models.load_model(path)(SAMPLE_X).numpy()
else:
    raise SystemExit(f"unknown format {fmt}")
np.save(out, y)
