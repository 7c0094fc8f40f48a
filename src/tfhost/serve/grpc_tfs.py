"""TensorFlow Serving's gRPC services (``tensorflow.serving.PredictionService`` and
``ModelService``) on the plane, with the stubs ``tensorflow-serving-api`` ships."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
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
from tfhost.serve import signature_defs, tfs
from tfhost.serve.plane import Plane
from tfhost.serve.status import grpc_code

_log = logging.getLogger("tfhost.serve")

_T = TypeVar("_T")


async def answer(context: grpc.aio.ServicerContext, call: Awaitable[_T], what: str) -> _T:
    """``call``'s result, or the call aborted with the code its error maps to."""
    try:
        return await call
    except TfhostError as exc:
        await _abort(context, grpc_code(exc), exc.message)
    except Exception as exc:  # a bug: reported as INTERNAL with its type, logged
        _log.exception("gRPC %s failed", what)
        await _abort(context, grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, plane: Plane) -> None:
        self._plane = plane

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await answer(context, tfs.predict_grpc(self._plane, request), "Predict")

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await answer(context, tfs.classify_grpc(self._plane, request), "Classify")

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await answer(context, tfs.regress_grpc(self._plane, request), "Regress")

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await answer(
            context, tfs.multi_inference_grpc(self._plane, request), "MultiInference"
        )

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await answer(context, self._metadata(request), "GetModelMetadata")

    async def _metadata(self, request: Any) -> Any:
        signature_defs.check_metadata_request(request)
        response: get_model_metadata_pb2.GetModelMetadataResponse = await tfs.metadata(
            self._plane, tfs.spec_of(request.model_spec)
        )
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, plane: Plane) -> None:
        self._plane = plane

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def status() -> Any:
            if not request.HasField("model_spec"):  # GetModelStatusImpl's first check
                raise InputError("Missing ModelSpec")
            return tfs.status(self._plane, tfs.spec_of(request.model_spec))

        return await answer(context, status(), "GetModelStatus")

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Put the request's ModelServerConfig in force (TF Serving's meaning); an empty
        request re-reads the config file and the repository."""
        return await answer(context, self._reload(request), "HandleReloadConfigRequest")

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

        def reload() -> None:
            fleet.reload(config)
            # As TensorFlow Serving's ReloadConfig: answer once the new models are in.
            fleet.wait_settled(fleet.settings.demand_timeout_s)

        await asyncio.to_thread(reload)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response
