"""TensorFlow Serving config messages that ``tensorflow-serving-api`` does not ship,
defined here field for field from TF Serving's ``.proto`` files, so their text format is
read by protobuf's own parser (``text_format``), never by hand."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow.serving"
_Field = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str | None = None) -> Any:
    field = _Field(name=name, number=number, type=kind, label=_Field.LABEL_OPTIONAL)
    if type_name is not None:
        field.type_name = f".{_PACKAGE}.{type_name}"
    return field


@functools.cache
def _classes() -> dict[str, Any]:
    # tensorflow_serving/config/monitoring_config.proto
    file = descriptor_pb2.FileDescriptorProto(
        name="tfhost/tensorflow_serving_configs.proto", package=_PACKAGE, syntax="proto3"
    )
    file.message_type.add(
        name="PrometheusConfig",
        field=[_field("enable", 1, _Field.TYPE_BOOL), _field("path", 2, _Field.TYPE_STRING)],
    )
    file.message_type.add(
        name="MonitoringConfig",
        field=[_field("prometheus_config", 1, _Field.TYPE_MESSAGE, "PrometheusConfig")],
    )
    # A pool of our own: the default pool may one day get TF Serving's own definitions.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("PrometheusConfig", "MonitoringConfig")
    }


def monitoring_config() -> Any:
    """An empty ``tensorflow.serving.MonitoringConfig``."""
    return _classes()["MonitoringConfig"]()
