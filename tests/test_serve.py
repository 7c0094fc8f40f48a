"""``tfhost serve`` end to end: a real server in a subprocess, real clients — httpx, the TF
Serving gRPC stubs and tritonclient (HTTP and gRPC)."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.utils import InferenceServerException

from tests.serve_support import ServerProcess

TOOLBOX_IMAGE = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)


@pytest.fixture(scope="module")
def rest(server: ServerProcess) -> Iterator[httpx.Client]:
    assert server.rest is not None
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as ch:
        yield ch


@pytest.fixture(scope="module")
def triton(server: ServerProcess) -> Iterator[triton_http.InferenceServerClient]:
    assert server.rest is not None
    client = triton_http.InferenceServerClient(server.rest.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_g(server: ServerProcess) -> Iterator[triton_grpc.InferenceServerClient]:
    assert server.grpc is not None
    client = triton_grpc.InferenceServerClient(server.grpc)
    yield client
    client.close()


# -- TensorFlow Serving REST ----------------------------------------------------------------


def test_tfs_rest_predict_row_and_columnar(rest: httpx.Client) -> None:
    row = rest.post("/v1/models/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert row.status_code == 200, row.text
    assert row.headers["content-type"] == "application/json"
    assert row.json() == {"predictions": [2.5, 3.0, 4.5]}
    columnar = rest.post("/v1/models/half_plus_two:predict", json={"inputs": [1.0, 2.0]})
    assert columnar.json() == {"outputs": [2.5, 3.0]}


def test_tfs_rest_versions_and_labels_reach_their_version(rest: httpx.Client) -> None:
    # half_plus_two_2_versions: both versions compute x/2 + 2; status tells them apart.
    body = {"instances": [2.0]}
    for path in ("/versions/123", "/versions/124", "/labels/stable", "/labels/canary", ""):
        answer = rest.post(f"/v1/models/half_plus_two_2_versions{path}:predict", json=body)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"predictions": [3.0]}
    status = rest.get("/v1/models/half_plus_two_2_versions/versions/124").json()
    assert [s["version"] for s in status["model_version_status"]] == ["124"]
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    both = rest.get("/v1/models/half_plus_two_2_versions").json()
    assert sorted(s["version"] for s in both["model_version_status"]) == ["123", "124"]
    # TF Serving's status ignores a label: every version.
    labelled = rest.get("/v1/models/half_plus_two_2_versions/labels/canary").json()
    assert labelled == both


def test_tfs_rest_errors_are_tf_servings(rest: httpx.Client) -> None:
    cases = [
        ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404, "nope"),
        ("POST", "/v1/models/half_plus_two/versions/99:predict", {"instances": [1]}, 404, "99"),
        ("GET", "/v1/models", None, 400, "Missing model name"),
        ("GET", "/v1/models/foo:predict", None, 400, "Malformed request"),
        ("PUT", "/v1/models/half_plus_two:predict", None, 400, "Malformed request: PUT"),
        ("POST", "/v1/models/foo/version/50:regress", None, 400, "Malformed request"),
        (
            "POST",
            "/v1/models/half_plus_two_2_versions/labels/nope:predict",
            {"instances": [1.0]},
            400,
            "Unrecognized servable version label",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": ["x", "y"]},
            400,
            "not of expected type: float",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": "nope", "instances": [1.0]},
            400,
            'Serving signature name: "nope" not found',
        ),
    ]
    for method, path, body, status, text in cases:
        answer = rest.request(method, path, json=body)
        assert answer.status_code == status, (path, answer.text)
        assert text in answer.json()["error"], (path, answer.text)
    malformed = rest.post("/v1/models/half_plus_two:predict", content=b"instances = [1, 2]")
    assert malformed.status_code == 400
    assert "JSON Parse error" in malformed.json()["error"]


def test_tfs_rest_classify_and_regress(rest: httpx.Client) -> None:
    # TF Serving's own tests: tensorflow_model_server_test.py testClassifyREST/testRegressREST.
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    answer = rest.post("/v1/models/half_plus_two:classify", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [[["", 3.0]]]}
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    answer = rest.post("/v1/models/half_plus_two:regress", json=body)
    assert answer.json() == {"results": [3.0]}


def test_classify_and_regress_count_in_the_statistics(rest: httpx.Client) -> None:
    """Each tf.Example request is one inference and one execution in Triton's statistics,
    however many examples it holds."""

    def stats() -> dict[str, int]:
        (entry,) = rest.get("/v2/models/half_plus_two/stats").json()["model_stats"]
        return {
            "success": entry["inference_stats"]["success"]["count"],
            "inferences": entry["inference_count"],
            "executions": entry["execution_count"],
        }

    before = stats()
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}
    assert rest.post("/v1/models/half_plus_two:classify", json=body).status_code == 200
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert rest.post("/v1/models/half_plus_two:regress", json=body).status_code == 200
    assert stats() == {key: value + 2 for key, value in before.items()}


def test_tfs_rest_metadata_names_every_signature(rest: httpx.Client) -> None:
    answer = rest.get("/v1/models/half_plus_two/metadata")
    assert answer.status_code == 200, answer.text
    metadata = answer.json()
    assert metadata["model_spec"]["name"] == "half_plus_two"
    assert metadata["model_spec"]["version"] == "123"
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert defs["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert defs["classify_x_to_y"]["method_name"] == "tensorflow/serving/classify"


# -- TensorFlow Serving gRPC ----------------------------------------------------------------


def _tensor(values: np.ndarray) -> object:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values.shape]
        ),
        tensor_content=values.astype(np.float32).tobytes(),
    )


def test_tfs_grpc_predict_metadata_status(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(_tensor(np.array([[1.0], [2.0]])))
    response = stub.Predict(request, timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    import tensorflow as tf

    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [[2.5], [3.0]])

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "half_plus_two"
    metadata.metadata_field.append("signature_def")
    answer = stub.GetModelMetadata(metadata, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(defs)
    assert "serving_default" in defs.signature_def

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "half_plus_two"
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    result = models.GetModelStatus(status, timeout=30)
    assert [v.version for v in result.model_version_status] == [123]
    assert result.model_version_status[0].status.error_code == 0


def test_tfs_grpc_errors_carry_tf_servings_codes(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "half_plus_two"
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModelMetadata(metadata, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one metadata_field" in (caught.value.details() or "")


# -- KServe V2 through tritonclient -----------------------------------------------------------


def test_v2_health_and_metadata_with_tritonclient_http(
    triton: triton_http.InferenceServerClient,
) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("toolbox")
    assert not triton.is_model_ready("nope")
    server = triton.get_server_metadata()
    assert server["name"] == "tfhost"
    assert "binary_tensor_data" in server["extensions"]
    metadata = triton.get_model_metadata("toolbox")
    assert metadata["name"] == "toolbox"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1, -1, 3]}]
    config = triton.get_model_config("toolbox")
    assert config["name"] == "toolbox"
    assert config["input"][0]["name"] == "x"


@pytest.mark.parametrize("binary", [False, True])
def test_v2_infer_with_tritonclient_http(
    triton: triton_http.InferenceServerClient, binary: bool
) -> None:
    x = triton_http.InferInput("x", list(TOOLBOX_IMAGE.shape), "FP32")
    x.set_data_from_numpy(TOOLBOX_IMAGE, binary_data=binary)
    out = triton_http.InferRequestedOutput("y", binary_data=binary)
    result = triton.infer("toolbox", [x], outputs=[out])
    np.testing.assert_array_equal(result.as_numpy("y"), TOOLBOX_IMAGE * 2)
    assert result.get_response()["model_version"] == "1"


def test_v2_bytes_through_a_named_signature(triton: triton_http.InferenceServerClient) -> None:
    text = np.array([b"ab", b"c"], dtype=np.object_)
    x = triton_http.InferInput("text", [2], "BYTES")
    x.set_data_from_numpy(text, binary_data=True)
    result = triton.infer("toolbox", [x], parameters={"signature_name": "echo"})
    assert result.as_numpy("text").tolist() == [b"ab!", b"c!"]


def test_v2_errors_with_tritonclient_http(triton: triton_http.InferenceServerClient) -> None:
    x = triton_http.InferInput("x", [1, 1, 1, 2], "FP32")
    x.set_data_from_numpy(np.zeros((1, 1, 1, 2), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("toolbox", [x])
    assert caught.value.status() == "400"
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("nope", [x])
    assert caught.value.status() == "404"


def test_v2_grpc_with_tritonclient(triton_g: triton_grpc.InferenceServerClient) -> None:
    assert triton_g.is_server_live()
    assert triton_g.is_server_ready()
    assert triton_g.is_model_ready("toolbox")
    metadata = triton_g.get_model_metadata("toolbox", as_json=True)
    assert metadata["inputs"][0]["name"] == "x"
    x = triton_grpc.InferInput("x", list(TOOLBOX_IMAGE.shape), "FP32")
    x.set_data_from_numpy(TOOLBOX_IMAGE)
    result = triton_g.infer("toolbox", [x])
    np.testing.assert_array_equal(result.as_numpy("y"), TOOLBOX_IMAGE * 2)
    config = triton_g.get_model_config("toolbox", as_json=True)
    assert config["config"]["name"] == "toolbox"
    stats = triton_g.get_inference_statistics("toolbox", as_json=True)
    (entry,) = stats["model_stats"]
    assert entry["name"] == "toolbox"
    assert int(entry["inference_stats"]["success"]["count"]) >= 1
    with pytest.raises(InferenceServerException) as caught:
        triton_g.infer("nope", [x])
    assert "NOT_FOUND" in str(caught.value.status())


def test_v2_statistics_count_requests(triton: triton_http.InferenceServerClient) -> None:
    before = triton.get_inference_statistics("toolbox")["model_stats"][0]
    x = triton_http.InferInput("x", list(TOOLBOX_IMAGE.shape), "FP32")
    x.set_data_from_numpy(TOOLBOX_IMAGE)
    triton.infer("toolbox", [x])
    after = triton.get_inference_statistics("toolbox")["model_stats"][0]
    success = after["inference_stats"]["success"]["count"]
    assert success == before["inference_stats"]["success"]["count"] + 1
    # One request of two rows: one inference, as Triton counts for max_batch_size 0.
    assert after["inference_count"] == before["inference_count"] + 1
    assert after["execution_count"] == before["execution_count"] + 1
    # Asking for an output the model lacks is refused before it runs: nothing counted.
    with pytest.raises(InferenceServerException, match="has no output 'zzz'"):
        triton.infer("toolbox", [x], outputs=[triton_http.InferRequestedOutput("zzz")])
    refused = triton.get_inference_statistics("toolbox")["model_stats"][0]
    assert refused["inference_count"] == after["inference_count"]
    assert refused["execution_count"] == after["execution_count"]
    assert (
        refused["inference_stats"]["fail"]["count"] == after["inference_stats"]["fail"]["count"] + 1
    )


def test_v2_repository_unload_and_load(
    triton: triton_http.InferenceServerClient, rest: httpx.Client, channel: grpc.Channel
) -> None:
    index = {(e["name"], e.get("version")): e["state"] for e in triton.get_model_repository_index()}
    assert index[("half_plus_three", "123")] == "READY"
    triton.unload_model("half_plus_three")
    assert not triton.is_model_ready("half_plus_three")
    index = {e["name"]: e for e in triton.get_model_repository_index()}
    # As Triton: the version it served is still named, with why it is not.
    assert index["half_plus_three"] == {
        "name": "half_plus_three",
        "version": "123",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    }
    # Requests for it are refused at once, not held for a load nothing will start.
    body = {"instances": [1.0]}
    answer = rest.post("/v1/models/half_plus_three:predict", json=body, timeout=10)
    assert answer.status_code == 404 and "half_plus_three" in answer.json()["error"]
    infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    answer = rest.post("/v2/models/half_plus_three/infer", json=infer, timeout=10)
    assert answer.status_code == 404 and "half_plus_three" in answer.json()["error"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_three"
    request.inputs["x"].CopyFrom(_tensor(np.array([1.0])))
    with pytest.raises(grpc.RpcError) as refused:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    triton.load_model("half_plus_three")
    assert triton.is_model_ready("half_plus_three")
    with pytest.raises(InferenceServerException):
        triton.load_model("not_in_the_repository")


def test_v2_repository_requests_tfhost_cannot_honour_are_refused(
    triton: triton_http.InferenceServerClient,
    triton_g: triton_grpc.InferenceServerClient,
    rest: httpx.Client,
) -> None:
    """A config override or model files in a load would be silently ignored: refused, as
    are a malformed body and parameters of the wrong type; the model is left as it was."""
    config = json.dumps({"max_batch_size": 4, "input": [{"name": "zzz"}]})
    for client in (triton, triton_g):
        with pytest.raises(InferenceServerException, match="'config' is not supported"):
            client.load_model("half_plus_two", config=config)
        with pytest.raises(InferenceServerException, match=r"'file:1/model\.savedmodel' is not"):
            client.load_model("half_plus_two", files={"file:1/model.savedmodel": b"x"})
    base = "/v2/repository/models/half_plus_two"
    for path, body, error in (
        (f"{base}/load", b"{bad", "malformed JSON"),
        (f"{base}/unload", b"garbage", "malformed JSON"),
        (f"{base}/load", b"[1]", "must be a JSON object"),
        (f"{base}/load", b'{"parameters": {"config": 5}}', "'config' is not supported"),
        (f"{base}/unload", b'{"parameters": {"unload_dependents": 1}}', "must be a bool"),
        (f"{base}/unload", b'{"parameters": {"dependents": true}}', "unrecognized unload"),
    ):
        answer = rest.post(path, content=body)
        assert answer.status_code == 400, (path, body, answer.text)
        assert error in answer.json()["error"], (path, body)
    assert triton.is_model_ready("half_plus_two")
    # Triton's own parameter is taken (tfhost's models have no dependents).
    triton_g.unload_model("half_plus_two", unload_dependents=True)
    assert not triton.is_model_ready("half_plus_two")
    triton.load_model("half_plus_two")
    assert triton.is_model_ready("half_plus_two")


# -- metrics and the status page -----------------------------------------------------------


def test_metrics_count_requests_by_protocol_and_status(rest: httpx.Client) -> None:
    rest.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
    rest.post("/v1/models/half_plus_two:predict", json={"instances": ["x"]})
    for path in ("/metrics", "/monitoring/prometheus/metrics"):
        text = rest.get(path).text
        assert "# TYPE tfhost_requests_total counter" in text
        assert (
            'tfhost_requests_total{model="half_plus_two",protocol="tfs_rest",status="OK",'
            'version="123"}' in text
        )
        assert 'status="INVALID_ARGUMENT"' in text
        assert 'tfhost_model_state{model="toolbox",state="AVAILABLE",version="1"} 1.0' in text
        assert "tfhost_model_memory_bytes" in text


def test_made_up_model_names_do_not_grow_the_metrics(
    rest: httpx.Client, channel: grpc.Channel
) -> None:
    names = [f"nobody_{i}" for i in range(20)]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for name in names:
        answer = rest.post(f"/v1/models/{name}:predict", json={"instances": [1.0]})
        assert answer.status_code == 404
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    text = rest.get("/metrics").text
    assert "nobody_" not in text
    # They are counted, under one empty model name.
    for protocol in ("tfs_rest", "tfs_grpc"):
        line = next(
            line
            for line in text.splitlines()
            if line.startswith("tfhost_requests_total{")
            and f'protocol="{protocol}"' in line
            and 'model=""' in line
            and 'status="NOT_FOUND"' in line
        )
        assert float(line.rsplit(" ", 1)[1]) >= len(names)
    assert "nobody_" not in rest.get("/").text


class _Table(html.parser.HTMLParser):
    """The rows of the page's models table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_cell = False
        self.refresh: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._in_cell = True
            self.rows[-1].append("")
        elif tag == "meta" and dict(attrs).get("http-equiv") == "refresh":
            self.refresh = dict(attrs).get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def test_status_page_lists_every_version(rest: httpx.Client) -> None:
    page = rest.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    table = _Table()
    table.feed(page.text)
    assert table.refresh is not None and int(table.refresh) > 0
    rows = {(row[0], row[1]): row for row in table.rows if row}
    assert rows[("half_plus_two_2_versions", "124")][2] == "AVAILABLE"
    assert rows[("half_plus_two_2_versions", "124")][3] == "canary"
    assert rows[("toolbox", "1")][2] == "AVAILABLE"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium here")
