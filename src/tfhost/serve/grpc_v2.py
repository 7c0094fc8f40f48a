"""The KServe V2 gRPC service (``inference.GRPCInferenceService``, with Triton's repository,
configuration and statistics calls) on the plane; the protos are the ones tritonclient
ships. Calls Triton has and tfhost does not (streaming, shared memory, trace and log
settings) answer UNIMPLEMENTED."""

from __future__ import annotations

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

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=v2.ready(self._plane))

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def ready() -> Any:
            version = v2.parse_version(request.version)
            try:
                is_ready = v2.model_ready(self._plane, request.name, version)
            except NotFound:
                is_ready = False
            return service_pb2.ModelReadyResponse(ready=is_ready)

        return answer(context, ready(), "ModelReady")

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return codec.server_metadata_grpc()

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def metadata() -> Any:
            view = await v2.model_view(self._plane, request.name, v2.parse_version(request.version))
            return codec.model_metadata_grpc(
                view.name, view.versions, view.platform, view.signature
            )

        return answer(context, metadata(), "ModelMetadata")

    def ModelConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def config() -> Any:
            view = await v2.model_view(self._plane, request.name, v2.parse_version(request.version))
            return codec.model_config_grpc(
                view.name, view.signature, platform=view.platform, jit_compile=view.jit_compile
            )

        return answer(context, config(), "ModelConfig")

    def ModelStatistics(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def statistics() -> Any:
            records = v2.statistics(
                self._plane, request.name or None, v2.parse_version(request.version)
            )
            return codec.model_statistics_grpc(records)

        return answer(context, statistics(), "ModelStatistics")

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
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

        return answer(context, infer(), "ModelInfer")

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def index() -> Any:
            return codec.repository_index_grpc(v2.repository_index(self._plane, request.ready))

        return answer(context, index(), "RepositoryIndex")

    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def load() -> Any:
            parameters = codec.repository_parameters_grpc(request.parameters)
            codec.check_repository_parameters("load", parameters)
            self._plane.fleet.load_model(request.model_name)
            return service_pb2.RepositoryModelLoadResponse()

        return answer(context, load(), "RepositoryModelLoad")

    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext) -> Any:
        async def unload() -> Any:
            parameters = codec.repository_parameters_grpc(request.parameters)
            codec.check_repository_parameters("unload", parameters)
            self._plane.fleet.unload_model(request.model_name)
            return service_pb2.RepositoryModelUnloadResponse()

        return answer(context, unload(), "RepositoryModelUnload")


def _unimplemented(method: str) -> Any:
    def refuse(self: InferenceService, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served by tfhost")

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
