"""TensorFlow Serving's own server tests, replayed against a live ``tfhost serve``.

Replayed from tensorflow/serving (the commit ``tests/data/tf_serving/README.md`` names), on
TF Serving's own test models (``tests/data/tf_serving/``), with TF Serving's clients: its
gRPC stubs (``tensorflow_serving.apis.*_pb2_grpc``) and plain HTTP (httpx for urllib).

``model_servers/tensorflow_model_server_test.py`` (with ``test_util/
tensorflow_model_server_test_base.py``): each server is started as its ``RunServer``
starts ``tensorflow_model_server`` — ``--port --rest_api_port --rest_api_timeout_in_ms=5000``
and ``--model_name/--model_base_path`` or ``--model_config_file`` (ports 0 here, on
127.0.0.1), one server per distinct argument set, as its ``model_servers_dict`` caches them.
Replayed: WaitForServerReady (the base's readiness probe: Predict for a missing model must
fail with "Servable" in its details), testGetModelStatus, testGetModelMetadata,
testClassify(+Tf2), testRegress(+Tf2), testMultiInference(+Tf2), testPredictSavedModel,
testGoodModelConfig, testBadModelConfig (tfhost's text differs from TF Serving's "Error
parsing text-format tensorflow.serving.ModelServerConfig": the process must exit non-zero
naming the file and the message type), testModelConfigReload,
testModelConfigReloadWithZeroPollPeriod, testClassifyREST, testRegressREST, testPredictREST,
testPredictColumnarREST, testGetStatusREST, testGetModelMetadataREST, testPrometheusEndpoint,
test_tf_saved_model_save, test_tf_saved_model_save_multiple_signatures,
test_sequential_keras_saved_model_save and test_distrat_sequential_keras_saved_model_save
(their models are built here as TF Serving builds them — ``tf.compat.v1`` for the first
two, Keras 2 through ``tf_keras`` for the Keras ones, as TF Serving's ``tf.keras`` was —
in one subprocess, for the two virtual CPUs MirroredStrategy needs). Added: the
FAILED_PRECONDITION case of predict (``predict_util.cc`` RunPredict: a signature the model
lacks — what the dead helper ``_TestBadModel`` checked with a model without signatures), and
ModelService.HandleReloadConfigRequest on the zero-poll server (the way to change its config).

Differences in how servers are run: ``--grpc_socket_path`` and ``--grpc_channel_arguments``
(``grpc.so_reuseaddr=1``, which RunServer always passes) are left out: tfhost refuses both by
name. The reload test polls for the new model for up to 30 s where TF Serving sleeps 10 s
and checks once. testGetModelMetadataREST compares with ``half_plus_two_model_metadata.json``,
which is ``saved_model_half_plus_two_2_versions_metadata.json`` (copied here) for the model
named ``default`` and without ``classify_x2_to_y3`` (the cpu model lacks that signature);
it is derived from the copied file. The tf_saved_model_save tests (and the two Keras ones)
export to one base path each, where TF Serving's share one (and with it one cached server).

Not replayed, because they cannot apply to tfhost:
- testPredictUDS: gRPC on a UNIX socket is not served (``--grpc_socket_path`` is refused).
- testPredictOnTfLite, testPredictWithSignatureDefOnTfLite: TensorFlow Lite is not served.
- testGoodGrpcChannelArgs: ``--grpc_channel_arguments`` is refused by name.
- test_profiler_service_with_valid_trace_request: no TensorFlow profiler service.
- test_tf_text: needs tf_text's custom ops and TF Serving's tf_text_regression model (not
  copied here).
- _TestBadModel / _TestBadModelUpconvertedSavedModel: not tests in TF Serving either (no
  ``test`` prefix), and their model is a SessionBundle, a format tfhost does not read.

``model_servers/http_rest_api_handler_test.cc``: every TEST_F (kPathRegex,
UnsupportedApiCalls, PredictModelNameVersionErrors, PredictRequestErrors, Predict, Regress,
Classify, GetStatus, GetModelMetadata) as HTTP requests: TF Serving's status codes (its
http_server.cc ToHTTPStatusCode) and the error substrings the C++ test checks, plus the
case-insensitivity of kPathRegex "(?i)/v1/.*" that the C++ test does not probe, against a
server with its ServerCore's config: ``saved_model_half_plus_two_2_versions`` at version 123
only, then (as its CreateServerCore does with ReloadConfig) the label ``Version_Label`` added
through HandleReloadConfigRequest.

``model_servers/get_model_status_impl_test.cc``: every TEST_F through gRPC GetModelStatus
and the REST status route, on ``saved_model_half_plus_two_2_versions`` at versions 123 and
124, with get_model_status_impl.cc's NOT_FOUND texts. ModelSpecOverride's second half calls
GetModelStatusWithModelSpec, an in-process API with no wire form; its first half is replayed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serve_support import TF_SERVING_DATA, ServerProcess

# tensorflow_model_server_test.py / _test_base.py
RPC_TIMEOUT = 20.0
HTTP_REST_TIMEOUT_MS = 5000
DEFAULT_SERVING_SIGNATURE_DEF_KEY = "serving_default"

HALF_PLUS_TWO = TF_SERVING_DATA / "saved_model_half_plus_two_cpu"
HALF_PLUS_TWO_TF2 = TF_SERVING_DATA / "saved_model_half_plus_two_tf2_cpu"
HALF_PLUS_THREE = TF_SERVING_DATA / "saved_model_half_plus_three"
TWO_VERSIONS = TF_SERVING_DATA / "saved_model_half_plus_two_2_versions"
TWO_VERSIONS_METADATA = TF_SERVING_DATA / "saved_model_half_plus_two_2_versions_metadata.json"

# servables/tensorflow/testdata/good_model_config.txt, bad_model_config.txt and
# monitoring_config.txt.
GOOD_MODEL_CONFIG = """model_config_list: {
  config: {
    name: "half_plus_two",
    base_path: "${TEST_HALF_PLUS_TWO_DIR}",
    model_platform: "tensorflow"
  },
  config: {
    name: "half_plus_three",
    base_path: "${TEST_HALF_PLUS_THREE_DIR}",
    model_platform: "tensorflow"
  }
}
"""
BAD_MODEL_CONFIG = "improperly formatted file"
MONITORING_CONFIG = """prometheus_config: {
  enable: true,
  path: "/monitoring/prometheus/metrics"
}
"""

# testModelConfigReload's base_config_proto.
BASE_CONFIG_PROTO = """
    model_config_list: {{
      config: {{
        name: "{name}",
        base_path: "{model_path}",
        model_platform: "tensorflow"
      }}
    }}
    """

# http_rest_api_handler_test.cc
TEST_MODEL_NAME = "saved_model_half_plus_two_2_versions"
TEST_MODEL_VERSION1 = 123
TEST_MODEL_VERSION_LABEL = "Version_Label"
NONEXISTENT_MODEL_VERSION_LABEL = "Version_Nonexistent"
UINT64_MAX = 2**64 - 1
HANDLER_CONFIG = f"""model_config_list {{
  config {{
    name: "{TEST_MODEL_NAME}"
    base_path: "{TWO_VERSIONS}"
    model_version_policy {{ specific {{ versions: {TEST_MODEL_VERSION1} }} }}
    model_platform: "tensorflow"
  }}
}}
"""

# get_model_status_impl_test.cc
NONEXISTENT_MODEL_NAME = "nonexistent_model"
TEST_MODEL_VERSION2 = 124
NONEXISTENT_MODEL_VERSION = 125
STATUS_IMPL_CONFIG = f"""model_config_list {{
  config {{
    name: "{TEST_MODEL_NAME}"
    base_path: "{TWO_VERSIONS}"
    model_version_policy {{
      specific {{ versions: {TEST_MODEL_VERSION1} versions: {TEST_MODEL_VERSION2} }}
    }}
    model_platform: "tensorflow"
  }}
}}
"""

# The models tensorflow_model_server_test.py builds with TensorFlow's own APIs, built as it
# builds them (tf.compat.v1 as its `tf`; tf_keras as the Keras 2 its tf.keras was). In a
# subprocess: MirroredStrategy needs two virtual CPUs set before TensorFlow starts.
BUILD_MODELS = textwrap.dedent(
    """
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import importlib.util
    import tensorflow.compat.v1 as tf
    from tensorflow.python.saved_model import signature_constants

    root_dir = sys.argv[1]
    physical_devices = tf.config.experimental.list_physical_devices("CPU")
    tf.config.experimental.set_virtual_device_configuration(
        physical_devices[0],
        [tf.config.experimental.VirtualDeviceConfiguration() for _ in range(2)])

    # test_tf_saved_model_save
    export_path = os.path.join(root_dir, "tf_saved_model_save", "00000123")
    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.)
    root.v2 = tf.Variable(2.)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    to_save = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
    tf.saved_model.experimental.save(root, export_path, to_save)

    # test_tf_saved_model_save_multiple_signatures
    export_path = os.path.join(root_dir, "tf_saved_model_save_multiple", "00000123")
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.},
                         input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.},
                         input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.experimental.save(
        root, export_path,
        signatures={
            signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: root.f,
            "custom_signature_key": root.g})

    if importlib.util.find_spec("tf_keras") is None:
        sys.exit(0)
    import tf_keras

    # test_sequential_keras_saved_model_save
    model = tf_keras.models.Sequential()
    model.add(tf_keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    model.add(tf_keras.layers.Lambda(lambda x: x, name="y"))
    export_path = os.path.join(root_dir, "keras_sequential_saved_model_save", "00000123")
    tf.saved_model.save(model, export_path)

    # test_distrat_sequential_keras_saved_model_save
    strategy = tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1"))
    with strategy.scope():
        model = tf_keras.models.Sequential()
        model.add(tf_keras.layers.Input(dtype="float32", shape=(1,), name="x"))
        model.add(tf_keras.layers.Dense(1, kernel_initializer="ones",
                                        bias_initializer="zeros"))
        model.add(tf_keras.layers.Lambda(lambda x: x, name="y"))
    export_path = os.path.join(root_dir, "distrat_keras_saved_model_save", "00000123")
    tf.saved_model.save(model, export_path)
    """
)

# Servers start ~8 s each, mostly TensorFlow's import: two at a time on two cores (more
# at once thrash: four together take longer than four in a row).
START_WORKERS = 2


def run_server_args(
    model_name: str | None,
    model_path: Path | None,
    *,
    model_config_file: Path | None = None,
    monitoring_config_file: Path | None = None,
    model_config_file_poll_period: int | None = None,
) -> list[str]:
    """TensorflowModelServerTestBase.RunServer's command line, less what tfhost refuses
    (--grpc_socket_path, --grpc_channel_arguments) and with ports picked by the OS."""
    args = ["--port=0", "--rest_api_port=0", f"--rest_api_timeout_in_ms={HTTP_REST_TIMEOUT_MS}"]
    if model_config_file:
        args.append(f"--model_config_file={model_config_file}")
    elif model_path:
        args += [f"--model_name={model_name}", f"--model_base_path={model_path}"]
    else:
        raise ValueError("Both model_config_file and model_path cannot be empty!")
    if monitoring_config_file:
        args.append(f"--monitoring_config_file={monitoring_config_file}")
    if model_config_file_poll_period is not None:
        args.append(f"--model_config_file_poll_wait_seconds={model_config_file_poll_period}")
    return args


class Servers:
    """The servers this module's selected tests need, started in the background, two at a
    time, in the order the tests come, from the first test on; each test waits for its own
    only. Each is a starter registered under a key, for the fixture named ``<key>_server``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(START_WORKERS, thread_name_prefix="server-start")
        self._starters: dict[str, Callable[[], Any]] = {}
        self._futures: dict[str, Future[Any]] = {}

    def register(self, key: str, start: Callable[[], Any]) -> None:
        self._starters[key] = start

    def prefetch(self, keys: set[str]) -> None:
        for key in self._starters:
            if key in keys:
                self._submit(key)

    def _submit(self, key: str) -> Future[Any]:
        if key not in self._futures:
            self._futures[key] = self._pool.submit(self._starters[key])
        return self._futures[key]

    def get(self, key: str) -> Any:
        return self._submit(key).result()

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)
        for future in self._futures.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                server = future.result()
                if isinstance(server, ServerProcess) and server.process.poll() is None:
                    server.process.kill()
                    server.process.wait()


