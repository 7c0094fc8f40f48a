"""The V2 JSON header's fast reader (``codecs.v2_simd``) decodes every body to what the
orjson path decodes it to, the same arrays bit for bit or the same error, and takes the
bodies it is for: large float inputs, flat or nested as their shape."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as thttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfhost.errors import InputError
from tfhost.serve.codecs import simd, v2, v2_simd

ROWS, COLS = 4, 300  # 1,200 values: past v2_simd.MIN_BYTES in any spelling
X = np.random.default_rng(7).standard_normal((ROWS, COLS)).astype(np.float32)
X[0, :4] = [-0.0, 1e-45, 3.4028235e38, -1.5]


def _outcome(body: bytes, length: int | None) -> Any:
    try:
        call = v2.decode_infer_request(body, length)
    except InputError as exc:
        return ("error", exc.message)
    arrays = {
        name: (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())
        for name, a in call.inputs.items()
    }
    return (
        "call",
        arrays,
        call.id,
        call.outputs,
        call.binary,
        call.binary_default,
        call.parameters,
    )


def _both(body: bytes, length: int | None = None) -> tuple[Any, Any, bool]:
    """(fast outcome, orjson outcome, whether the fast reader took the body)."""
    header = body if length is None else body[:length]
    took = v2_simd.parse(header, v2._FLOAT_TYPES) is not None
    fast = _outcome(body, length)
    saved = v2_simd.MIN_BYTES
    v2_simd.MIN_BYTES = 1 << 62  # the orjson path alone
    try:
        slow = _outcome(body, length)
    finally:
        v2_simd.MIN_BYTES = saved
    return fast, slow, took


def _entry(data: Any, *, shape: list[int] | None = None, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": "x", "shape": shape or [ROWS, COLS], "datatype": datatype, "data": data}


def _body(*entries: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"inputs": list(entries), **top}).encode()


FLAT = X.ravel().tolist()
NESTED = X.tolist()

TAKEN = {  # bodies the fast reader reads: the same arrays as orjson's
    "flat": _body(_entry(FLAT)),
    "nested": _body(_entry(NESTED)),
    "fp64": _body(_entry(X.astype(np.float64).ravel().tolist(), datatype="FP64")),
    "fp16": _body(_entry(FLAT, datatype="FP16")),
    "bf16": _body(_entry(FLAT, datatype="BF16")),
    "integers as floats": _body(_entry(list(range(ROWS * COLS)))),
    "past float32: inf": _body(_entry([1e39, -1e39, *FLAT[2:]])),
    "rows of one": _body(_entry([[v] for v in FLAT], shape=[ROWS * COLS, 1])),
    "fields around": _body(
        _entry(FLAT) | {"parameters": {"p": 1}},
        id="r[1]",
        parameters={"binary_data_output": True, "k": "v["},
        outputs=[{"name": "y", "parameters": {"binary_data": False}}],
    ),
    "bracket in a name": _body(_entry(FLAT) | {"name": "x[0]"}),
    "two float inputs": _body(_entry(FLAT), _entry(NESTED) | {"name": "z"}),
    "orjson's own": orjson.dumps(
        {"inputs": [_entry(X.ravel())]}, option=orjson.OPT_SERIALIZE_NUMPY
    ),
}

REFUSED = {  # bodies it leaves to orjson, which decodes them (or says why not)
    "a hidden array of one": _body(_entry([*FLAT[:5], [FLAT[5]], *FLAT[6:]])),
    "an empty array and a pair": _body(_entry([*FLAT[:5], [], [FLAT[5], FLAT[6]], *FLAT[7:]])),
    "flat, then a row": _body(_entry([[FLAT[0]], *FLAT[1:]])),
    "a row one short, one long": _body(
        _entry([NESTED[0][:-1], NESTED[1] + [1.0], NESTED[2], NESTED[3]])
    ),
    "a row holding a hidden array": _body(_entry([[[NESTED[0][0]], *NESTED[0][1:]], *NESTED[1:]])),
    "too few values": _body(_entry(FLAT[:-1])),
    "no values": _body(_entry([]) | {"pad": FLAT}),
    "a boolean": _body(_entry([True, *FLAT[1:]])),
    "a null": _body(_entry([None, *FLAT[1:]])),
    "a string": _body(_entry(["1.0", *FLAT[1:]])),
    "past a double": _body(_entry(FLAT)).replace(b"[" + str(FLAT[0]).encode(), b"[1e400", 1),
    "past 64 bits": _body(_entry([2**64, *FLAT[1:]])),
    # The first of two keys is valid too: taken, it would give other arrays than orjson's.
    "duplicate data": _body(_entry(FLAT))[:-3]
    + f', "data": {json.dumps(FLAT[::-1])}}}]}}'.encode(),
    "duplicate datatype": _body(_entry(FLAT)).replace(
        b'"datatype"', b'"datatype": "FP16", "datatype"'
    ),
    "duplicate inputs": _body(_entry(FLAT[::-1]))[:-1]
    + b', "inputs": '
    + json.dumps([_entry(FLAT)]).encode()
    + b"}",
    "a backslash": _body(_entry(FLAT) | {"name": "x\\u0041"}),
    "a byte order mark": b"\xef\xbb\xbf" + _body(_entry(FLAT)),
    "leading space": b" " + _body(_entry(FLAT)),
    "three dimensions nested": _body(_entry(X.reshape(2, 2, COLS).tolist(), shape=[2, 2, COLS])),
    "an integer input beside": _body(
        _entry(FLAT), _entry(list(range(10)), shape=[10], datatype="INT64") | {"name": "n"}
    ),
    "a bad shape": _body(_entry(FLAT, shape=[ROWS, -COLS])),
    "a float in the shape": _body(_entry(FLAT)).replace(
        f"[{ROWS}, ".encode(), f"[{ROWS}.0, ".encode(), 1
    ),
    "a bad datatype": _body(_entry(FLAT, datatype="FP8")),
    "trailing bytes": _body(_entry(FLAT)) + b"x",
    "not an object": json.dumps([_entry(FLAT)]).encode(),
    "a NaN": _body(_entry(FLAT)).replace(str(FLAT[5]).encode(), b"NaN", 1),
}


@pytest.mark.parametrize("case", sorted(TAKEN))
def test_the_fast_reader_takes_large_float_inputs_and_decodes_as_orjson(case: str) -> None:
    fast, slow, took = _both(TAKEN[case])
    assert took, case
    assert fast == slow
    assert fast[0] == "call", fast


def test_the_values_are_the_inputs_bit_for_bit() -> None:
    for body in (TAKEN["flat"], TAKEN["nested"], TAKEN["orjson's own"]):
        call = v2.decode_infer_request(body, None)
        assert call.inputs["x"].dtype == np.float32 and call.inputs["x"].shape == X.shape
        assert call.inputs["x"].tobytes() == X.tobytes()  # -0.0 and the subnormal too


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_it_cannot_prove_goes_to_orjson(case: str) -> None:
    fast, slow, took = _both(REFUSED[case])
    assert not took, case
    assert fast == slow


def test_data_that_is_no_array_is_converted_whole_and_refused_alike() -> None:
    for data in ({"v": FLAT}, "1.0", 1.0, None):
        fast, slow, _ = _both(_body(_entry(data) | {"pad": FLAT}))
        assert fast == slow and fast[0] == "error", data


def test_small_bodies_and_integer_bodies_stay_with_orjson() -> None:
    small = _body(_entry([1.0, 2.0], shape=[2]))
    ints = _body(_entry(list(range(ROWS * COLS)), datatype="INT64"))
    for body in (small, ints):
        fast, slow, took = _both(body)
        assert not took and fast == slow and fast[0] == "call"


def test_a_json_header_before_binary_inputs() -> None:
    """tritonclient's request: one input in the JSON header, one binary after it."""
    tensors = [thttp.InferInput("x", [ROWS, COLS], "FP32"), thttp.InferInput("b", [3], "INT32")]
    tensors[0].set_data_from_numpy(X, binary_data=False)
    tensors[1].set_data_from_numpy(np.array([1, 2, 3], np.int32), binary_data=True)
    body, length = thttp.InferenceServerClient.generate_request_body(tensors)
    fast, slow, took = _both(body, length)
    assert took and fast == slow
    call = v2.decode_infer_request(body, length)
    assert call.inputs["x"].tobytes() == X.tobytes()
    assert call.inputs["b"].tolist() == [1, 2, 3]


