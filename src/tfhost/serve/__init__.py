"""``tfhost serve``: TensorFlow Serving's REST and gRPC APIs and the KServe V2 / Open
Inference Protocol, on a fleet.

Layers, each knowing only the one below:

* ``codecs/``: pure functions, wire bytes or protos <-> ``dict[str, np.ndarray]``, in pairs
  (``decode_*`` / ``encode_*``). No routing, no models.
* ``plane``: the one data plane every route calls: resolve a model on the fleet, check,
  run, count. Protocol-independent.
* ``rest`` / ``grpc_tfs`` / ``grpc_v2``: the routes and servicers, thin.
* ``server``: both ports, signals, drain.
"""
