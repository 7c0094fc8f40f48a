"""One shared encoder, many decoders: pipelines on a real fleet, in TF1 and TF2.

Every decoder is exported next to a stale copy of the encoder (a variable ``enc/w`` in TF1,
an ``encoder`` sub-module in TF2, with other values): its ``serving_default`` takes an
embedding (``h`` or ``embedding``) to ``y``, and its ``end_to_end`` signature runs its own
stale encoder, which is what a decoder used on its own (or loaded into the encoder's
session) computes. The pipelines must compute with the real encoder, loaded once.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tfhost import DeadlineExceeded, InputError, NotFound, ResourceExhausted, State
from tfhost.fleet import ConfigError, Fleet, FleetSettings
from tfhost.fleet.pipeline import PipelineHandle
from tfhost.specs import DEFAULT_SIGNATURE

from .support import wait_until

FAST = FleetSettings(poll_s=0.1, retry_backoff_s=0.2)

ENC_W = (np.arange(12, dtype=np.float32).reshape(3, 4) + 1.0) / 4.0
STALE_W = -3.0 * ENC_W[::-1]  # same shape and names, other values
DEC_W = {
    "decoder_a": np.arange(8, dtype=np.float32).reshape(4, 2) - 3.0,
    "decoder_b": np.array([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25], [3.0, 1.0]], np.float32),
}
INPUT = {"decoder_a": "h", "decoder_b": "embedding"}  # decoder_a needs a map, b does not
X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]], np.float32)

PIPELINES = """
[pipelines.caption_a]
steps = ["encoder", "decoder_a"]
map = { decoder_a = { h = "embedding" } }

[pipelines.caption_b]
steps = ["encoder", "decoder_b"]
"""
CAPTIONS = {"caption_a": "decoder_a", "caption_b": "decoder_b"}


def expected(decoder: str, x: np.ndarray, encoder_w: np.ndarray = ENC_W) -> np.ndarray:
    result: np.ndarray = (x @ encoder_w) @ DEC_W[decoder]
    return result


# -- artifacts ----------------------------------------------------------------------------


def write_tf1_encoder(path: Path) -> Path:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        with tf.compat.v1.variable_scope("enc"):
            w = tf.compat.v1.get_variable("w", initializer=tf.constant(ENC_W))
        embedding = tf.identity(tf.matmul(x, w), name="embedding")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        signature = tf.compat.v1.saved_model.predict_signature_def(
            {"x": x}, {"embedding": embedding}
        )
        builder.add_meta_graph_and_variables(
            session, ["serve"], signature_def_map={DEFAULT_SIGNATURE: signature}
        )
        builder.save()
    return path


def write_tf1_decoder(path: Path, decoder: str) -> Path:
    """The decoder's graph as it was trained: the stale encoder (``enc/w``, tensor
    ``embedding``) in front of ``dec/w``. ``serving_default`` feeds ``embedding``."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        with tf.compat.v1.variable_scope("enc"):
            stale = tf.compat.v1.get_variable("w", initializer=tf.constant(STALE_W))
        embedding = tf.identity(tf.matmul(x, stale), name="embedding")
        with tf.compat.v1.variable_scope("dec"):
            w = tf.compat.v1.get_variable("w", initializer=tf.constant(DEC_W[decoder]))
        y = tf.identity(tf.matmul(embedding, w), name="y")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        predict = tf.compat.v1.saved_model.predict_signature_def
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                DEFAULT_SIGNATURE: predict({INPUT[decoder]: embedding}, {"y": y}),
                "end_to_end": predict({"x": x}, {"y": y}),
            },
        )
        builder.save()
    return path


def _tf2_encoder_class():  # type: ignore[no-untyped-def]
    import tensorflow as tf

    class Encoder(tf.Module):  # type: ignore[misc]
        def __init__(self, w: np.ndarray) -> None:
            super().__init__(name="enc")
            self.w = tf.Variable(w, name="w")

        def embed(self, x: tf.Tensor) -> tf.Tensor:
            return tf.matmul(x, self.w)

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"embedding": self.embed(x)}

    return Encoder


def write_tf2_encoder(path: Path) -> Path:
    import tensorflow as tf

    module = _tf2_encoder_class()(ENC_W)
    tf.saved_model.save(module, str(path), signatures={DEFAULT_SIGNATURE: module.serve})
    return path


