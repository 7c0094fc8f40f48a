"""The Host API: input checking, states and events, handles, names, threads."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tfhost import (
    AlreadyExists,
    Code,
    Event,
    Format,
    FormatError,
    Host,
    InputError,
    NotFound,
    State,
    Unavailable,
)
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.state import TRANSITIONS

from .conftest import ArtifactMap


@pytest.fixture(scope="module")
def mixed_dtypes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel with float32, int32 and string inputs."""
    import tensorflow as tf

    class Mixed(tf.Module):
        @tf.function(
            autograph=False,
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="f"),
                tf.TensorSpec([None], tf.int32, name="i"),
                tf.TensorSpec([None], tf.string, name="s"),
            ],
        )
        def serve(self, f: tf.Tensor, i: tf.Tensor, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"f2": f * 2.0, "i1": i + 1, "len": tf.strings.length(s)}

    module = Mixed()
    path = tmp_path_factory.mktemp("mixed") / "mixed"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def mixed_host(mixed_dtypes: Path, artifacts: ArtifactMap) -> Host:
    host = Host()
    host.load("mixed", mixed_dtypes)
    host.load("graph", artifacts[Format.TF1_SAVED_MODEL, 1.0])
    yield host  # type: ignore[misc]
    host.close()


GOOD = {"f": [[1.0, 2.0]], "i": [3], "s": ["héllo"]}


def test_inputs_are_converted_to_the_declared_dtypes(mixed_host: Host) -> None:
    out = mixed_host.predict("mixed", GOOD)
    np.testing.assert_array_equal(out["f2"], np.array([[2.0, 4.0]], np.float32))
    assert out["i1"].dtype == np.int32 and out["i1"].tolist() == [4]
    assert out["len"].tolist() == [len("héllo".encode())]
    # int -> float32 and int64 -> int32 (values fit), bytes for strings: all fine.
    out = mixed_host.predict(
        "mixed",
        {"f": np.array([[1, 2]], np.int64), "i": np.array([7], np.int64), "s": [b"ab"]},
    )
    assert out["f2"].tolist() == [[2.0, 4.0]] and out["i1"].tolist() == [8]


@pytest.mark.parametrize(
    ("inputs", "fragments"),
    [
        ({**GOOD, "i": np.array([1.5])}, ["'i'", "int32", "float64", "without losing"]),
        ({**GOOD, "i": np.array([2**40])}, ["'i'", "int32", "int64"]),
        ({**GOOD, "f": [["a", "b"]]}, ["'f'", "float32", "strings"]),
        ({**GOOD, "s": [1, 2]}, ["'s'", "strings"]),
        ({**GOOD, "f": [[1.0, 2.0, 3.0]]}, ["'f'", "[?, 2]", "[1, 3]"]),
        ({**GOOD, "f": [1.0, 2.0]}, ["'f'", "[?, 2]", "[2]"]),
        ({**GOOD, "f": [[1.0], [2.0, 3.0]]}, ["'f'", "rectangular"]),
        ({"f": GOOD["f"], "i": GOOD["i"]}, ["missing ['s']"]),
        ({**GOOD, "extra": [1]}, ["unknown ['extra']"]),
    ],
    ids=[
        "float-to-int",
        "int-overflow",
        "strings-to-float",
        "numbers-to-string",
        "wrong-dim",
        "wrong-rank",
        "ragged",
        "missing",
        "unknown",
    ],
)
def test_bad_inputs_get_an_input_error_naming_what_and_why(
    mixed_host: Host, inputs: dict[str, object], fragments: list[str]
) -> None:
    with pytest.raises(InputError) as caught:
        mixed_host.predict("mixed", inputs)
    assert caught.value.code is Code.INVALID_ARGUMENT
    message = str(caught.value)
    assert "'mixed'" in message
    for fragment in fragments:
        assert fragment in message, message
    # The model keeps serving afterwards.
    assert mixed_host.predict("mixed", GOOD)["i1"].tolist() == [4]


def test_graph_mode_runtime_refusals_are_input_errors(mixed_host: Host) -> None:
    with pytest.raises(InputError, match="Matrix size-incompatible"):
        mixed_host.predict("graph", {"x": np.ones((1, 4), np.float32)})
    np.testing.assert_array_equal(
        mixed_host.predict("graph", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0)
    )


def test_not_a_mapping_unknown_model_version_and_signature(mixed_host: Host) -> None:
    with pytest.raises(InputError, match="must be a mapping"):
        mixed_host.predict("mixed", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(
        NotFound, match=r"'nope' is not loaded; loaded models: \['graph', 'mixed'\]"
    ):
        mixed_host.predict("nope", GOOD)
    with pytest.raises(NotFound, match="has no version 7"):
        mixed_host.predict("mixed", GOOD, version=7)
    with pytest.raises(NotFound, match=r"no signature 'other'; it has \['serving_default'\]"):
        mixed_host.predict("mixed", GOOD, signature="other")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 200, "a..b", "a b"])
def test_unsafe_model_names_are_refused(host: Host, artifacts: ArtifactMap, name: str) -> None:
    with pytest.raises(InputError, match="invalid model name"):
        host.load(name, artifacts[Format.TF2_SAVED_MODEL, 1.0])
    assert host.models() == []


def test_unknown_isolation_is_refused(host: Host, artifacts: ArtifactMap) -> None:
    with pytest.raises(InputError, match="unknown isolation 'sandbox'"):
        host.load("m", artifacts[Format.TF2_SAVED_MODEL, 1.0], isolation="sandbox")


