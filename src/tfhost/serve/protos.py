"""TensorFlow Serving config messages that ``tensorflow-serving-api`` does not ship,
defined here field for field from TF Serving's ``.proto`` files, so their text format is
read by protobuf's own parser (``text_format``), never by hand."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_PACKAGE = "tensorflow.serving"
_Field = descriptor_pb2.FieldDescriptorProto
_MESSAGES = ("PrometheusConfig", "MonitoringConfig", "BatchingParameters")


def _field(
    name: str, number: int, kind: int, type_name: str | None = None, *, repeated: bool = False
) -> Any:
    label = _Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL
    field = _Field(name=name, number=number, type=kind, label=label)
    if type_name is not None:
        # A name with a dot is another package's (google.protobuf's wrappers).
        field.type_name = f".{type_name}" if "." in type_name else f".{_PACKAGE}.{type_name}"
    return field


def _wrapper(name: str, number: int, wrapper: str) -> Any:
    return _field(name, number, _Field.TYPE_MESSAGE, f"google.protobuf.{wrapper}")


@functools.cache
def _classes() -> dict[str, Any]:
    # tensorflow_serving/config/monitoring_config.proto
    file = descriptor_pb2.FileDescriptorProto(
        name="tfhost/tensorflow_serving_configs.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[wrappers_pb2.DESCRIPTOR.name],
    )
    file.message_type.add(
        name="PrometheusConfig",
        field=[_field("enable", 1, _Field.TYPE_BOOL), _field("path", 2, _Field.TYPE_STRING)],
    )
    file.message_type.add(
        name="MonitoringConfig",
        field=[_field("prometheus_config", 1, _Field.TYPE_MESSAGE, "PrometheusConfig")],
    )
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto
    file.message_type.add(
        name="BatchingParameters",
        field=[
            _wrapper("max_batch_size", 1, "Int64Value"),
            _wrapper("batch_timeout_micros", 2, "Int64Value"),
            _wrapper("max_enqueued_batches", 3, "Int64Value"),
            _wrapper("num_batch_threads", 4, "Int64Value"),
            _wrapper("thread_pool_name", 5, "StringValue"),
            _field("allowed_batch_sizes", 6, _Field.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _Field.TYPE_BOOL),
            _wrapper("enable_large_batch_splitting", 8, "BoolValue"),
            _wrapper("max_execution_batch_size", 9, "Int64Value"),
        ],
    )
    # A pool of our own: the default pool may one day get TF Serving's own definitions.
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in _MESSAGES
    }


def monitoring_config() -> Any:
    """An empty ``tensorflow.serving.MonitoringConfig``."""
    return _classes()["MonitoringConfig"]()


def batching_parameters() -> Any:
    """An empty ``tensorflow.serving.BatchingParameters``."""
    return _classes()["BatchingParameters"]()
