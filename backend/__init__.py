"""The stylization server: AdaIN over ZeroMQ (protocol in ``adain_wire.protocol``, spec in docs/protocol.md).

config (validated once) -> server (the ZeroMQ loop) -> handlers (one per op) -> service (torch, the model).
"""
