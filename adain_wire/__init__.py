"""The wire between the Blender add-on and the stylization backend: the protocol and its client.

One definition of the wire format (``docs/protocol.md`` is its authority), imported by both sides, as
jupyter_client is for Jupyter. Needs numpy, msgpack and pyzmq only: no bpy, no torch, so it runs inside
Blender (the add-on zip carries it as a pure-Python wheel, built by ``scripts/build_addon.py``) and in the
backend, the scripts and the tests alike.

- ``protocol``: typed messages, ``encode_*`` / ``decode_*`` to and from ZeroMQ frames, ``ErrorCode``;
- ``client``: ``Client`` (one I/O thread, pipelining, heartbeats, recovery when the backend restarts);
- ``pending``: ``Pending``, a request in flight; ``errors``: ``ClientError`` and its codes;
- ``keys``: ``ClientCurve``, CurveZMQ keys of a client;
- ``manager``: ``BackendManager``, a backend to connect to, or to start as a local subprocess and stop.
- ``options``: the choices and limits both sides share (precisions, compile modes, colour modes, the default
  endpoint, limits); plain constants, so ``adain`` and the backend's command line import it without pyzmq.

Nothing is imported here, so ``import adain_wire.protocol`` loads neither pyzmq nor the client.
"""
