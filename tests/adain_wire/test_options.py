"""adain_wire.options: each shared choice and limit is defined once, and importing it costs nothing."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest


def test_options_import_nothing_heavy():
    heavy = ("torch", "bpy", "zmq", "msgpack", "numpy")
    code = f"import sys, adain_wire.options; bad = [m for m in {heavy} if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_user_takes_the_same_objects():
    from adain import cli, model, networks
    from adain_wire import client, manager, options, protocol
    from backend import config

    assert model.PRECISIONS is options.PRECISIONS and model.COMPILE_MODES is options.COMPILE_MODES
    assert model.COLOR_MODES is options.COLOR_MODES and networks.MIN_SIDE == options.MIN_SIDE
    assert typing.get_args(model.ColorMode) == options.COLOR_MODES  # the type checkers' copy of the list
    assert config.PRECISIONS is options.PRECISIONS and config.COMPILE_MODES is options.COMPILE_MODES
    assert config.Config().bind == options.DEFAULT_ENDPOINT == manager.BackendSettings().endpoint == client.DEFAULT_ENDPOINT
    assert protocol.MAX_HEADER_BYTES is options.MAX_HEADER_BYTES
    stylize = next(a for a in cli._parser()._subparsers._group_actions[0].choices["stylize"]._actions  # type: ignore[union-attr]
                   if a.dest == "preserve_color")  # fmt: skip
    assert tuple(stylize.choices) == options.COLOR_MODES


@pytest.mark.parametrize("mode", ["none", "coral", "luminance"])
def test_colour_modes_round_trip_the_wire(mode):
    import numpy as np

    from adain_wire.protocol import RegionSpec, Stylize, decode_request, encode_request

    msg = Stylize(id="1", image=np.zeros((16, 16, 4), np.float32), regions=(RegionSpec.mix("a" * 64),), preserve_color=mode)
    decoded = decode_request(encode_request(msg))
    assert isinstance(decoded, Stylize) and decoded.preserve_color == mode
