"""The ways people load several models into one process, written the way they write them.

Each runs in its own fresh child process (``tfhost.diagnosis.child``): load every model
first, then call each one, as an application does. Nothing here avoids a collision; that
is the point.

- ``shared_graph`` (i): TF1 SavedModels and frozen GraphDefs imported into one default
  graph and run through one session, fed and fetched by their tensor names.
- ``load_model`` (ii): ``keras.models.load_model`` for Keras-looking artifacts (``.keras``,
  ``.h5``, a tf.keras SavedModel directory), ``tf.saved_model.load`` for the rest.
- ``graph_recipe`` (iii): ``with tf.Graph().as_default(): m = tf.saved_model.load(p)``,
  then ``m.signatures[...]`` called after the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfhost.specs import Format

if TYPE_CHECKING:
    from tfhost.diagnosis.child import Step

# What a user reaches for when the artifact looks like Keras: a .keras or .h5 file, or a
# SavedModel directory with keras_metadata.pb.
KERAS_LOOKING = frozenset({Format.KERAS, Format.KERAS_H5, Format.KERAS_SAVED_MODEL})


def run(way: str, step: Step) -> None:
    if not step.prepare():
        return
    {"shared_graph": _shared_graph, "load_model": _load_model, "graph_recipe": _graph_recipe}[way](
        step
    )


def _tensor_name(key: str) -> str:
    return key if ":" in key else f"{key}:0"


def _shared_graph(step: Step) -> None:
    import tensorflow as tf

    from tfhost.formats.detect import serving_meta_graph

    graph = tf.Graph()
    # (feed tensor by input key, fetch tensor by output key) per model
    bindings: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    with graph.as_default():
        session = tf.compat.v1.Session()

        def load(model: dict[str, Any]) -> None:
            name, path = model["name"], model["path"]
            if Format(model["format"]) is Format.TF1_SAVED_MODEL:
                # The MetaGraph tfhost would load: the naive way differs in the graph only.
                tags = list(serving_meta_graph(name, Path(path)).meta_info_def.tags)
                meta = tf.compat.v1.saved_model.loader.load(session, tags, path)
                signature = meta.signature_def[model["signature"]]
                bindings[name] = (
                    {k: v.name for k, v in signature.inputs.items()},
                    {k: v.name for k, v in signature.outputs.items()},
                )
            else:
                graph_def = tf.compat.v1.GraphDef()
                with open(path, "rb") as f:
                    graph_def.ParseFromString(f.read())
                tf.graph_util.import_graph_def(graph_def, name="")
                inputs = step.inputs(model)
                bindings[name] = (
                    {k: _tensor_name(k) for k in inputs},
                    {k: _tensor_name(k) for k in model["outputs"]},
                )
            step.loaded(name)

        def predict(model: dict[str, Any]) -> None:
            feeds, fetches = bindings[model["name"]]
            inputs = step.inputs(model)
            keys = list(fetches)
            values = session.run([fetches[k] for k in keys], {feeds[k]: inputs[k] for k in feeds})
            step.ran(model["name"], dict(zip(keys, values, strict=True)))

        loaded = step.each("load", load)
        step.each("run", predict, loaded)


def _keras_outputs(result: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return {str(k): np.asarray(v) for k, v in result.items()}
    flat = list(result) if isinstance(result, (list, tuple)) else [result]
    return dict(zip(names, (np.asarray(v) for v in flat), strict=True))


def _load_model(step: Step) -> None:
    import tensorflow as tf

    models: dict[str, Any] = {}

    def load(model: dict[str, Any]) -> None:
        if Format(model["format"]) in KERAS_LOOKING:
            import keras

            models[model["name"]] = keras.models.load_model(
                model["path"], custom_objects=step.custom_objects or None
            )
        else:
            models[model["name"]] = tf.saved_model.load(model["path"])
        step.loaded(model["name"])

    def predict(model: dict[str, Any]) -> None:
        loaded = models[model["name"]]
        inputs = step.inputs(model)
        if Format(model["format"]) in KERAS_LOOKING:
            x = next(iter(inputs.values())) if len(inputs) == 1 else inputs
            result = loaded.predict(x, verbose=0)
            outputs = _keras_outputs(result, list(model["outputs"]))
        else:
            function = loaded.signatures[model["signature"]]
            result = function(**{k: tf.constant(v) for k, v in inputs.items()})
            outputs = {k: v.numpy() for k, v in result.items()}
        step.ran(model["name"], outputs)

    loaded = step.each("load", load)
    step.each("run", predict, loaded)


def _graph_recipe(step: Step) -> None:
    import tensorflow as tf

    models: dict[str, Any] = {}

    def load(model: dict[str, Any]) -> None:
        # The recipe, verbatim: a fresh graph per model, meant to keep models apart.
        with tf.Graph().as_default():
            models[model["name"]] = tf.saved_model.load(model["path"])
        step.loaded(model["name"])

    def predict(model: dict[str, Any]) -> None:
        # ...and the call that follows it, outside the block.
        function = models[model["name"]].signatures[model["signature"]]
        inputs = step.inputs(model)
        result = function(**{k: tf.constant(v) for k, v in inputs.items()})
        step.ran(model["name"], {k: v.numpy() for k, v in result.items()})

    loaded = step.each("load", load)
    step.each("run", predict, loaded)