BUILT_MODELS = (
    "tf_saved_model_save",
    "tf_saved_model_save_multiple",
    "keras_sequential_saved_model_save",
    "distrat_keras_saved_model_save",
)


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("conformance")
    launch = Servers(root)

    def server(*args: Any, **kwargs: Any) -> Callable[[], ServerProcess]:
        return lambda: ServerProcess(run_server_args(*args, **kwargs))

    launch.register("default", server("default", HALF_PLUS_TWO))
    launch.register("tf2", server("default", HALF_PLUS_TWO_TF2))

    good = root / "good_model_config.conf"
    good.write_text(
        GOOD_MODEL_CONFIG.replace("${TEST_HALF_PLUS_TWO_DIR}", str(HALF_PLUS_TWO)).replace(
            "${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE)
        )
    )
    launch.register("good_config", server(None, None, model_config_file=good))

    bad = root / "bad_model_config.txt"
    bad.write_text(BAD_MODEL_CONFIG)
    launch.register(
        "bad_config",
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "tfhost.cli",
                "serve",
                *run_server_args(None, None, model_config_file=bad),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "400"},
        ),
    )

    for key, period in (("reload", 1), ("reload_zero", 0)):
        config = root / key / "model_config.txt"
        config.parent.mkdir()
        config.write_text(BASE_CONFIG_PROTO.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
        launch.register(
            key,
            server(None, None, model_config_file=config, model_config_file_poll_period=period),
        )

    monitoring = root / "monitoring_config.txt"
    monitoring.write_text(MONITORING_CONFIG)
    launch.register(
        "prometheus", server("default", HALF_PLUS_TWO, monitoring_config_file=monitoring)
    )

    built = root / "built"

    def build() -> Path:
        done = subprocess.run(
            [sys.executable, "-c", BUILD_MODELS, str(built)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"building the models failed:\n{done.stderr}"
        return built

    launch.register("built", build)

    def after_build(name: str) -> Callable[[], ServerProcess]:
        def start() -> ServerProcess:
            launch.get("built")
            return ServerProcess(run_server_args("default", built / name))

        return start

    handler = root / "http_rest_api_handler.config"
    handler.write_text(HANDLER_CONFIG)
    launch.register("handler", lambda: _handler_server(handler))
    status_impl = root / "get_model_status_impl.config"
    status_impl.write_text(STATUS_IMPL_CONFIG)
    launch.register("status_impl", server(None, None, model_config_file=status_impl))
    for name in BUILT_MODELS:
        launch.register(name, after_build(name))

    wanted = {
        name.removesuffix("_server")
        for item in request.session.items
        for name in getattr(item, "fixturenames", ())
        if name.endswith("_server")
    }
    if importlib.util.find_spec("tf_keras") is None:  # their tests are skipped
        wanted -= {"keras_sequential_saved_model_save", "distrat_keras_saved_model_save"}
    if wanted & set(BUILT_MODELS):
        wanted.add("built")
    launch.prefetch(wanted)
    try:
        yield launch
    finally:
        launch.close()


def _handler_server(config: Path) -> ServerProcess:
    """HttpRestApiHandlerTest's ServerCore: version 123, then ReloadConfig with the label."""
    server = ServerProcess(run_server_args(None, None, model_config_file=config))
    from google.protobuf import text_format

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(HANDLER_CONFIG, request.config)
    entry = request.config.model_config_list.config[0]
    entry.version_labels[TEST_MODEL_VERSION_LABEL] = TEST_MODEL_VERSION1
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = stub.HandleReloadConfigRequest(request, RPC_TIMEOUT)
    assert response.status.error_code == 0, response
    return server


def _server_fixture(key: str) -> Any:
    """The module's fixture ``<key>_server``: that server, once it is ready."""

    @pytest.fixture(scope="module", name=f"{key}_server")
    def fixture(servers: Servers) -> Any:
        return servers.get(key)

    return fixture


default_server = _server_fixture("default")
tf2_server = _server_fixture("tf2")
good_config_server = _server_fixture("good_config")
bad_config_server = _server_fixture("bad_config")  # the process that would not start
reload_server = _server_fixture("reload")
reload_zero_server = _server_fixture("reload_zero")
prometheus_server = _server_fixture("prometheus")
handler_server = _server_fixture("handler")
status_impl_server = _server_fixture("status_impl")
tf_saved_model_save_server = _server_fixture("tf_saved_model_save")
tf_saved_model_save_multiple_server = _server_fixture("tf_saved_model_save_multiple")
keras_sequential_saved_model_save_server = _server_fixture("keras_sequential_saved_model_save")
distrat_keras_saved_model_save_server = _server_fixture("distrat_keras_saved_model_save")


def grpc_address(server: ServerProcess) -> str:
    assert server.grpc is not None
    return server.grpc


def rest_address(server: ServerProcess) -> str:
    assert server.rest is not None
    return server.rest


def prediction_stub(address: str) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))


def model_stub(address: str) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(address))