def test_loading_the_same_version_twice_is_refused(host: Host, artifacts: ArtifactMap) -> None:
    host.load("m", artifacts[Format.TF2_SAVED_MODEL, 1.0])
    with pytest.raises(AlreadyExists, match="already available"):
        host.load("m", artifacts[Format.TF2_SAVED_MODEL, 2.0])
    host.load("m", artifacts[Format.TF2_SAVED_MODEL, 2.0], version=2)
    assert [m.version for m in host.models()] == [1, 2]
    np.testing.assert_allclose(host.predict("m", {"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 2.0))


def test_every_transition_is_observed_in_order(
    host: Host, artifacts: ArtifactMap, tmp_path: Path
) -> None:
    events: list[Event] = []
    host.subscribe(events.append)
    host.load("m", artifacts[Format.TF2_SAVED_MODEL, 1.0])
    host.unload("m")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"nonsense")
    with pytest.raises(FormatError):
        host.load("bad", bad)
    moves = [(str(e.id), e.previous, e.state) for e in events]
    assert moves == [
        ("m:1", State.START, State.LOADING),
        ("m:1", State.LOADING, State.AVAILABLE),
        ("m:1", State.AVAILABLE, State.UNLOADING),
        ("m:1", State.UNLOADING, State.END),
        ("bad:1", State.START, State.LOADING),
        ("bad:1", State.LOADING, State.FAILED),
    ]
    assert events[-1].error is not None and "GraphDef" in str(events[-1].error)
    for event in events:
        assert event.state in TRANSITIONS[event.previous]


def test_a_handle_keeps_the_servable_until_released(host: Host, artifacts: ArtifactMap) -> None:
    host.load("m", artifacts[Format.TF1_SAVED_MODEL, 1.0])
    handle = host.acquire("m")
    done = threading.Event()

    def unload() -> None:
        host.unload("m")
        done.set()

    thread = threading.Thread(target=unload)
    thread.start()
    host.wait_for("m", 1, [State.UNLOADING], timeout=30)
    with pytest.raises(Unavailable, match="unloading"):
        host.predict("m", {"x": SAMPLE_X})
    # The claim still works: the session is not closed under it.
    np.testing.assert_array_equal(handle.predict({"x": SAMPLE_X})["y"], expected_y(SAMPLE_X, 1.0))
    assert not done.is_set()
    handle.release()
    thread.join(30)
    assert done.is_set()
    assert host.models() == []


@pytest.mark.parametrize("fmt", [Format.TF2_SAVED_MODEL, Format.TF1_SAVED_MODEL])
def test_unload_drain_timeout_revokes_late_handles(
    host: Host, artifacts: ArtifactMap, fmt: Format
) -> None:
    """Past its timeout an unload goes ahead: the version ends, a late handle fails."""
    host.load("m", artifacts[fmt, 1.0])
    handle = host.acquire("m")
    started = time.monotonic()
    host.unload("m", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 10
    assert host.models() == []
    with pytest.raises(Unavailable, match="'m' was unloaded"):
        handle.predict({"x": SAMPLE_X})
    handle.release()


def test_predictions_race_unload_without_crashes(host: Host, artifacts: ArtifactMap) -> None:
    """Many threads predict while the model is unloaded and reloaded: only clean errors."""
    path = artifacts[Format.TF1_SAVED_MODEL, 2.0]
    host.load("m", path)
    stop = threading.Event()
    unexpected: list[BaseException] = []
    served = [0]

    def hammer() -> None:
        while not stop.is_set():
            try:
                y = host.predict("m", {"x": SAMPLE_X})["y"]
                np.testing.assert_array_equal(y, expected_y(SAMPLE_X, 2.0))
                served[0] += 1
            except (NotFound, Unavailable):
                pass
            except BaseException as exc:  # anything else is a bug
                unexpected.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(5):
        host.unload("m")
        host.load("m", path)
    stop.set()
    for t in threads:
        t.join(30)
    assert unexpected == []
    assert served[0] > 0


def test_close_unloads_everything_and_refuses_new_loads(artifacts: ArtifactMap) -> None:
    host = Host()
    host.load("a", artifacts[Format.TF2_SAVED_MODEL, 1.0])
    host.load("b", artifacts[Format.FROZEN_GRAPH, 1.0])
    host.close()
    host.close()
    assert host.models() == []
    with pytest.raises(Unavailable, match="closed"):
        host.load("c", artifacts[Format.TF2_SAVED_MODEL, 1.0])


def test_importing_tfhost_does_not_import_tensorflow() -> None:
    code = "import sys, tfhost; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_version_folders_with_leading_zeros(tmp_path: Path, artifacts: ArtifactMap) -> None:
    """TF Serving's layout allows leading zeros: ``00000003`` is version 3."""
    import shutil

    root = tmp_path / "m"
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], root / "00000003")
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 2.0], root / "12")
    (root / "notes").mkdir()
    with Host() as host:
        assert host.load("m", root).version == 12
        assert host.load("m", root, version=3).version == 3
        np.testing.assert_allclose(
            host.predict("m", {"x": SAMPLE_X}, version=3)["y"], expected_y(SAMPLE_X, 1.0), rtol=1e-6
        )
        with pytest.raises(NotFound, match=r"versions \[3, 12\], not version 4"):
            host.load("m", root, version=4)
