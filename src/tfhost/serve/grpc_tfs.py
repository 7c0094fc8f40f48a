"""TensorFlow Serving's gRPC services (``tensorflow.serving.PredictionService`` and
``ModelService``) on the plane, with the stubs ``tensorflow-serving-api`` ships; each call
runs on a thread of the gRPC pool (``workers``)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tfhost.errors import InputError, TfhostError
from tfhost.fleet import ConfigError, models_config_from_proto
from tfhost.serve import signature_defs, tfs, workers
from tfhost.serve.plane import Plane
from tfhost.serve.status import grpc_code

_log = logging.getLogger("tfhost.serve")

_T = TypeVar("_T")


def answer(context: grpc.ServicerContext, call: Coroutine[Any, Any, _T], what: str) -> _T:
    """``call`` run on this pool thread; its result, or the call aborted with the code its
    error maps to."""
    try:
        return workers.run(call)
    except TfhostError as exc:
        _abort(context, grpc_code(exc), exc.message)
    except Exception as exc:  # a bug: reported as INTERNAL with its type, logged
        _log.exception("gRPC %s failed", what)
        _abort(context, grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, plane: Plane) -> None:
        self._plane = plane

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, tfs.predict_grpc(self._plane, request), "Predict")

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, tfs.classify_grpc(self._plane, request), "Classify")

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, tfs.regress_grpc(self._plane, request), "Regress")

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, tfs.multi_inference_grpc(self._plane, request), "MultiInference")

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return answer(context, self._metadata(request), "GetModelMetadata")

    async def _metadata(self, request: Any) -> Any:
        signature_defs.check_metadata_request(request)
        response: get_model_metadata_pb2.GetModelMetadataResponse = await tfs.metadata(
            self._plane, tfs.spec_of(request.model_spec)
        )
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, plane: Plane) -> None:
        self._plane = plane

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def status() -> Any:
            if not request.HasField("model_spec"):  # GetModelStatusImpl's first check
                raise InputError("Missing ModelSpec")
            return tfs.status(self._plane, tfs.spec_of(request.model_spec))

        return answer(context, status(), "GetModelStatus")

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Put the request's ModelServerConfig in force (TF Serving's meaning); an empty
        request re-reads the config file and the repository."""
        return answer(context, self._reload(request), "HandleReloadConfigRequest")

    async def _reload(self, request: Any) -> Any:
        fleet = self._plane.fleet
        config = None
        if request.HasField("config"):
            if request.config.WhichOneof("config") != "model_config_list":
                raise InputError(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported"
                )
            try:
                config = models_config_from_proto(fleet.repository, request.config)
            except ConfigError as exc:
                raise InputError(str(exc)) from None

        fleet.reload(config)
        # As TensorFlow Serving's ReloadConfig: answer once the new models are in.
        fleet.wait_settled(fleet.settings.demand_timeout_s)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response