def call_rest(url: str, req: Any) -> bytes:
    """tensorflow_model_server_test_base.CallREST: POST the JSON, or GET without one; the
    body of a 2xx answer (urlopen raises on any other)."""
    if req is None:
        resp = httpx.get(url, timeout=60)
    else:
        resp = httpx.post(url, content=json.dumps(req).encode("utf-8"), timeout=60)
    assert resp.is_success, (url, resp.status_code, resp.text)
    return resp.content


def sorted_object(obj: Any) -> Any:
    """tensorflow_model_server_test_base.SortedObject."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return sorted(sorted_object(x) for x in obj)
    if isinstance(obj, tuple):
        return sorted(sorted_object(x) for x in obj)
    return obj


def model_version(model_path: Path) -> int:
    """_GetModelVersion: the one version folder's number."""
    return int(os.listdir(model_path)[0])


def verify_model_spec(
    actual_model_spec: Any, exp_model_name: str, exp_signature_name: str, exp_version: int
) -> None:
    assert actual_model_spec.name == exp_model_name
    assert actual_model_spec.signature_name == exp_signature_name
    assert actual_model_spec.version.value == exp_version


def verify_predict_request(
    model_server_address: str,
    expected_output: float,
    expected_version: int,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    rpc_timeout: float = 5.0,
) -> None:
    """TensorflowModelServerTestBase.VerifyPredictRequest."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    dim = request.inputs["x"].tensor_shape.dim.add()
    dim.size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = prediction_stub(model_server_address).Predict(request, rpc_timeout)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, request.model_spec.name, signature_name, expected_version)


def _test_predict(address: str, model_path: Path) -> None:
    """TensorflowModelServerTestBase._TestPredict."""
    expected_version = model_version(model_path)
    verify_predict_request(address, expected_output=3.0, expected_version=expected_version)
    verify_predict_request(
        address, expected_output=3.0, specify_output=False, expected_version=expected_version
    )


# -- tensorflow_model_server_test.py ----------------------------------------------------------


def test_wait_for_server_ready(default_server: ServerProcess) -> None:
    """WaitForServerReady (the base's readiness probe, run before every test): Predict for
    a missing model; the server is ready once that fails with details containing
    'Servable' (basic_manager.cc: "Servable not found for request: Latest(...)")."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    with pytest.raises(grpc.RpcError) as ectxt:
        prediction_stub(grpc_address(default_server)).Predict(request, 5.0)
    assert ectxt.value.code() is grpc.StatusCode.NOT_FOUND
    assert "Servable" in (ectxt.value.details() or "")


def test_get_model_status(default_server: ServerProcess) -> None:
    """testGetModelStatus"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_stub(grpc_address(default_server)).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(default_server: ServerProcess) -> None:
    """testGetModelMetadata"""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    stub = prediction_stub(grpc_address(default_server))
    result = stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == model_version(HALF_PLUS_TWO)
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def _test_classify(server: ServerProcess, model_path: Path) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = prediction_stub(grpc_address(server)).Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(
        result.model_spec,
        request.model_spec.name,
        request.model_spec.signature_name,
        model_version(model_path),
    )


def test_classify(default_server: ServerProcess) -> None:
    """testClassify"""
    _test_classify(default_server, HALF_PLUS_TWO)


def test_classify_tf2(tf2_server: ServerProcess) -> None:
    """testClassifyTf2"""
    _test_classify(tf2_server, HALF_PLUS_TWO_TF2)


def _test_regress(server: ServerProcess, model_path: Path) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = prediction_stub(grpc_address(server)).Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(
        result.model_spec,
        request.model_spec.name,
        request.model_spec.signature_name,
        model_version(model_path),
    )


def test_regress(default_server: ServerProcess) -> None:
    """testRegress"""
    _test_regress(default_server, HALF_PLUS_TWO)


def test_regress_tf2(tf2_server: ServerProcess) -> None:
    """testRegressTf2"""
    _test_regress(tf2_server, HALF_PLUS_TWO_TF2)


def _test_multi_inference(server: ServerProcess, model_path: Path) -> None:
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = prediction_stub(grpc_address(server)).MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(
            result.results[i].model_spec,
            request.tasks[i].model_spec.name,
            request.tasks[i].model_spec.signature_name,
            model_version(model_path),
        )


def test_multi_inference(default_server: ServerProcess) -> None:
    """testMultiInference"""
    _test_multi_inference(default_server, HALF_PLUS_TWO)


def test_multi_inference_tf2(tf2_server: ServerProcess) -> None:
    """testMultiInferenceTf2"""
    _test_multi_inference(tf2_server, HALF_PLUS_TWO_TF2)


def test_predict_saved_model(default_server: ServerProcess) -> None:
    """testPredictSavedModel"""
    _test_predict(grpc_address(default_server), HALF_PLUS_TWO)


def test_predict_signature_not_found_is_failed_precondition(default_server: ServerProcess) -> None:
    """The FAILED_PRECONDITION of Predict (predict_util.cc RunPredict): a signature the
    model lacks — what _TestBadModel asked of a model without signatures."""
    signature_name = "nope"
    with pytest.raises(grpc.RpcError) as ectxt:
        verify_predict_request(
            grpc_address(default_server),
            expected_output=3.0,
            expected_version=model_version(HALF_PLUS_TWO),
            signature_name=signature_name,
        )
    assert ectxt.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f'Serving signature key "{signature_name}" not found.' in (ectxt.value.details() or "")


def test_good_model_config(good_config_server: ServerProcess) -> None:
    """testGoodModelConfig"""
    address = grpc_address(good_config_server)
    verify_predict_request(
        address,
        model_name="half_plus_two",
        expected_output=3.0,
        expected_version=model_version(HALF_PLUS_TWO),
    )
    verify_predict_request(
        address,
        model_name="half_plus_two",
        expected_output=3.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_TWO),
    )
    verify_predict_request(
        address,
        model_name="half_plus_three",
        expected_output=4.0,
        expected_version=model_version(HALF_PLUS_THREE),
    )
    verify_predict_request(
        address,
        model_name="half_plus_three",
        expected_output=4.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_THREE),
    )


def test_bad_model_config(
    servers: Servers, bad_config_server: subprocess.CompletedProcess[str]
) -> None:
    """testBadModelConfig: TF Serving exits with "Error parsing text-format
    tensorflow.serving.ModelServerConfig"; tfhost must exit non-zero naming the file and the
    message type it could not parse."""
    proc = bad_config_server
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())
    assert "tfhost serve: ready" not in proc.stdout
    assert "tensorflow.serving.ModelServerConfig" in stderr, proc.stderr
    assert str(servers.root / "bad_model_config.txt") in stderr, proc.stderr


def _rewrite_config(servers: Servers, key: str, name: str, model_path: Path) -> None:
    (servers.root / key / "model_config.txt").write_text(
        BASE_CONFIG_PROTO.format(name=name, model_path=model_path)
    )


def test_model_config_reload(servers: Servers, reload_server: ServerProcess) -> None:
    """testModelConfigReload"""
    address = grpc_address(reload_server)
    verify_predict_request(
        address,
        model_name="half_plus_two",
        expected_output=3.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_TWO),
    )
    _rewrite_config(servers, "reload", "half_plus_three", HALF_PLUS_THREE)
    # TF Serving sleeps 10 s, then checks once; here: the first success within 30 s.
    deadline = time.monotonic() + 30
    while True:
        try:
            verify_predict_request(
                address,
                model_name="half_plus_three",
                expected_output=4.0,
                specify_output=False,
                expected_version=model_version(HALF_PLUS_THREE),
            )
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_model_config_reload_with_zero_poll_period(
    servers: Servers, reload_zero_server: ServerProcess
) -> None:
    """testModelConfigReloadWithZeroPollPeriod"""
    address = grpc_address(reload_zero_server)
    verify_predict_request(
        address,
        model_name="half_plus_two",
        expected_output=3.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_TWO),
    )
    poll_period = 0
    _rewrite_config(servers, "reload_zero", "half_plus_three", HALF_PLUS_THREE)
    time.sleep(poll_period + 1)
    verify_predict_request(
        address,
        model_name="half_plus_two",
        expected_output=3.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_THREE),
    )


def test_handle_reload_config_request_with_zero_poll_period(
    reload_zero_server: ServerProcess,
) -> None:
    """ModelService.HandleReloadConfigRequest (model_service_impl.cc): the config it carries
    is put in force — ServerCore::ReloadConfig answers once the new models are loaded."""
    address = grpc_address(reload_zero_server)
    from google.protobuf import text_format

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(
        BASE_CONFIG_PROTO.format(name="half_plus_three", model_path=HALF_PLUS_THREE),
        request.config,
    )
    response = model_stub(address).HandleReloadConfigRequest(request, RPC_TIMEOUT)
    assert response.status.error_code == 0
    verify_predict_request(
        address,
        model_name="half_plus_three",
        expected_output=4.0,
        specify_output=False,
        expected_version=model_version(HALF_PLUS_THREE),
    )
    # Only a ModelConfigList: model_service_impl.cc answers anything else INVALID_ARGUMENT.
    custom = model_management_pb2.ReloadConfigRequest()
    custom.config.custom_model_config.Pack(get_model_status_pb2.GetModelStatusRequest())
    with pytest.raises(grpc.RpcError) as ectxt:
        model_stub(address).HandleReloadConfigRequest(custom, RPC_TIMEOUT)
    assert ectxt.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "Only ModelConfigList is currently supported" in (ectxt.value.details() or "")


def test_classify_rest(default_server: ServerProcess) -> None:
    """testClassifyREST"""
    url = f"{rest_address(default_server)}/v1/models/default:classify"
    json_req = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    resp_data = call_rest(url, json_req)
    assert json.loads(resp_data.decode()) == {"results": [[["", 3.0]]]}


def test_regress_rest(default_server: ServerProcess) -> None:
    """testRegressREST"""
    url = f"{rest_address(default_server)}/v1/models/default:regress"
    json_req = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    resp_data = call_rest(url, json_req)
    assert json.loads(resp_data.decode()) == {"results": [3.0]}


def test_predict_rest(default_server: ServerProcess) -> None:
    """testPredictREST"""
    url = f"{rest_address(default_server)}/v1/models/default:predict"
    resp_data = call_rest(url, {"instances": [2.0, 3.0, 4.0]})
    assert json.loads(resp_data.decode()) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(default_server: ServerProcess) -> None:
    """testPredictColumnarREST"""
    url = f"{rest_address(default_server)}/v1/models/default:predict"
    resp_data = call_rest(url, {"inputs": [2.0, 3.0, 4.0]})
    assert json.loads(resp_data.decode()) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(default_server: ServerProcess) -> None:
    """testGetStatusREST"""
    resp_data = call_rest(f"{rest_address(default_server)}/v1/models/default", None)
    assert json.loads(resp_data.decode()) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def half_plus_two_model_metadata() -> Any:
    """servables/tensorflow/testdata/half_plus_two_model_metadata.json: the copied
    saved_model_half_plus_two_2_versions_metadata.json differs from it only in the model's
    name and in classify_x2_to_y3, a signature the cpu model does not have."""
    expected = json.loads(TWO_VERSIONS_METADATA.read_text())
    expected["model_spec"]["name"] = "default"
    del expected["metadata"]["signature_def"]["signature_def"]["classify_x2_to_y3"]
    return expected


def test_get_model_metadata_rest(default_server: ServerProcess) -> None:
    """testGetModelMetadataREST"""
    resp_data = call_rest(f"{rest_address(default_server)}/v1/models/default/metadata", None)
    assert sorted_object(json.loads(resp_data.decode())) == sorted_object(
        half_plus_two_model_metadata()
    )


def test_prometheus_endpoint(prometheus_server: ServerProcess) -> None:
    """testPrometheusEndpoint"""
    resp_data = call_rest(f"{rest_address(prometheus_server)}/monitoring/prometheus/metrics", None)
    assert "# TYPE" in resp_data.decode("utf-8")


# -- http_rest_api_handler_test.cc ------------------------------------------------------------


@pytest.fixture(scope="module")
def handler(handler_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_address(handler_server), timeout=60) as client:
        yield client


def process_request(client: httpx.Client, method: str, path: str, body: str) -> httpx.Response:
    """HttpRestApiHandler::ProcessRequest(method, path, body) as an HTTP request."""
    return client.request(method, path, content=body.encode())


def json_error_msg(resp: httpx.Response) -> str:
    """GetJsonErrorMsg: the JSON object's "error"."""
    doc = resp.json()
    assert isinstance(doc, dict), resp.text
    assert isinstance(doc.get("error"), str), resp.text
    return str(doc["error"])


def expect_error(resp: httpx.Response, status: int, substring: str | None = None) -> None:
    """EXPECT_TRUE(absl::IsXxx(status)) (as http_server.cc's ToHTTPStatusCode makes it an
    HTTP status) and EXPECT_THAT(status.message(), HasSubstr(...))."""
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    if substring is not None:
        assert substring in json_error_msg(resp), (resp.request.url, resp.text)


def expect_ok(resp: httpx.Response, expected: Any) -> None:
    """TF_EXPECT_OK, CompareJson (rapidjson: members unordered, 42 == 42.0) and the one
    Content-Type header."""
    assert resp.status_code == 200, (resp.request.url, resp.text)
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == expected


def test_handler_path_regex(handler: httpx.Client) -> None:
    """kPathRegex "(?i)/v1/.*": /v1/models reaches the handler, /statuspage and /index do
    not (TF Serving's HTTP server answers 404 for a path no handler takes)."""
    expect_error(handler.get("/v1/models"), 400, "Missing model name")
    assert handler.get("/statuspage").status_code == 404
    assert handler.get("/index").status_code == 404


def test_handler_path_regex_is_case_insensitive(handler: httpx.Client) -> None:
    """kPathRegex and kPredictionApiGegex / kModelStatusApiRegex (http_rest_api_util.cc) are
    all (?i): the handler takes /V1/MODELS/... as /v1/models/...."""
    expect_error(handler.get("/V1/Models"), 400, "Missing model name")
    resp = handler.get(f"/V1/MODELS/{TEST_MODEL_NAME}/VERSIONS/{TEST_MODEL_VERSION1}")
    assert resp.status_code == 200, resp.text
    resp = handler.post(f"/V1/Models/{TEST_MODEL_NAME}:PREDICT", json={"instances": [1.0]})
    expect_ok(resp, {"predictions": [2.5]})


def test_handler_unsupported_api_calls(handler: httpx.Client) -> None:
    """UnsupportedApiCalls"""
    cases = [
        ("GET", "/v1/foo", "Malformed request"),
        ("POST", "/v1/foo", "Malformed request"),
        ("GET", "/v1/models", "Missing model name"),
        ("GET", "/v1/models/debug/model_name", "Malformed request"),
        ("POST", "/v1/models", "Malformed request"),
        ("GET", "/v1/models/foo:predict", "Malformed request"),
        ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
        ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
        ("POST", f"/v1/models/foo/versions/{UINT64_MAX}:regress", "Failed to convert version"),
        ("POST", "/v1/models/foo/metadata", "Malformed request"),
        ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
    ]
    for method, path, substring in cases:
        expect_error(process_request(handler, method, path, ""), 400, substring)


def test_handler_predict_model_name_version_errors(handler: httpx.Client) -> None:
    """PredictModelNameVersionErrors"""
    body = '{ "instances": [1] }'
    for path in (
        "/v1/models/foo:predict",
        "/v1/models/foo/versions/50:predict",
        # Valid model name, but invalid version number (99) — as the C++ test writes it.
        f"/v1/models/{TEST_MODEL_NAME}99:predict",
    ):
        expect_error(process_request(handler, "POST", path, body), 404)


def test_handler_predict_request_errors(handler: httpx.Client) -> None:
    """PredictRequestErrors"""
    req_path = f"/v1/models/{TEST_MODEL_NAME}:predict"
    expect_error(
        process_request(handler, "POST", req_path, ""),
        400,
        "JSON Parse error: The document is empty",
    )
    expect_error(
        process_request(handler, "POST", req_path, "instances = [1, 2]"),
        400,
        "JSON Parse error: Invalid value",
    )
    expect_error(
        process_request(handler, "POST", req_path, '{ "instances": ["x", "y"] }'),
        400,
        "not of expected type: float",
    )
    expect_error(
        process_request(
            handler,
            "POST",
            f"/v1/models/{TEST_MODEL_NAME}/labels/{NONEXISTENT_MODEL_VERSION_LABEL}:predict",
            '{ "instances": ["x", "y"] }',
        ),
        400,
        "Unrecognized servable version label",
    )
    expect_error(
        process_request(handler, "POST", req_path, '{ "signature_name": 100 }'),
        400,
        "'signature_name' key must be a string value.",
    )


def test_handler_predict(handler: httpx.Client) -> None:
    """Predict"""
    versions = f"/v1/models/{TEST_MODEL_NAME}/versions/{TEST_MODEL_VERSION1}:predict"
    labels = f"/v1/models/{TEST_MODEL_NAME}/labels/{TEST_MODEL_VERSION_LABEL}:predict"
    cases = [
        (
            f"/v1/models/{TEST_MODEL_NAME}:predict",
            '{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        (versions, '{"instances": [1.0, 2.0]}', {"predictions": [2.5, 3.0]}),
        (labels, '{"instances": [1.0, 2.0]}', {"predictions": [2.5, 3.0]}),
        (
            versions,
            '{"signature_name": "serving_default", "instances": [3.0, 4.0]}',
            {"predictions": [3.5, 4.0]},
        ),
        (
            versions,
            '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}',
            {"outputs": [3.5, 4.0]},
        ),
    ]
    for path, body, expected in cases:
        expect_ok(process_request(handler, "POST", path, body), expected)


def test_handler_regress(handler: httpx.Client) -> None:
    """Regress"""
    body = '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }'
    for path in (
        f"/v1/models/{TEST_MODEL_NAME}:regress",
        f"/v1/models/{TEST_MODEL_NAME}/versions/{TEST_MODEL_VERSION1}:regress",
        f"/v1/models/{TEST_MODEL_NAME}/labels/{TEST_MODEL_VERSION_LABEL}:regress",
    ):
        expect_ok(process_request(handler, "POST", path, body), {"results": [42]})


def test_handler_classify(handler: httpx.Client) -> None:
    """Classify"""
    expect_ok(
        process_request(
            handler,
            "POST",
            f"/v1/models/{TEST_MODEL_NAME}:classify",
            '{"signature_name": "classify_x_to_y", "examples": [ { "x": 20.0 } ] }',
        ),
        {"results": [[["", 12]]]},
    )
    expect_ok(
        process_request(
            handler,
            "POST",
            f"/v1/models/{TEST_MODEL_NAME}/labels/{TEST_MODEL_VERSION_LABEL}:classify",
            '{"signature_name": "classify_x_to_y", "examples": [ { "x": 10.0 } ] }',
        ),
        {"results": [[["", 7]]]},
    )


def test_handler_get_status(handler: httpx.Client) -> None:
    """GetStatus"""
    expected = {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for path in (
        f"/v1/models/{TEST_MODEL_NAME}",
        f"/v1/models/{TEST_MODEL_NAME}/versions/{TEST_MODEL_VERSION1}",
        f"/v1/models/{TEST_MODEL_NAME}/labels/{TEST_MODEL_VERSION_LABEL}",
    ):
        expect_ok(process_request(handler, "GET", path, ""), expected)


def test_handler_get_model_metadata(handler: httpx.Client) -> None:
    """GetModelMetadata"""
    expect_ok(
        process_request(handler, "GET", f"/v1/models/{TEST_MODEL_NAME}/metadata", ""),
        json.loads(TWO_VERSIONS_METADATA.read_text()),
    )


# -- get_model_status_impl_test.cc ------------------------------------------------------------


def get_model_status(server: ServerProcess, request: Any) -> Any:
    return model_stub(grpc_address(server)).GetModelStatus(request, RPC_TIMEOUT)


def test_status_missing_or_empty_model_spec_failure(status_impl_server: ServerProcess) -> None:
    """MissingOrEmptyModelSpecFailure; over REST the model spec is the path's, and a path
    without a model name is "Missing model name in request." (http_rest_api_handler.cc)."""
    with pytest.raises(grpc.RpcError) as ectxt:
        get_model_status(status_impl_server, get_model_status_pb2.GetModelStatusRequest())
    assert ectxt.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    resp = httpx.get(f"{rest_address(status_impl_server)}/v1/models", timeout=60)
    expect_error(resp, 400, "Missing model name in request.")


def test_status_invalid_model_name_failure(status_impl_server: ServerProcess) -> None:
    """InvalidModelNameFailure"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = NONEXISTENT_MODEL_NAME
    with pytest.raises(grpc.RpcError) as ectxt:
        get_model_status(status_impl_server, request)
    assert ectxt.value.code() is grpc.StatusCode.NOT_FOUND
    # get_model_status_impl.cc's text
    message = f"Could not find any versions of model {NONEXISTENT_MODEL_NAME}"
    assert ectxt.value.details() == message
    resp = httpx.get(
        f"{rest_address(status_impl_server)}/v1/models/{NONEXISTENT_MODEL_NAME}", timeout=60
    )
    expect_error(resp, 404, message)
    assert "model_version_status" not in resp.json()


def test_status_invalid_model_version_failure(status_impl_server: ServerProcess) -> None:
    """InvalidModelVersionFailure"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = TEST_MODEL_NAME
    request.model_spec.version.value = NONEXISTENT_MODEL_VERSION
    with pytest.raises(grpc.RpcError) as ectxt:
        get_model_status(status_impl_server, request)
    assert ectxt.value.code() is grpc.StatusCode.NOT_FOUND
    message = f"Could not find version {NONEXISTENT_MODEL_VERSION} of model {TEST_MODEL_NAME}"
    assert ectxt.value.details() == message
    resp = httpx.get(
        f"{rest_address(status_impl_server)}/v1/models/{TEST_MODEL_NAME}"
        f"/versions/{NONEXISTENT_MODEL_VERSION}",
        timeout=60,
    )
    expect_error(resp, 404, message)
    assert "model_version_status" not in resp.json()


def test_status_all_versions_success(status_impl_server: ServerProcess) -> None:
    """AllVersionsSuccess"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = TEST_MODEL_NAME
    response = get_model_status(status_impl_server, request)
    assert len(response.model_version_status) == 2
    assert {s.version for s in response.model_version_status} == {
        TEST_MODEL_VERSION1,
        TEST_MODEL_VERSION2,
    }
    for status in response.model_version_status:
        assert status.status.error_code == 0
        assert status.status.error_message == ""
    resp = httpx.get(f"{rest_address(status_impl_server)}/v1/models/{TEST_MODEL_NAME}", timeout=60)
    assert resp.status_code == 200, resp.text
    statuses = resp.json()["model_version_status"]
    assert {s["version"] for s in statuses} == {"123", "124"}
    for status_json in statuses:
        assert status_json["status"] == {"error_code": "OK", "error_message": ""}


def test_status_single_version_success(status_impl_server: ServerProcess) -> None:
    """SingleVersionSuccess"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = TEST_MODEL_NAME
    request.model_spec.version.value = TEST_MODEL_VERSION1
    response = get_model_status(status_impl_server, request)
    assert len(response.model_version_status) == 1
    assert response.model_version_status[0].version == TEST_MODEL_VERSION1
    assert response.model_version_status[0].status.error_code == 0
    assert response.model_version_status[0].status.error_message == ""
    resp = httpx.get(
        f"{rest_address(status_impl_server)}/v1/models/{TEST_MODEL_NAME}/versions/{TEST_MODEL_VERSION1}",
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    (status_json,) = resp.json()["model_version_status"]
    assert status_json["version"] == "123"
    assert status_json["status"] == {"error_code": "OK", "error_message": ""}


def test_status_model_spec_override(status_impl_server: ServerProcess) -> None:
    """ModelSpecOverride, first half: the request's own model spec is found."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = TEST_MODEL_NAME
    assert len(get_model_status(status_impl_server, request).model_version_status) == 2


# -- tensorflow_model_server_test.py: models built with TensorFlow's APIs ---------------------


def test_tf_saved_model_save(servers: Servers, tf_saved_model_save_server: ServerProcess) -> None:
    """test_tf_saved_model_save"""
    verify_predict_request(
        grpc_address(tf_saved_model_save_server),
        expected_output=12.0,
        specify_output=False,
        expected_version=model_version(servers.root / "built" / "tf_saved_model_save"),
    )


def test_tf_saved_model_save_multiple_signatures(
    servers: Servers, tf_saved_model_save_multiple_server: ServerProcess
) -> None:
    """test_tf_saved_model_save_multiple_signatures"""
    address = grpc_address(tf_saved_model_save_multiple_server)
    expected_version = model_version(servers.root / "built" / "tf_saved_model_save_multiple")
    verify_predict_request(
        address,
        expected_output=2.0,
        expected_version=expected_version,
        signature_name="custom_signature_key",
    )
    verify_predict_request(address, expected_output=1.0, expected_version=expected_version)


# tf_keras is tfhost's optional "legacy" dependency: Keras 2, the tf.keras of TF Serving's test.
needs_tf_keras = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None, reason="tf_keras (Keras 2) is not installed"
)


@needs_tf_keras
def test_sequential_keras_saved_model_save(
    servers: Servers, keras_sequential_saved_model_save_server: ServerProcess
) -> None:
    """test_sequential_keras_saved_model_save"""
    verify_predict_request(
        grpc_address(keras_sequential_saved_model_save_server),
        batch_input=True,
        specify_output=False,
        expected_output=2.0,
        expected_version=model_version(
            servers.root / "built" / "keras_sequential_saved_model_save"
        ),
    )


@needs_tf_keras
def test_distrat_sequential_keras_saved_model_save(
    servers: Servers, distrat_keras_saved_model_save_server: ServerProcess
) -> None:
    """test_distrat_sequential_keras_saved_model_save"""
    verify_predict_request(
        grpc_address(distrat_keras_saved_model_save_server),
        batch_input=True,
        specify_output=False,
        expected_output=2.0,
        expected_version=model_version(servers.root / "built" / "distrat_keras_saved_model_save"),
    )
