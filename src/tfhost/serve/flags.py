"""TensorFlow Serving's command line, read as ``tfhost serve`` reads it.

An existing ``tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=m
--model_base_path=/models/m`` works after replacing the binary's name. The flags tfhost
takes are options of ``tfhost serve`` under both spellings; the ones it does not take are
refused here, by name, before anything starts: a flag silently ignored would change what
the server does without saying so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfhost.errors import InputError

if TYPE_CHECKING:
    from tfhost.batching import BatchingSettings

_log = logging.getLogger(__name__)

# TensorFlow Serving's boolean flags take ``--flag=true``; click's flags take ``--flag``.
_BOOLEANS = frozenset({"allow_version_labels_for_unavailable_models", "enable_batching"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# Unsupported flags given the value that is tfhost's own behaviour: taken, and nothing done.
_HARMLESS = {"enable_model_warmup": True}

_THREADS = "set intra_op_threads / inter_op_threads per model in tfhost.toml [models.NAME.worker]"

# tensorflow_model_server's flags (model_servers/main.cc) that tfhost does not take, and
# what to do instead.
UNSUPPORTED: dict[str, str] = {
    "grpc_socket_path": "gRPC on a UNIX socket is not served; use --port",
    "rest_api_num_threads": "REST runs on one event loop; models run on the host's serving threads",
    "rest_api_enable_cors_support": "CORS headers are not sent",
    "enable_per_model_batching_parameters": "batching is configured per model in tfhost.toml",
    "flush_filesystem_caches": "tfhost does not flush file system caches",
    "tensorflow_session_parallelism": _THREADS,
    "tensorflow_intra_op_parallelism": _THREADS,
    "tensorflow_inter_op_parallelism": _THREADS,
    "use_alts_credentials": "ALTS is not supported",
    "ssl_config_file": "TLS is not served; put a TLS proxy in front",
    "platform_config_file": "platform configs are not read; tfhost detects each artifact's format",
    "per_process_gpu_memory_fraction": "use gpu_memory_limit_mib per model in tfhost.toml",
    "saved_model_tags": "give a TF1 model's tags in tfhost.toml (tags = [...])",
    "grpc_channel_arguments": "gRPC channel arguments are not taken",
    "enable_model_warmup": "warm-up is on; warmup = false turns it off per model in tfhost.toml",
    "num_request_iterations_for_warmup": "each warm-up record is replayed once",
    "remove_unused_fields_from_bundle_metagraph": "not applicable",
    "prefer_tflite_model": "TensorFlow Lite models are not served",
    "num_tflite_pools": "TensorFlow Lite models are not served",
    "num_tflite_interpreters_per_pool": "TensorFlow Lite models are not served",
    "enable_signature_method_name_check": "not applicable",
    "xla_cpu_compilation_enabled": (
        "functions saved with jit_compile=True are compiled as TensorFlow runs them; "
        "jit_compile = true per model in tfhost.toml compiles every signature"
    ),
    "enable_profiler": "the TensorFlow profiler service is not served",
    "thread_pool_factory_config_file": "not applicable",
    "mixed_precision": "not applicable",
    "skip_initialize_tpu": "TPUs are not served",
    "enable_grpc_healthcheck_service": "use the KServe V2 health routes (/v2/health/ready)",
}

_FLAG = re.compile(r"--([A-Za-z0-9_]+)(?:=(.*))?$", re.DOTALL)


def translate(args: Sequence[str]) -> list[str]:
    """``tfhost serve``'s arguments with TF Serving's spellings made click's.

    ``--enable_batching=true`` becomes ``--enable_batching``; ``=false`` drops it. A flag
    tfhost does not take raises InputError naming it and saying what to do instead.
    """
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            out.extend(args[index:])
            break
        match = _FLAG.match(arg)
        if match is None:
            out.append(arg)
            continue
        name, value = match.group(1), match.group(2)
        if name in UNSUPPORTED:
            if value is not None and name in _HARMLESS and _HARMLESS[name] == _boolean(name, value):
                continue  # asks for what tfhost does anyway
            raise InputError(
                f"tfhost serve does not take TensorFlow Serving's --{name}: {UNSUPPORTED[name]}"
            )
        if name in _BOOLEANS and value is not None:
            if _boolean(name, value):
                out.append(f"--{name}")
            continue
        out.append(arg)
    return out


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InputError(f"--{name} takes true or false, got {value!r}")


# BatchingParameters fields whose Int64Value wrappers map one to one on BatchingSettings.
_WRAPPED = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")

_WHOLE = "tfhost never splits a request: one larger than max_batch_size runs on its own, unmerged"


def batching_settings(enable: bool, file: Path | None) -> BatchingSettings | None:
    """What ``--enable_batching`` and ``--batching_parameters_file`` ask for, as TF Serving
    reads them (model_servers/server.cc): off unless enabled; enabled without a file, TF
    Serving's defaults; with one, its text-format ``BatchingParameters``, each unset field
    left at its default. Raises InputError naming the file, and the line or the field."""
    if not enable:
        if file is not None:
            # TF Serving refuses it too ("batching_parameters_file is set without setting
            # enable_batching to true").
            raise InputError(
                f"--batching_parameters_file {file} is given without --enable_batching: "
                f"add --enable_batching to batch (TensorFlow Serving refuses it alone too)"
            )
        return None
    from tfhost.batching import BatchingSettings

    if file is None:
        return BatchingSettings()
    return _read_batching_parameters(file)


def _read_batching_parameters(file: Path) -> BatchingSettings:
    from google.protobuf import text_format

    from tfhost.batching import BatchingSettings
    from tfhost.serve.protos import batching_parameters

    where = f"--batching_parameters_file {file}"
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot read it: {exc}") from None
    params = batching_parameters()
    try:
        text_format.Parse(text, params)
    except text_format.ParseError as exc:
        raise InputError(f"{where}: {_parse_error(exc)}") from None
    splitting = params.HasField("enable_large_batch_splitting")
    if splitting and params.enable_large_batch_splitting.value:
        raise InputError(
            f"{where}: enable_large_batch_splitting is not supported: {_WHOLE}; remove it "
            f"(and max_execution_batch_size)"
        )
    if params.HasField("max_execution_batch_size"):
        # TF Serving reads it only when enable_large_batch_splitting is true.
        _log.warning(
            "%s: max_execution_batch_size ignored without enable_large_batch_splitting, as "
            "TensorFlow Serving ignores it",
            where,
        )
    values: dict[str, Any] = {
        name: getattr(params, name).value for name in _WRAPPED if params.HasField(name)
    }
    if params.allowed_batch_sizes:
        values["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = params.pad_variable_length_inputs
    # thread_pool_name names TF Serving's pool of batch threads; tfhost's are per model.
    try:
        return BatchingSettings(**values)
    except InputError as exc:
        what = re.sub(r"^BatchingSettings[.:]\s*", "", exc.message).replace(' (or "auto")', "")
        raise InputError(f"{where}: {what}") from None


def _parse_error(exc: Exception) -> str:
    """``text_format``'s "3:1 : what" as "line 3, column 1: what"."""
    line = getattr(exc, "GetLine", lambda: None)()
    column = getattr(exc, "GetColumn", lambda: None)()
    what = re.sub(r"^\d+:\d+ : ", "", str(exc))
    if line is None:
        return what
    at = f"line {line}" if column is None else f"line {line}, column {column}"
    return f"{at}: {what}"
