"""A KServe V2 JSON header whose float inputs' ``data`` simdjson reads straight into one
buffer of doubles, with no Python object per value (8 x 2048 FP32 values: 0.33 against
0.60 ms through orjson and ``array.array``).

``parse`` answers only where it can prove its document is the one orjson would give, with
each such input's ``data`` a flat list of numbers (or nested exactly as its shape, two
dimensions at most); everywhere else it answers None and the caller parses with orjson,
which also finds the errors. What it proves:

* no BOM and no backslash: every string reads the same to both parsers;
* no duplicated key in the document or an input (``obj[key]`` would give the first, orjson
  keeps the last; the small parts converted whole keep the last, as orjson does);
* every leaf of the data is a number that simdjson holds as a double (``as_buffer``
  refuses anything else, and simdjson refuses a number past a double and an integer past
  64 bits): the double, cast to the input's type, is what ``array.array`` makes of
  orjson's number;
* the data nests as the shape says: the top array holds ``count`` numbers (flat) or its
  rows hold the second dimension's each; and the body's ``[`` are exactly those of these
  arrays and of the rest of the document, so no array hides among the numbers.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import simdjson

from tfhost.serve.codecs import simd

Array = npt.NDArray[Any]

# Below this the values do not outweigh the walk (a 784-value body takes 14 µs, not 29).
MIN_BYTES: Final = 2048
_OPEN: Final = ord("[")


class Doubles:
    """An input's ``data``, read: its values as float64 in row-major order, and the
    arrays its text held."""

    __slots__ = ("arrays", "values")

    def __init__(self, values: Array, arrays: int) -> None:
        self.values = values
        self.arrays = arrays


def parse(header: bytes, float_types: frozenset[str]) -> dict[str, Any] | None:
    """The header as orjson would parse it, the ``data`` of each input whose datatype is
    in ``float_types`` (FP16, FP32, FP64, BF16) a :class:`Doubles`; None where that
    cannot be proven."""
    if len(header) < MIN_BYTES or header[:1] != b"{" or b"\\" in header:
        return None
    if b'"FP' not in header and b'"BF16"' not in header:
        return None  # no float input to read fast: orjson alone costs less
    try:
        root = simd.parse(header)
    except Exception:  # whichever way simdjson refuses it, orjson explains
        return None
    if type(root) is not simdjson.Object:
        return None
    doc = _object(root, lazy="inputs")
    if doc is None or type(doc.get("inputs")) is not simdjson.Array:
        return None
    inputs: list[Any] = []
    for entry in doc["inputs"]:
        plain = _object(entry, lazy="data") if type(entry) is simdjson.Object else None
        if plain is None:
            return None
        data = plain.get("data")
        if type(data) is simdjson.Array:
            doubles = _doubles(data, plain, float_types)
            if doubles is None:
                return None
            plain["data"] = doubles
        inputs.append(plain)
    doc["inputs"] = inputs
    # numpy counts 174 kB in 12 µs, bytes.count in 50.
    if np.count_nonzero(np.frombuffer(header, np.uint8) == _OPEN) != _brackets(doc):
        return None
    return doc


def _object(node: Any, lazy: str) -> dict[str, Any] | None:
    """``node``'s members, converted as orjson would, but the member ``lazy``, where it is
    an array, left in simdjson's document for the caller; None for duplicate keys."""
    keys = list(node.keys())
    if len(keys) != len(set(keys)):
        return None
    out: dict[str, Any] = {}
    for key in keys:
        value = node[key]
        if key == lazy and type(value) is simdjson.Array:
            out[key] = value
        elif type(value) is simdjson.Object:
            out[key] = value.as_dict()
        elif type(value) is simdjson.Array:
            out[key] = value.as_list()
        else:
            out[key] = value
    return out


def _doubles(data: Any, entry: dict[str, Any], float_types: frozenset[str]) -> Doubles | None:
    """``data`` read, if it is ``count`` numbers for the entry's shape as V2 allows them."""
    shape = entry.get("shape")
    if entry.get("datatype") not in float_types or type(shape) is not list:
        return None
    if not all(type(d) is int and d >= 0 for d in shape):
        return None
    count = math.prod(shape)
    if not count or not len(data):
        return None
    if type(data[0]) is not simdjson.Array:  # flat: the normal path asks no more
        if len(data) != count:
            return None
        arrays = 1
    elif len(shape) == 2 and len(data) == shape[0]:
        rows = shape[1]
        if not all(type(row) is simdjson.Array and len(row) == rows for row in data):
            return None
        arrays = 1 + shape[0]
    else:
        return None
    try:
        values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except Exception:  # a leaf that is not a number, or one past a double
        return None
    if values.size != count:
        return None
    return Doubles(values, arrays)


def _brackets(value: Any) -> int:
    """The '[' in the JSON text of ``value``."""
    if type(value) is list:
        return 1 + sum(_brackets(v) for v in value)
    if type(value) is dict:
        return sum(key.count("[") + _brackets(v) for key, v in value.items())
    if type(value) is str:
        return value.count("[")
    if type(value) is Doubles:
        return value.arrays
    return 0