def test_a_parser_whose_document_still_lives_is_not_reused() -> None:
    held = simd.parse(TAKEN["flat"])["inputs"]  # keeps the thread's parser's document alive
    fast, slow, took = _both(TAKEN["nested"])
    assert took and fast == slow
    assert len(held) == 1


def test_threads_each_read_with_their_own_parser() -> None:
    bodies = [TAKEN["flat"], TAKEN["nested"], TAKEN["fp64"], TAKEN["two float inputs"]]
    expected = [_outcome(b, None) for b in bodies]
    failures: list[str] = []

    def work(offset: int) -> None:
        for i in range(200):
            k = (i + offset) % len(bodies)
            if _outcome(bodies[k], None) != expected[k]:
                failures.append(f"thread {offset}, body {k}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_large_bodies_decode_as_orjson(data: st.DataObject) -> None:
    body = bytearray(data.draw(st.sampled_from([TAKEN[k] for k in sorted(TAKEN)])))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        piece = data.draw(
            st.sampled_from([b"[", b"]", b",", b"[]", b"1", b"-0", b'"', b"e9", b"{"])
        )
        if data.draw(st.booleans()):
            body[at:at] = piece
        else:
            body[at : at + len(piece)] = piece
    fast, slow, _ = _both(bytes(body))
    assert fast == slow