def write_tf2_decoder(path: Path, decoder: str) -> Path:
    """A decoder module that embeds its own (stale) encoder sub-module, as a decoder trained
    end to end and exported whole would."""
    import tensorflow as tf

    encoder_class = _tf2_encoder_class()

    class Decoder(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="dec")
            self.encoder = encoder_class(STALE_W)
            self.w = tf.Variable(DEC_W[decoder], name="w")

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False,
            input_signature=[tf.TensorSpec([None, 4], tf.float32, name=INPUT[decoder])],
        )
        def serve(self, h: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(h, self.w)}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")]
        )
        def end_to_end(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(self.encoder.embed(x), self.w)}

    module = Decoder()
    tf.saved_model.save(
        module,
        str(path),
        signatures={DEFAULT_SIGNATURE: module.serve, "end_to_end": module.end_to_end},
    )
    return path


Models = dict[str, Path]


@pytest.fixture(scope="module")
def tf1_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("tf1-pipeline")
    models = {"encoder": write_tf1_encoder(root / "encoder")}
    for decoder in DEC_W:
        models[decoder] = write_tf1_decoder(root / decoder, decoder)
    return models


@pytest.fixture(scope="module")
def tf2_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("tf2-pipeline")
    models = {"encoder": write_tf2_encoder(root / "encoder")}
    for decoder in DEC_W:
        models[decoder] = write_tf2_decoder(root / decoder, decoder)
    return models


def make_repo(root: Path, models: Models, toml: str = PIPELINES) -> Path:
    """TF Serving's layout: ``root/NAME/1``, and ``tfhost.toml``."""
    for name, path in models.items():
        shutil.copytree(path, root / name / "1")
    (root / "tfhost.toml").write_text(toml)
    return root


# -- helpers ------------------------------------------------------------------------------


@dataclass
class Served:
    fleet: Fleet
    loads: list[str] = field(default_factory=list)  # the model of every LOADING event
    unloads: list[str] = field(default_factory=list)  # the model of every UNLOADING event


def serve(repo: Path) -> Served:
    fleet = Fleet(repo, settings=FAST)
    served = Served(fleet)

    def heard(event: object) -> None:
        state, model = event.state, event.id.model  # type: ignore[attr-defined]
        if state is State.LOADING:
            served.loads.append(model)
        elif state is State.UNLOADING:
            served.unloads.append(model)

    fleet.host.subscribe(heard)
    fleet.start(timeout=120)
    return served


def handles(fleet: Fleet, model: str) -> int:
    return sum(m.handles for m in fleet.models() if m.name == model)


def available(fleet: Fleet, model: str) -> list[int]:
    return [m.version for m in fleet.models() if m.name == model and m.state is State.AVAILABLE]


def logged(caplog: pytest.LogCaptureFixture, *words: str) -> bool:
    return any(
        r.levelno >= logging.ERROR and all(w in r.getMessage() for w in words)
        for r in caplog.records
    )


# -- one fleet per kind, shared by the tests that only read ----------------------------------


