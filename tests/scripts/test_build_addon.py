"""scripts/build_addon.py without network: a wheel cache of stand-in wheels, the real add-on tree and manifest."""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts.script_loader import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_addon.py"

# Real file names of the pinned wheels on PyPI (pyzmq 27.3.0, msgpack 1.2.4), per Blender platform.
REAL_WHEELS = {
    "linux-x64": [
        "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl",
        "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    ],
    "linux-arm64": [
        "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_aarch64.manylinux_2_28_aarch64.whl",
        "msgpack-1.2.4-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl",
    ],
    "macos-x64": ["pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl", "msgpack-1.2.4-cp311-cp311-macosx_10_9_x86_64.whl"],
    "macos-arm64": ["pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl", "msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl"],
    "windows-x64": ["pyzmq-27.3.0-cp311-cp311-win_amd64.whl", "msgpack-1.2.4-cp311-cp311-win_amd64.whl"],
    "windows-arm64": ["pyzmq-27.3.0-cp311-cp311-win_arm64.whl", "msgpack-1.2.4-cp311-cp311-win_arm64.whl"],
}
WIRE_VERSION = "0.1.0+"  # built from adain_wire/ by the script itself; + a hash of its sources (see wire_version)


@pytest.fixture(scope="module")
def ba() -> ModuleType:
    return load_script("build_addon")


@pytest.fixture(scope="module")
def wire_wheel(ba) -> str:
    version = ba.wire_version(REPO / "adain_wire", "0.1.0")
    assert version.startswith(WIRE_VERSION) and len(version) == len(WIRE_VERSION) + 8
    return f"adain_wire-{version}-py3-none-any.whl"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A wheel cache laid out as the script leaves it, with small valid zips under the real wheel names."""
    root = tmp_path / "wheels"
    for platform, names in REAL_WHEELS.items():
        (root / platform).mkdir(parents=True)
        for name in names:
            with zipfile.ZipFile(root / platform / name, "w") as zf:
                zf.writestr(f"{name.split('-')[0]}/__init__.py", "")
    return root


def _manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return tomllib.loads(zf.read("blender_manifest.toml").decode())


def test_pins_satisfy_the_project_dependencies(ba: ModuleType) -> None:
    from packaging.requirements import Requirement

    deps = {r.name: r for r in map(Requirement, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])}
    assert set(ba.WHEELS) == {"pyzmq", "msgpack"}
    for name, version in ba.WHEELS.items():
        assert deps[name].specifier.contains(version), (name, version, str(deps[name]))


@pytest.mark.parametrize("platform", list(REAL_WHEELS))
def test_wheel_platform_tags(ba: ModuleType, platform: str) -> None:
    for name in REAL_WHEELS[platform]:
        assert platform in ba.blender_platforms_of_wheel(name)
    assert ba.blender_platforms_of_wheel("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl") == {"macos-x64", "macos-arm64"}
    assert ba.blender_platforms_of_wheel("msgpack-1.2.4-py3-none-any.whl") == set(ba.PLATFORMS)


def test_repo_manifest_is_valid_and_leaves_wheels_to_the_build(ba: ModuleType) -> None:
    data = tomllib.loads((REPO / "addon" / "blender_manifest.toml").read_text())
    assert ba.check_manifest(data) == []
    assert data["id"] == "adain_stylize" and data["version"] == "0.1.0"
    assert data["license"] == ["SPDX:MIT", "SPDX:GPL-3.0-or-later"]  # MIT code; GPL-3+ package for the sample styles
    assert "wheels" not in data and "platforms" not in data


def test_manifest_problems_are_named(ba: ModuleType) -> None:
    data = tomllib.loads((REPO / "addon" / "blender_manifest.toml").read_text())
    bad = {**data, "tagline": "x" * 65, "permissions": {"network": "Talks to the backend."}}
    problems = ba.check_manifest(bad)
    assert any("tagline" in p and "65" in p for p in problems)
    assert any("permissions.network" in p and "punctuation" in p for p in problems)
    with pytest.raises(ba.BuildError, match="wheels"):
        ba.render_manifest('schema_version = "1.0.0"\nwheels = []\n', ["linux-x64"], [])


def test_build_every_platform(ba: ModuleType, cache: Path, tmp_path: Path, wire_wheel: str) -> None:
    zip_path = ba.build(tmp_path / "out", list(ba.PLATFORMS), cache, log=lambda _: None)
    assert zip_path.name == "adain_stylize-0.1.0.zip"
    data = _manifest(zip_path)
    assert data["platforms"] == list(ba.PLATFORMS)
    expected = sorted({n for names in REAL_WHEELS.values() for n in names} | {wire_wheel})  # the universal2 pyzmq once
    assert sorted(data["wheels"]) == [f"./wheels/{n}" for n in expected]
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    assert {p.name for p in (REPO / "addon").glob("*.py")} <= names
    assert {f"sample_styles/{p.name}" for p in (REPO / "addon" / "sample_styles").iterdir()} <= names
    assert "sample_styles/LICENSES.md" in names
    assert {f"wheels/{n}" for n in expected} <= names
    assert ba.self_check(zip_path, list(ba.PLATFORMS)) == []


def test_build_subset_excludes_junk_and_is_reproducible(ba: ModuleType, cache: Path, tmp_path: Path, wire_wheel: str) -> None:
    addon = tmp_path / "addon"
    shutil.copytree(REPO / "addon", addon, ignore=shutil.ignore_patterns("__pycache__"))
    (addon / "ui").mkdir()
    (addon / "ui" / "__init__.py").write_text("X = 1\n")
    for junk in ("__pycache__/client.cpython-311.pyc", "tests/test_x.py", ".hidden.py", "ui/__pycache__/a.pyc", "test_y.py"):
        (addon / junk).parent.mkdir(parents=True, exist_ok=True)
        (addon / junk).write_text("")
    first = ba.build(tmp_path / "a", ["linux-x64"], cache, addon_dir=addon, log=lambda _: None)
    second = ba.build(tmp_path / "b", ["linux-x64"], cache, addon_dir=addon, log=lambda _: None)
    assert first.name == "adain_stylize-0.1.0-linux_x64.zip"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
    assert "ui/__init__.py" in names
    assert not any("__pycache__" in n or "test" in n or n.startswith(".") for n in names)
    assert _manifest(first)["platforms"] == ["linux-x64"]
    assert sorted(_manifest(first)["wheels"]) == sorted(f"./wheels/{n}" for n in [*REAL_WHEELS["linux-x64"], wire_wheel])


def test_broken_python_file_fails_the_check(ba: ModuleType, cache: Path, tmp_path: Path) -> None:
    addon = tmp_path / "addon"
    shutil.copytree(REPO / "addon", addon, ignore=shutil.ignore_patterns("__pycache__"))
    (addon / "broken.py").write_text("def f(:\n")
    with pytest.raises(ba.BuildError, match=r"broken\.py does not compile"):
        ba.build(tmp_path / "out", ["linux-x64"], cache, addon_dir=addon, log=lambda _: None)
    assert not list((tmp_path / "out").glob("*.zip"))


def test_corrupt_cached_wheel_is_named(ba: ModuleType, cache: Path, tmp_path: Path) -> None:
    (cache / "windows-x64" / REAL_WHEELS["windows-x64"][0]).write_bytes(b"not a zip")
    with pytest.raises(ba.BuildError, match="not a readable wheel"):
        ba.build(tmp_path / "out", ["windows-x64"], cache, log=lambda _: None)


def test_failed_download_is_one_clear_error(
    ba: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Real pip with no index and nothing to find, as on a machine without network.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    code = ba.main(["--output", str(tmp_path / "out"), "--platforms", "linux-arm64", "--wheel-cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: pip download of pyzmq==27.3.0 msgpack==1.2.4 for linux-arm64 failed" in err
    assert "access to PyPI" in err
    assert not list((tmp_path / "c").rglob("*.whl"))


def test_unknown_platform(ba: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert ba.main(["--platforms", "linux-x64,amiga-m68k"]) == 2
    assert "unknown platform 'amiga-m68k'" in capsys.readouterr().err


def test_zip_carries_the_wire_package_as_a_wheel_equal_to_the_source(
    ba: ModuleType, cache: Path, tmp_path: Path, wire_wheel: str
) -> None:
    """The add-on imports adain_wire from a pure-Python wheel in the zip: its files are the repository's, byte for
    byte, and the wheel's RECORD matches them (what an installer checks)."""
    import base64
    import hashlib
    import io

    zip_path = ba.build(tmp_path / "out", ["linux-x64"], cache, log=lambda _: None)
    with zipfile.ZipFile(zip_path) as zf:
        wheel = zf.read(f"wheels/{wire_wheel}")
    dist_info = wire_wheel.removesuffix("-py3-none-any.whl") + ".dist-info"
    source = {f"adain_wire/{p.relative_to(REPO / 'adain_wire').as_posix()}": p.read_bytes()
              for p in (REPO / "adain_wire").rglob("*.py") if "__pycache__" not in p.parts}  # fmt: skip
    assert "adain_wire/protocol.py" in source and "adain_wire/client.py" in source
    with zipfile.ZipFile(io.BytesIO(wheel)) as wf:
        shipped = {n: wf.read(n) for n in wf.namelist() if not n.startswith(f"{dist_info}/")}
        record = wf.read(f"{dist_info}/RECORD").decode().splitlines()
        wheel_meta = wf.read(f"{dist_info}/WHEEL").decode()
        listed = {n for n in wf.namelist() if n != f"{dist_info}/RECORD"}
    assert shipped == source
    assert "Root-Is-Purelib: true" in wheel_meta and "Tag: py3-none-any" in wheel_meta
    rows = dict(line.split(",", 1) for line in record)
    assert set(rows) == listed | {f"{dist_info}/RECORD"}
    for name, data in source.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert rows[name] == f"sha256={digest},{len(data)}"
    # the same tree gives the same wheel
    version = wire_wheel.removeprefix("adain_wire-").removesuffix("-py3-none-any.whl")
    assert ba.build_wire_wheel(REPO / "adain_wire", version) == (wire_wheel, wheel)


def test_wire_wheel_version_follows_its_code(ba: ModuleType, tmp_path: Path) -> None:
    """A changed wire package gets another wheel version, so Blender installs it over the previous one."""
    import shutil

    wire = tmp_path / "adain_wire"
    shutil.copytree(REPO / "adain_wire", wire, ignore=shutil.ignore_patterns("__pycache__"))
    before = ba.wire_version(wire, "0.1.0")
    assert before == ba.wire_version(REPO / "adain_wire", "0.1.0")  # the same code, the same version
    (wire / "client.py").write_text((wire / "client.py").read_text() + "\n# changed\n")
    assert ba.wire_version(wire, "0.1.0") != before


def test_zip_carries_the_backend_as_a_wheel_of_the_project(ba: ModuleType, cache: Path, tmp_path: Path) -> None:
    """Install Backend pip-installs the project from a wheel in the zip: what pyproject.toml packs (the packages and
    the shipped weights), its dependencies and console scripts, a version that names the sources; pip takes it."""
    import io
    import subprocess
    import sys

    bw = load_script("backend_wheel")
    zip_path = ba.build(tmp_path / "out", ["linux-x64"], cache, log=lambda _: None)
    version = bw.project_version(REPO)
    name = f"adain_blender-{version}-py3-none-any.whl"
    with zipfile.ZipFile(zip_path) as zf:
        assert [n for n in zf.namelist() if n.startswith("backend_wheel/")] == [f"backend_wheel/{name}"]
        wheel = zf.read(f"backend_wheel/{name}")
    assert version.startswith("0.1.0+") and len(version) == len("0.1.0+") + 8
    dist_info = f"adain_blender-{version}.dist-info"
    with zipfile.ZipFile(io.BytesIO(wheel)) as wf:
        names = set(wf.namelist())
        meta = wf.read(f"{dist_info}/METADATA").decode()
        scripts = wf.read(f"{dist_info}/entry_points.txt").decode()
        decoder = wf.read("adain/data/decoder.safetensors")
    assert {"backend/__main__.py", "backend/server.py", "adain/model.py", "adain_wire/client.py"} <= names
    assert {"adain/data/vgg19_norm_scales.safetensors", "adain/data/MODEL_CARD.md"} <= names
    assert decoder == (REPO / "adain" / "data" / "decoder.safetensors").read_bytes(), "the shipped weights, as they are"
    assert not any("__pycache__" in n or n.startswith("tests/") or n.startswith("addon/") for n in names)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [line.removeprefix("Requires-Dist: ") for line in meta.splitlines() if line.startswith("Requires-Dist:")] == deps
    assert "Requires-Python: >=3.11,<3.12" in meta
    assert "adain-backend = backend.__main__:main" in scripts
    assert bw.build_project_wheel(REPO) == (name, wheel), "the same tree gives the same wheel"

    (tmp_path / name).write_bytes(wheel)
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                           str(tmp_path / name)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (target / "backend" / "__main__.py").is_file() and (target / "adain" / "data" / "decoder.safetensors").is_file()


def test_backend_wheel_version_follows_the_sources(tmp_path: Path) -> None:
    bw = load_script("backend_wheel")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    for package in ("adain", "adain_wire", "backend"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = bw.project_version(repo)
    assert before == bw.project_version(REPO)
    (repo / "backend" / "server.py").write_text((repo / "backend" / "server.py").read_text() + "\n# changed\n")
    assert bw.project_version(repo) != before
    (repo / "adain" / "__init__.py").unlink()
    with pytest.raises(bw.WheelError, match=r"package adain has no .*__init__\.py"):
        bw.build_project_wheel(repo)
