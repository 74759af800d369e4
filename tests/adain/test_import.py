"""``import adain`` loads no torch; the torch-backed names load it when first used and are the real objects."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_adain_loads_no_torch_and_its_errors_need_none():
    done = _run("import sys, adain; from adain import AdainError, InputError; "
                "assert issubclass(InputError, AdainError); sys.exit('torch' in sys.modules)")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lazy_names_are_the_modules_objects():
    import adain
    from adain import functional, model, networks

    assert adain.StyleTransfer is model.StyleTransfer and adain.Region is model.Region
    assert adain.adain is functional.adain and adain.Encoder is networks.Encoder
    assert set(adain.__all__) <= set(dir(adain)) | set(adain._LAZY)
    done = _run("import adain; adain.no_such_name")
    assert done.returncode != 0 and "has no attribute 'no_such_name'" in done.stderr