def test_status_page_in_a_headless_browser(server: ServerProcess) -> None:
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--dump-dom",
                f"{server.rest}/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    table = _Table()
    table.feed(dom)
    names = {row[0] for row in table.rows if row}
    assert {"half_plus_two", "toolbox", "counter"} <= names


def test_v2_infer_routes_refuse_other_methods_and_bad_versions(rest: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    for path in ("/v2/models/half_plus_two/infer", "/v2/models/half_plus_two/versions/123/infer"):
        for method in ("GET", "PUT", "HEAD"):
            answer = rest.request(method, path)
            assert answer.status_code == 405, (method, path)
            if method != "HEAD":
                assert answer.json()["error"] == f"{method} is not allowed on {path}"
        assert rest.post(path, json=body).status_code == 200, path
    answer = rest.post("/v2/models/half_plus_two/versions/x/infer", json=body)
    assert answer.status_code == 404
    assert "not a version number" in answer.json()["error"]
    answer = rest.post(
        "/v2/models/half_plus_two/infer",
        content=orjson.dumps(body),
        headers={"Inference-Header-Content-Length": "many"},
    )
    assert answer.status_code == 400
    assert "Inference-Header-Content-Length is not a number" in answer.json()["error"]


def test_json_error_for_an_unknown_route(rest: httpx.Client) -> None:
    answer = rest.get("/v2/nothing/here")
    assert answer.status_code == 404
    assert "error" in answer.json()
    answer = rest.get("/v1/models/half_plus_two/versions/123/metadata/extra")
    assert answer.status_code == 400
    assert json.loads(answer.text)["error"].startswith("Malformed request")
