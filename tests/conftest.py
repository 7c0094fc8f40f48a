"""Session-wide fixtures: the example artifacts in every format, generated once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tfhost import Format, Host
from tfhost.examples import write_example, write_half_plus_two

SCALES = (1.0, 2.0)
TESTS = Path(__file__).parent

ArtifactMap = dict[tuple[Format, float], Path]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> ArtifactMap:
    """Two colliding models per format: same names, weights scaled by 1 and by 2."""
    root = tmp_path_factory.mktemp("artifacts")
    return {
        (fmt, scale): write_example(root / f"{fmt.value}-{scale:g}", fmt, scale)
        for fmt in Format
        for scale in SCALES
    }


@pytest.fixture(scope="session")
def half_plus_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_half_plus_two(tmp_path_factory.mktemp("hp2") / "half_plus_two")


@pytest.fixture(scope="session")
def alone(
    artifacts: ArtifactMap, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[Format, float], np.ndarray]:
    """Each artifact's output on SAMPLE_X, loaded alone in a fresh process with plain TF."""
    out_dir = tmp_path_factory.mktemp("alone")

    def run(key: tuple[Format, float]) -> tuple[tuple[Format, float], np.ndarray]:
        fmt, scale = key
        out = out_dir / f"{fmt.value}-{scale:g}.npy"
        subprocess.run(
            [
                sys.executable,
                str(TESTS / "reference_alone.py"),
                fmt.value,
                str(artifacts[key]),
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        return key, np.load(out)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(run, artifacts))


@pytest.fixture
def host() -> Iterator[Host]:
    with Host() as h:
        yield h


@pytest.fixture(scope="session")
def toolbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel whose signatures double images, echo strings, sleep, fail or abort."""
    import tensorflow as tf

    class Toolbox(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)]
        )
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * 2.0}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string)]
        )
        def echo(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"text": tf.strings.join([text, "!"])}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([], tf.float32)]
        )
        def sleep(self, seconds: tf.Tensor) -> dict[str, tf.Tensor]:
            # SleepDataset waits without holding a CPU, like a model stuck on I/O.
            start = tf.data.Dataset.range(1)
            slept = tf.raw_ops.SleepDataset(
                input_dataset=start._variant_tensor,
                sleep_microseconds=tf.cast(seconds * 1e6, tf.int64),
                output_types=[tf.int64],
                output_shapes=[[]],
            )
            dataset = tf.data.experimental.from_variant(slept, start.element_spec)
            return {"slept": dataset.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([], tf.string)]
        )
        def fail(self, path: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"data": tf.io.read_file(path)}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([], tf.string)]
        )
        def abort(self, message: tf.Tensor) -> dict[str, tf.Tensor]:
            # A crash in native code, as a buggy custom op would crash: SIGABRT.
            with tf.control_dependencies([tf.raw_ops.Abort(error_msg="toolbox abort")]):
                return {"never": tf.identity(message)}

    module = Toolbox()
    path = tmp_path_factory.mktemp("toolbox") / "toolbox"
    signatures = {
        "serving_default": module.double,
        "echo": module.echo,
        "sleep": module.sleep,
        "fail": module.fail,
        "abort": module.abort,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture(scope="session")
def batchy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel for batching: a batch-major signature, one whose output is not
    batch-major, variable-length inputs, a slow one and one that fails on some values."""
    import tensorflow as tf

    weights = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    table = tf.constant([10.0, 20.0, 30.0])

    class Batchy(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 4], tf.float32)]
        )
        def dense(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(x, weights) + 1.0}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 4], tf.float32)]
        )
        def totals(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * 2.0, "total": tf.reduce_sum(x, axis=0)}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, None], tf.float32)]
        )
        def ragged(self, tokens: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"doubled": tokens * 2.0}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 1], tf.float32)]
        )
        def slow(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            start = tf.data.Dataset.range(1)
            slept = tf.raw_ops.SleepDataset(
                input_dataset=start._variant_tensor,
                sleep_microseconds=tf.constant(200_000, tf.int64),
                output_types=[tf.int64],
                output_shapes=[[]],
            )
            dataset = tf.data.experimental.from_variant(slept, start.element_spec)
            waited = dataset.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)
            with tf.control_dependencies([waited]):
                return {"y": x + 1.0}

        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None], tf.int32)]
        )
        def lookup(self, index: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"value": tf.gather(table, index)}

    module = Batchy()
    path = tmp_path_factory.mktemp("batchy") / "batchy"
    signatures = {
        "serving_default": module.dense,
        "totals": module.totals,
        "ragged": module.ragged,
        "slow": module.slow,
        "lookup": module.lookup,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


SERVE_TOML = """
[models.half_plus_two_2_versions]
version_policy = "all"
labels = { stable = 123, canary = 124 }
"""


@pytest.fixture(scope="session")
def serve_repo(tmp_path_factory: pytest.TempPathFactory, toolbox: Path) -> Path:
    """TF Serving's test models under the names its tests use, and the toolbox."""
    import shutil

    from tests.serve_support import tf_serving_repository

    repo = tf_serving_repository(tmp_path_factory.mktemp("serve"))
    shutil.copytree(toolbox, repo / "toolbox" / "1")
    (repo / "tfhost.toml").write_text(SERVE_TOML)
    return repo


@pytest.fixture(scope="session")
def server(serve_repo: Path) -> Iterator[object]:
    """One ``tfhost serve`` of ``serve_repo`` for the whole session (REST and gRPC)."""
    from tests.serve_support import ServerProcess

    with ServerProcess([str(serve_repo)]) as process:
        yield process
        assert process.terminate() == 0, process.log()