@pytest.fixture(scope="module", params=["tf1", "tf2"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    models: Models = request.getfixturevalue(f"{request.param}_models")
    repo = make_repo(tmp_path_factory.mktemp(f"{request.param}-repo"), models)
    running = serve(repo)
    try:
        yield running
    finally:
        running.fleet.close()


def test_both_pipelines_use_the_real_encoder_from_many_threads(served: Served) -> None:
    fleet = served.fleet
    for caption, decoder in CAPTIONS.items():
        (y,) = fleet.predict(caption, {"x": X}).values()
        np.testing.assert_allclose(y, expected(decoder, X), rtol=1e-5)
        assert not np.allclose(y, expected(decoder, X, STALE_W))
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for i in range(30):
                caption = "caption_a" if (i + seed) % 2 else "caption_b"
                x = rng.normal(size=(int(rng.integers(1, 5)), 3)).astype(np.float32)
                y = fleet.predict(caption, {"x": x})["y"]
                np.testing.assert_allclose(y, expected(CAPTIONS[caption], x), rtol=1e-4, atol=1e-5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]


def test_each_decoder_carries_a_stale_encoder_that_the_pipeline_does_not_use(
    served: Served,
) -> None:
    """The stale copy is real: each decoder's own end-to-end path computes with it."""
    for caption, decoder in CAPTIONS.items():
        alone = served.fleet.predict(decoder, {"x": X}, signature="end_to_end")["y"]
        np.testing.assert_allclose(alone, expected(decoder, X, STALE_W), rtol=1e-5)
        piped = served.fleet.predict(caption, {"x": X})["y"]
        assert not np.allclose(alone, piped)


def test_the_encoder_is_loaded_once_and_held_by_every_pipeline_that_runs(served: Served) -> None:
    fleet = served.fleet
    for caption in CAPTIONS:
        fleet.predict(caption, {"x": X})
    assert served.loads.count("encoder") == 1
    assert {m: served.loads.count(m) for m in DEC_W} == {"decoder_a": 1, "decoder_b": 1}
    assert handles(fleet, "encoder") == 0
    with fleet.acquire("caption_a") as a, fleet.acquire("caption_b") as b:
        assert isinstance(a, PipelineHandle) and isinstance(b, PipelineHandle)
        # One encoder servable, a handle from each pipeline on it; each decoder its own.
        assert handles(fleet, "encoder") == 2
        assert handles(fleet, "decoder_a") == handles(fleet, "decoder_b") == 1
        assert a.steps[0].id == b.steps[0].id
        np.testing.assert_allclose(a.predict({"x": X})["y"], expected("decoder_a", X), rtol=1e-5)
    assert handles(fleet, "encoder") == handles(fleet, "decoder_a") == 0
    assert served.loads.count("encoder") == 1 and "encoder" not in served.unloads


def test_a_bad_input_fails_in_the_first_step_and_releases_every_step(served: Served) -> None:
    fleet = served.fleet
    with pytest.raises(InputError, match=r"pipeline 'caption_a'.*model 'encoder'.*\['x'\]"):
        fleet.predict("caption_a", {"z": X})
    with pytest.raises(InputError, match=r"model 'encoder'.*input 'x'"):
        fleet.predict("caption_b", {"x": np.array([["a", "b", "c"]])})
    assert handles(fleet, "encoder") == handles(fleet, "decoder_a") == 0
    assert handles(fleet, "decoder_b") == 0


def test_the_deadline_reaches_the_steps(served: Served) -> None:
    with pytest.raises(DeadlineExceeded, match="'encoder'"):
        served.fleet.predict("caption_a", {"x": X}, deadline=time.monotonic() - 1)
    assert handles(served.fleet, "encoder") == 0


def test_a_pipeline_has_the_first_inputs_the_last_outputs_and_no_versions(
    served: Served,
) -> None:
    fleet = served.fleet
    assert sorted(fleet.pipelines()) == ["caption_a", "caption_b"]
    meta = fleet.metadata("caption_a")
    signature = meta["signatures"][DEFAULT_SIGNATURE]
    assert list(signature["inputs"]) == ["x"] and list(signature["outputs"]) == ["y"]
    assert signature["inputs"]["x"]["shape"] == [None, 3]
    assert meta["pipeline"] == [
        {"model": "encoder", "version": 1, "feeds": {}},
        {"model": "decoder_a", "version": 1, "feeds": {"h": "embedding"}},
    ]
    assert fleet.metadata("caption_b")["pipeline"][1]["feeds"] == {"embedding": "embedding"}
    assert fleet.metadata("encoder")["model"] == "encoder"
    with pytest.raises(InputError, match="no versions or labels"):
        fleet.acquire("caption_a", version=1)


def test_check_then_run_and_async_callers(served: Served) -> None:
    import asyncio

    with served.fleet.acquire("caption_b") as handle:
        checked = handle.check({"x": X})
        np.testing.assert_allclose(handle.run(checked)["y"], expected("decoder_b", X), rtol=1e-5)
        y = asyncio.run(handle.run_async(checked))["y"]
        np.testing.assert_allclose(y, expected("decoder_b", X), rtol=1e-5)
        with pytest.raises(NotFound, match="pipeline 'caption_b' has no signature 'end_to_end'"):
            handle.check({"x": X}, signature="end_to_end")
    assert handles(served.fleet, "encoder") == 0


def test_tf1_decoders_loaded_into_the_encoders_session_corrupt_it(tf1_models: Models) -> None:
    """Why each step is its own servable: the hand-rolled composition (both SavedModels in
    one graph and session) silently restores the decoder's stale ``enc/w`` over the
    encoder's, and the encoder then answers with the stale weights."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(tf1_models["encoder"]))
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(tf1_models["decoder_a"]))
        embedding = session.run("embedding:0", {"x:0": X})
    np.testing.assert_allclose(embedding, X @ STALE_W, rtol=1e-5)


# -- fleets of their own ----------------------------------------------------------------------


def test_removing_the_encoder_while_pipelines_use_it_keeps_it_serving(
    tmp_path: Path, tf2_models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo(tmp_path / "repo", tf2_models)
    served = serve(repo)
    with served.fleet as fleet:
        shutil.rmtree(repo / "encoder")
        wait_until(
            lambda: logged(caplog, "encoder", "caption_a", "caption_b", "not unloaded"),
            30,
            "the error naming the pipelines",
        )
        time.sleep(10 * FAST.poll_s)  # cycles that, without the rule, would unload it
        assert "encoder" not in served.unloads
        assert available(fleet, "encoder") == [1]
        for caption, decoder in CAPTIONS.items():
            y = fleet.predict(caption, {"x": X})["y"]
            np.testing.assert_allclose(y, expected(decoder, X), rtol=1e-5)
        assert fleet.config_error is not None  # the config names a model that is gone
        # Once no configured pipeline names it, it goes as any removed model does.
        (repo / "tfhost.toml").write_text("")
        wait_until(lambda: not available(fleet, "encoder"), 30, "the encoder unloaded")
        assert fleet.config_error is None and fleet.pipelines() == {}
        np.testing.assert_allclose(
            fleet.predict("decoder_a", {"h": X @ ENC_W})["y"], expected("decoder_a", X), rtol=1e-5
        )


def test_a_wrong_map_or_a_missing_name_is_a_clear_error(
    tmp_path: Path, tf1_models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    toml = """
[pipelines.misspelt]
steps = ["encoder", "decoder_a"]
map = { decoder_a = { h = "embeddings" } }

[pipelines.unmapped]
steps = ["encoder", "decoder_a"]

[pipelines.no_such_input]
steps = ["encoder", "decoder_b"]
map = { decoder_b = { h = "embedding" } }
"""
    repo = make_repo(tmp_path / "repo", tf1_models, toml)
    with serve(repo).fleet as fleet:
        with pytest.raises(ConfigError) as misspelt:
            fleet.predict("misspelt", {"x": X})
        message = str(misspelt.value)
        assert "pipelines.misspelt.map.decoder_a.h" in message
        assert "'embeddings'" in message and "['embedding']" in message
        assert "tfhost.toml" in message
        with pytest.raises(ConfigError, match=r'map = \{ decoder_a = \{ h = "embedding" \} \}'):
            fleet.predict("unmapped", {"x": X})
        with pytest.raises(ConfigError, match=r"'decoder_b' has no input 'h'.*\['embedding'\]"):
            fleet.predict("no_such_input", {"x": X})
        assert handles(fleet, "encoder") == 0  # released when the wiring failed
        # The loop says so as soon as the steps are AVAILABLE, before any request.
        wait_until(lambda: logged(caplog, "misspelt", "embeddings"), 30, "the wiring error")
        assert logged(caplog, "pipeline unmapped cannot run")


def test_a_lazy_step_loads_on_the_pipelines_first_request(
    tmp_path: Path, tf2_models: Models
) -> None:
    toml = PIPELINES + "\n[models.decoder_b]\nlazy = true\n"
    served = serve(make_repo(tmp_path / "repo", tf2_models, toml))
    with served.fleet as fleet:
        assert available(fleet, "decoder_b") == [] and available(fleet, "encoder") == [1]
        results: list[np.ndarray] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(fleet.predict("caption_b", {"x": X})["y"])
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 3
        for y in results:
            np.testing.assert_allclose(y, expected("decoder_b", X), rtol=1e-5)
        assert served.loads.count("decoder_b") == 1 and served.loads.count("encoder") == 1


def test_a_request_never_evicts_a_model_that_pipelines_use(
    tmp_path: Path, tf2_models: Models
) -> None:
    """The encoder in a worker of its own (so its memory is large and measured); a lazy
    model whose load needs room that only evicting the encoder would give is refused."""
    models = {**tf2_models, "other": tf2_models["encoder"]}
    config = PIPELINES + '\n[models.encoder]\nisolation = "process"\n[models.other]\nlazy = true\n'
    repo = make_repo(tmp_path / "repo", models, config)
    with serve(repo).fleet as fleet:
        fleet.predict("caption_a", {"x": X})
        (encoder,) = [m for m in fleet.models() if m.name == "encoder"]
        assert (encoder.memory_bytes or 0) > 50 << 20  # a worker with TensorFlow imported
        used = sum(m.memory_bytes or 0 for m in fleet.models())
        need = sum(p.stat().st_size for p in (repo / "other").rglob("*") if p.is_file())
        # Free room is half the encoder short of ``other``: only evicting the encoder helps.
        budget = used + need - encoder.memory_bytes // 2
        (repo / "tfhost.toml").write_text(f"[host]\nmemory_budget = {budget}\n{config}")
        fleet.reload()
        with pytest.raises(ResourceExhausted, match=r"used by a pipeline: .*encoder:1"):
            fleet.predict("other", {"x": X})
        assert available(fleet, "encoder") == [1]
        np.testing.assert_allclose(
            fleet.predict("caption_a", {"x": X})["y"], expected("decoder_a", X), rtol=1e-5
        )
