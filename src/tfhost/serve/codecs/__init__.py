"""Wire formats <-> numpy, as pure functions in ``decode_*`` / ``encode_*`` pairs.

``tfs_json``: TensorFlow Serving's REST JSON. ``tfs_proto``: TensorFlow Serving's protos
(``tensorflow-serving-api``). ``v2``: the KServe V2 / Open Inference Protocol, JSON with the
binary tensor extension and gRPC; ``v2_simd`` reads its large float inputs. ``simd``: the
simdjson parser each thread reuses. Errors are ``tfhost.errors`` types whose messages match
what the reference server says.
"""
