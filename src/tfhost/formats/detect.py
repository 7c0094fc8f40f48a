"""Naming an artifact's format from what is on disk, without loading it."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfhost.errors import FormatError, NotFound
from tfhost.formats.runtime import import_tensorflow
from tfhost.specs import Artifact, Format

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_EXPECTED = (
    "a SavedModel directory (saved_model.pb), a Keras .keras or .h5 file, a frozen GraphDef "
    ".pb file, a folder holding one .keras or .h5 file, or a directory of numeric version "
    "folders holding one of these"
)


def version_folders(path: Path) -> dict[int, Path]:
    """Numeric version folders under ``path`` (TensorFlow Serving's layout) by number;
    leading zeros are allowed (``00000123`` is version 123)."""
    if not path.is_dir():
        return {}
    found: dict[int, Path] = {}
    for p in sorted(path.iterdir(), key=lambda p: (len(p.name), p.name), reverse=True):
        if p.is_dir() and p.name.isascii() and p.name.isdigit():
            found[int(p.name)] = p  # "1" wins over "01": the shortest name is set last
    return found


def versions_in(path: Path) -> tuple[int, ...]:
    """Numeric version folders under ``path`` (TensorFlow Serving's layout), ascending."""
    return tuple(sorted(version_folders(path)))


def resolve_version(path: Path, version: int | None) -> tuple[int, Path]:
    """The version number and folder to load from ``path``.

    A directory of numeric version folders (TensorFlow Serving's layout) gives
    ``version`` or its highest; any other artifact is ``version``, or 1.
    """
    folders = {} if _is_saved_model_dir(path) else version_folders(path)
    if not folders:
        return (1 if version is None else version), path
    chosen = max(folders) if version is None else version
    if chosen not in folders:
        raise NotFound(f"{path} has versions {sorted(folders)}, not version {chosen}")
    return chosen, folders[chosen]


def detect(path: str | Path, version: int | None = None) -> Artifact:
    """Name the format of the artifact at ``path``.

    A directory of numeric version folders resolves to ``version``, or the highest one.
    Raises ``NotFound`` when nothing is there and ``FormatError`` when what is there is
    not a model tfhost reads.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no artifact at {path}")
    versions = () if _is_saved_model_dir(path) else versions_in(path)
    chosen, inner = resolve_version(path, version)
    inner = _keras_file_in(inner)
    return Artifact(inner, _detect_one(inner), chosen, versions)


_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def _keras_file_in(path: Path) -> Path:
    """The Keras file a folder holds and nothing else (a version folder of a Keras model:
    ``NAME/1/model.keras``; hidden files aside), else ``path`` itself. A folder holding
    more, such as a repository of one Keras file and other models, is not that file."""
    if not path.is_dir() or _is_saved_model_dir(path):
        return path
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].suffix in _KERAS_SUFFIXES and entries[0].is_file():
        return entries[0]
    return path


def _is_saved_model_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in _SAVED_MODEL_FILES)


def _detect_one(path: Path) -> Format:
    if path.is_dir():
        if _is_saved_model_dir(path):
            return _saved_model_kind(path)
        raise FormatError(f"{path}: directory without saved_model.pb; expected {_EXPECTED}")
    if path.name in _SAVED_MODEL_FILES:
        return _saved_model_kind(path.parent)
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        return _keras_zip_kind(path)
    if head == _HDF5_MAGIC:
        return _h5_kind(path)
    if path.suffix in (".pb", ".graphdef"):
        parse_graph_def(path)
        return Format.FROZEN_GRAPH
    raise FormatError(f"{path}: unknown file type (starts with {head!r}); expected {_EXPECTED}")


def _keras_zip_kind(path: Path) -> Format:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise FormatError(
            f"{path}: corrupt zip archive ({exc}); expected a Keras .keras file"
        ) from None
    if "config.json" not in names:
        raise FormatError(f"{path}: zip archive without config.json; expected a Keras .keras file")
    return Format.KERAS


def _h5_kind(path: Path) -> Format:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError as exc:
        raise FormatError(f"{path}: corrupt HDF5 file ({exc})") from None
    if not has_config:
        raise FormatError(
            f"{path}: HDF5 file holds weights only (no model_config); expected a whole "
            f"Keras model saved with model.save('model.h5')"
        )
    return Format.KERAS_H5


def read_saved_model(directory: Path):  # type: ignore[no-untyped-def]
    import_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = directory / "saved_model.pb"
    try:
        if pb.is_file():
            proto.ParseFromString(pb.read_bytes())
        else:
            from google.protobuf import text_format

            text_format.Parse((directory / "saved_model.pbtxt").read_text(), proto)
    except Exception as exc:
        raise FormatError(
            f"{pb}: corrupt SavedModel protobuf ({type(exc).__name__}: {exc})"
        ) from None
    if not proto.meta_graphs:
        raise FormatError(f"{pb}: SavedModel without any MetaGraph")
    return proto


def serving_meta_graph(model: str, directory: Path, tags: Sequence[str] | None = None) -> Any:
    """The MetaGraph of the SavedModel in ``directory`` that tfhost loads and inspects.

    With ``tags`` (the ``tags=`` load option): the one tagged exactly those, in any order,
    else FormatError. Without: the one tagged exactly ``serve``, as TensorFlow Serving
    loads by default, else the first. The one rule for the loader, ``inspect`` and doctor.
    """
    proto = read_saved_model(directory)
    available = [sorted(meta.meta_info_def.tags) for meta in proto.meta_graphs]
    wanted = ["serve"] if tags is None else sorted(tags)
    for meta, found in zip(proto.meta_graphs, available, strict=True):
        if found == wanted:
            return meta
    if tags is not None:
        raise FormatError(
            f"model {model!r}: {directory} has no MetaGraph tagged {wanted}; it has {available}"
        )
    return proto.meta_graphs[0]


def _saved_model_kind(directory: Path) -> Format:
    if (directory / "keras_metadata.pb").is_file():
        return Format.KERAS_SAVED_MODEL
    proto = read_saved_model(directory)
    graph = proto.meta_graphs[0].object_graph_def
    # TF1 SavedModels carry no object graph; TF2 ones have a root with children.
    if len(graph.nodes) <= 1:
        return Format.TF1_SAVED_MODEL
    root_children = {child.local_name for child in graph.nodes[0].children}
    if {"_all_variables", "_misc_assets"} <= root_children:
        return Format.KERAS_EXPORT
    return Format.TF2_SAVED_MODEL


def parse_graph_def(path: Path):  # type: ignore[no-untyped-def]
    import_tensorflow()
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise FormatError(f"{path}: not a GraphDef protobuf ({exc})") from None
    if not graph_def.node:
        raise FormatError(f"{path}: GraphDef without any node; expected a frozen graph")
    return graph_def
