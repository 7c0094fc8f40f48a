"""The KServe V2 gRPC service (``inference.GRPCInferenceService``, with Triton's repository,
configuration and statistics calls) on the plane; the protos are the ones tritonclient
ships. Calls Triton has and tfhost does not (streaming, shared memory, trace and log
settings) answer UNIMPLEMENTED."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tfhost.errors import NotFound
from tfhost.serve import v2
from tfhost.serve.codecs import v2 as codec
from tfhost.serve.grpc_tfs import answer
from tfhost.serve.plane import Plane


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, plane: Plane) -> None:
        self._plane = plane

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=v2.ready(self._plane))

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def ready() -> Any:
            version = v2.parse_version(request.version)
            try:
                is_ready = v2.model_ready(self._plane, request.name, version)
            except NotFound:
                is_ready = False
            return service_pb2.ModelReadyResponse(ready=is_ready)

        return await answer(context, ready(), "ModelReady")

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return codec.server_metadata_grpc()

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def metadata() -> Any:
            view = await v2.model_view(self._plane, request.name, v2.parse_version(request.version))
            return codec.model_metadata_grpc(
                view.name, view.versions, view.platform, view.signature
            )

        return await answer(context, metadata(), "ModelMetadata")

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def config() -> Any:
            view = await v2.model_view(self._plane, request.name, v2.parse_version(request.version))
            return codec.model_config_grpc(view.name, view.signature, platform=view.platform)

        return await answer(context, config(), "ModelConfig")

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def statistics() -> Any:
            records = v2.statistics(
                self._plane, request.name or None, v2.parse_version(request.version)
            )
            return codec.model_statistics_grpc(records)

        return await answer(context, statistics(), "ModelStatistics")

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def infer() -> Any:
            call = codec.decode_infer_request_grpc(request)
            version, outputs = await v2.infer(
                self._plane,
                v2.GRPC,
                request.model_name,
                v2.parse_version(request.model_version),
                call,
            )
            return codec.encode_infer_response_grpc(request.model_name, version, call, outputs)

        return await answer(context, infer(), "ModelInfer")

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def index() -> Any:
            return codec.repository_index_grpc(v2.repository_index(self._plane, request.ready))

        return await answer(context, index(), "RepositoryIndex")

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def load() -> Any:
            await asyncio.to_thread(self._plane.fleet.load_model, request.model_name)
            return service_pb2.RepositoryModelLoadResponse()

        return await answer(context, load(), "RepositoryModelLoad")

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def unload() -> Any:
            await asyncio.to_thread(self._plane.fleet.unload_model, request.model_name)
            return service_pb2.RepositoryModelUnloadResponse()

        return await answer(context, unload(), "RepositoryModelUnload")


def _unimplemented(method: str) -> Any:
    async def refuse(
        self: InferenceService, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served by tfhost")

    return refuse


# Triton's calls tfhost has no use for: UNIMPLEMENTED, as the generated base class says,
# but without its NotImplementedError (and the traceback grpc logs for it) on every call.
for _method in (
    "ModelStreamInfer",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
):
    setattr(InferenceService, _method, _unimplemented(_method))
