#!/usr/bin/env python3
"""Build the installable Blender extension zip of the add-on (``addon/``), with its wheels.

    python3 scripts/build_addon.py --output dist/                      # every platform -> dist/adain_stylize-0.1.0.zip
    python3 scripts/build_addon.py --output dist/ --platforms linux-x64  # -> dist/adain_stylize-0.1.0-linux_x64.zip

The zip holds the add-on's Python files at its root, ``blender_manifest.toml`` with ``platforms`` and
``wheels`` filled in, and ``wheels/``: pyzmq and msgpack (pinned below) for CPython 3.11, the Python of
Blender 4.2 to 5.0, for each chosen platform, and ``adain_wire`` (the protocol and the client, shared with
the backend), built here from the repository's ``adain_wire/`` as a pure-Python wheel. Blender installs
those wheels into its extensions' site-packages when the extension is installed (Edit > Preferences > Get
Extensions > Install from Disk). ``backend_wheel/`` holds the project itself (``adain``, ``backend``, ``adain_wire``
and the shipped weights) as one pure-Python wheel (``scripts/backend_wheel.py``): the add-on's *Install Backend*
pip-installs it, with torch, into a private environment, so the backend always matches the add-on.

Wheels are fetched once with ``pip download`` into ``--wheel-cache`` (default ``build/wheels/`` in the
repository) and taken from there afterwards, so later builds need no network. Needs only a Python 3.11+
with pip: no bpy. The built zip is checked before the script reports success (manifest parses and has
the fields Blender requires, every listed wheel is in the zip and matches a declared platform, every
Python file compiles). The last line printed is the zip's path. Exit status 2 on any error, with one
``error:`` line saying what to do.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    sys.exit("error: scripts/build_addon.py needs Python 3.11 or newer (tomllib)")

if str(Path(__file__).resolve().parent) not in sys.path:  # backend_wheel, beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_wheel import FOLDER as BACKEND_FOLDER
from backend_wheel import WheelError, add_member, build_project_wheel, wheel_bytes

REPO: Final = Path(__file__).resolve().parents[1]
ADDON_DIR: Final = REPO / "addon"
WIRE_DIR: Final = REPO / "adain_wire"  # the wire package: protocol and client, imported by the add-on and the backend
MANIFEST: Final = "blender_manifest.toml"
DEFAULT_CACHE: Final = REPO / "build" / "wheels"

# The add-on's third-party dependencies, bundled as wheels (numpy comes with Blender). Keep these equal
# to what scripts/setup_blender.sh installs into the bpy test environments (it reads them from here).
WHEELS: Final[dict[str, str]] = {"pyzmq": "27.3.0", "msgpack": "1.2.4"}
PYTHON_VERSION: Final = "3.11"  # Blender 4.2 LTS to 5.0 all embed CPython 3.11

_MANYLINUX: Final = ("manylinux_2_28", *(f"manylinux_2_{minor}" for minor in range(27, 16, -1)), "manylinux2014")
# Blender platform name -> the pip ``--platform`` tags that may serve it (pip expands the macOS ones to
# older releases and universal2). Linux: Blender 4.2+ needs glibc 2.28; macOS: Blender 4.2+ needs 11.2.
PLATFORMS: Final[dict[str, tuple[str, ...]]] = {
    "linux-x64": tuple(f"{tag}_x86_64" for tag in _MANYLINUX),
    "linux-arm64": tuple(f"{tag}_aarch64" for tag in _MANYLINUX),
    "macos-x64": ("macosx_11_0_x86_64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "windows-x64": ("win_amd64",),
    "windows-arm64": ("win_arm64",),
}

# What never goes into the package.
_SKIP_DIRS: Final = frozenset({"__pycache__", "tests", "test", "wheels"})
_SKIP_SUFFIXES: Final = frozenset({".pyc", ".pyo", ".orig", ".rej", ".swp", ".tmp", ".zip", ".whl"})
_TERSE_MAX: Final = 64  # Blender's limit for tagline and permission texts
_REQUIRED: Final = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "blender_version_min", "license")
_ZIP_DATE: Final = (2024, 1, 1, 0, 0, 0)  # fixed timestamps: the same tree gives the same zip


class BuildError(Exception):
    """A problem the user can fix; main() prints it as one ``error:`` line."""


# --- wheels -----------------------------------------------------------------------------------------------


def wheel_dist_name(name: str) -> str:
    """The distribution name as it appears in wheel file names (PEP 427 escaping, lower case)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def blender_platforms_of_wheel(filename: str) -> set[str]:
    """The Blender platforms a wheel file serves, from its platform tag (as Blender's own check reads it).

    ``manylinux_2_26_x86_64.manylinux_2_28_x86_64`` -> linux-x64, ``macosx_10_15_universal2`` -> both
    macOS platforms, ``any`` -> all of them.
    """
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        raise BuildError(f"{filename} is not a wheel file name")
    found: set[str] = set()
    for tag in parts[-1].split("."):
        if tag == "any":
            return set(PLATFORMS)
        system = ""
        for prefix, name in (
            ("manylinux", "linux"),
            ("musllinux", "linux"),
            ("linux", "linux"),
            ("macosx", "macos"),
            ("win", "windows"),
        ):
            if tag.startswith(prefix):
                system = name
                break
        if tag.endswith(("x86_64", "amd64")):
            machines = ["x64"]
        elif tag.endswith(("aarch64", "arm64")):
            machines = ["arm64"]
        elif tag.endswith("universal2"):
            machines = ["x64", "arm64"]
        else:
            machines = []
        found.update(f"{system}-{machine}" for machine in machines if system)
    return found


def _python_ok(filename: str) -> bool:
    python_tag, abi_tag = filename.removesuffix(".whl").split("-")[-3:-1]
    pythons = set(python_tag.split("."))
    return bool(pythons & {"cp311", "py3", "py311"}) and bool(set(abi_tag.split(".")) & {"cp311", "abi3", "none"})


def _cached(directory: Path, dist: str, version: str) -> list[Path]:
    if not directory.is_dir():
        return []
    prefix = f"{wheel_dist_name(dist)}-{version}-"
    return sorted(p for p in directory.glob("*.whl") if p.name.lower().startswith(prefix))


def _check_wheel(path: Path, platform: str) -> None:
    if platform not in blender_platforms_of_wheel(path.name):
        raise BuildError(f"{path} does not serve Blender platform {platform}; remove it from the wheel cache")
    if not _python_ok(path.name):
        raise BuildError(f"{path} is not for CPython {PYTHON_VERSION}; remove it from the wheel cache")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BuildError(f"{path} is not a readable wheel ({exc}); delete it so it is downloaded again") from exc
    if bad is not None:
        raise BuildError(f"{path} is corrupt (member {bad}); delete it so it is downloaded again")


def _pip_download(platform: str, wanted: dict[str, str], dest: Path) -> None:
    """``pip download`` the wanted wheels for one platform into ``dest`` (through a temporary folder, so an
    interrupted download never leaves a partial file in the cache)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "--timeout",
            "60",
            "--retries",
            "2",
            "--only-binary=:all:",
            "--no-deps",
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
        ]
        for tag in PLATFORMS[platform]:
            cmd += ["--platform", tag]
        cmd += [f"{dist}=={version}" for dist, version in wanted.items()]
        cmd += ["-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BuildError(f"could not run pip with {sys.executable}: {exc}") from exc
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            said = " ".join([line for line in lines if line.startswith("ERROR")][-3:] or lines[-3:])
            if "No module named pip" in said:
                raise BuildError(
                    f"{sys.executable} has no pip: run this script with a Python that has pip "
                    "(e.g. .venv/bin/python), or fill the wheel cache by hand"
                )
            pins = " ".join(f"{d}=={v}" for d, v in wanted.items())
            raise BuildError(
                f"pip download of {pins} for {platform} failed (exit {proc.returncode}): {said} -- it needs access to "
                f"PyPI once; afterwards builds take the wheels from {dest.parent}. Without network, copy the .whl "
                f"files into {dest}/ yourself"
            )
        for path in Path(tmp).glob("*.whl"):
            path.replace(dest / path.name)


def ensure_wheels(platforms: Sequence[str], cache: Path, *, log: Any = print) -> dict[str, list[Path]]:
    """The wheel files for each platform, from ``cache/<platform>/``, downloading what is missing."""
    result: dict[str, list[Path]] = {}
    for platform in platforms:
        directory = cache / platform
        missing = {d: v for d, v in WHEELS.items() if not _cached(directory, d, v)}
        if missing:
            log(f"downloading {', '.join(f'{d}=={v}' for d, v in missing.items())} for {platform} into {directory}")
            _pip_download(platform, missing, directory)
        files: list[Path] = []
        for dist, version in WHEELS.items():
            found = _cached(directory, dist, version)
            if not found:
                raise BuildError(f"pip download gave no {dist}=={version} wheel for {platform} (CPython {PYTHON_VERSION})")
            if len(found) > 1:
                raise BuildError(
                    f"{directory} holds several {dist}=={version} wheels ({', '.join(p.name for p in found)}): keep one"
                )
            _check_wheel(found[0], platform)
            files.append(found[0])
        result[platform] = files
    return result


def wire_sources(wire_dir: Path) -> list[Path]:
    """The wire package's Python files, sorted (no caches)."""
    return sorted(p for p in wire_dir.rglob("*.py") if "__pycache__" not in p.relative_to(wire_dir).parts)


def wire_version(wire_dir: Path, base: str) -> str:
    """``BASE+<8 hex digits of the sources' sha256>``: a wire wheel changes its version whenever its code changes.

    Blender's extension installer skips a wheel whose ``.dist-info`` is already installed, so a rebuilt add-on of
    the same version would otherwise keep running the previous ``adain_wire`` (pyzmq and msgpack are pinned).
    """
    h = hashlib.sha256()
    for p in wire_sources(wire_dir):
        h.update(p.relative_to(wire_dir).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{base}+{h.hexdigest()[:8]}"


def build_wire_wheel(wire_dir: Path, version: str) -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python wheel of the wire package, ``adain_wire-VERSION-py3-none-any.whl``:
    its Python files as they are in ``wire_dir`` and a minimal ``.dist-info`` (METADATA, WHEEL, RECORD), with
    fixed timestamps so the same tree gives the same bytes. Blender installs it like the other wheels, so the
    add-on imports ``adain_wire`` as the backend does."""
    package = wire_dir.name
    sources = wire_sources(wire_dir)
    if not any(p.name == "__init__.py" and p.parent == wire_dir for p in sources):
        raise BuildError(f"{wire_dir} has no __init__.py")
    dist_info = f"{package}-{version}.dist-info"
    members = [(f"{package}/{p.relative_to(wire_dir).as_posix()}", p.read_bytes()) for p in sources]
    metadata = (
        f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        "Summary: The wire protocol and client between the AdaIN Blender add-on and its backend\n"
        "Requires-Python: >=3.11\nRequires-Dist: numpy\nRequires-Dist: msgpack\nRequires-Dist: pyzmq\n"
    )
    wheel = "Wheel-Version: 1.0\nGenerator: scripts/build_addon.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members += [(f"{dist_info}/METADATA", metadata.encode()), (f"{dist_info}/WHEEL", wheel.encode())]
    return f"{package}-{version}-py3-none-any.whl", wheel_bytes(members, dist_info)


# --- manifest ---------------------------------------------------------------------------------------------


def _toml_list(values: Iterable[str]) -> str:
    items = [f'  "{v}",' for v in values]
    return "[\n" + "\n".join(items) + "\n]"


def render_manifest(text: str, platforms: Sequence[str], wheel_names: Sequence[str]) -> str:
    """The repository's manifest with ``platforms`` and ``wheels`` added as top-level keys (before the first
    table, where TOML needs them)."""
    data = tomllib.loads(text)
    for key in ("platforms", "wheels"):
        if key in data:
            raise BuildError(f"addon/{MANIFEST} sets {key!r}: leave it out, the build writes it")
    generated = (
        "# Written by scripts/build_addon.py\n"
        f"platforms = {_toml_list(platforms)}\n"
        f"wheels = {_toml_list(f'./wheels/{name}' for name in wheel_names)}\n"
    )
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    while at > 0 and lines[at - 1].lstrip().startswith("#"):  # keep a table's leading comment with it
        at -= 1
    head = "".join(lines[:at])
    if head and not head.endswith("\n"):
        head += "\n"
    rendered = head + generated + "\n" + "".join(lines[at:])
    tomllib.loads(rendered)  # must still parse
    return rendered


def check_manifest(data: dict[str, Any]) -> list[str]:
    """Blender's main manifest rules (schema 1.0.0) that a typo could break; [] when fine."""
    problems = [f"missing {key!r}" for key in _REQUIRED if key not in data]
    if data.get("schema_version") != "1.0.0":
        problems.append('schema_version must be "1.0.0"')
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(data.get("id", ""))):
        problems.append("id must be a Python identifier")
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:[-+].+)?", str(data.get("version", ""))):
        problems.append("version must be semantic (X.Y.Z)")
    if data.get("type") not in ("add-on", "theme"):
        problems.append('type must be "add-on" or "theme"')
    terse = {"tagline": data.get("tagline", "")}
    permissions = data.get("permissions", {})
    if not isinstance(permissions, dict):
        problems.append("permissions must be a table")
        permissions = {}
    for key, text in permissions.items():
        if key not in ("files", "network", "clipboard", "camera", "microphone"):
            problems.append(f"unknown permission {key!r}")
        terse[f"permissions.{key}"] = text
    for key, text in terse.items():
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{key} must be a non-empty string")
        elif len(text) > _TERSE_MAX:
            problems.append(f"{key} is {len(text)} characters, Blender allows {_TERSE_MAX}")
        elif not (text[-1].isalnum() or text[-1] in ")]}"):
            problems.append(f"{key} must not end with punctuation")
    license_ = data.get("license")
    if not (isinstance(license_, list) and license_ and all(isinstance(x, str) and x.startswith("SPDX:") for x in license_)):
        problems.append('license must be a list of "SPDX:..." strings')
    return problems


# --- package ----------------------------------------------------------------------------------------------


def addon_files(addon_dir: Path) -> list[tuple[Path, str]]:
    """(file, name in the zip) for everything of the add-on that ships: Python modules and subpackages
    and their data files; never caches, tests, hidden files, wheels or the manifest (written separately)."""
    entries: list[tuple[Path, str]] = []
    for path in sorted(addon_dir.rglob("*")):
        rel = path.relative_to(addon_dir)
        if any(part.startswith(".") or part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        if path.is_dir() or path.name.startswith(".") or path.suffix in _SKIP_SUFFIXES or path.name.endswith("~"):
            continue
        if rel.parts == (MANIFEST,) or path.name == "conftest.py" or re.fullmatch(r"test_.*\.py|.*_test\.py", path.name):
            continue
        entries.append((path, rel.as_posix()))
    if not any(name == "__init__.py" for _, name in entries):
        raise BuildError(f"{addon_dir} has no __init__.py")
    return entries


_add = add_member  # fixed timestamps, wheels stored (they are zips), the rest deflated


def self_check(zip_path: Path, platforms: Sequence[str]) -> list[str]:
    """Structural check of a built package (what ``blender --command extension validate`` would reject,
    as far as it can be told without Blender); [] when fine."""
    problems: list[str] = []
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        if MANIFEST not in names:
            return [f"{MANIFEST} is not at the zip's root"]
        try:
            data = tomllib.loads(zf.read(MANIFEST).decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            return [f"{MANIFEST} does not parse: {exc}"]
        problems += check_manifest(data)
        if "__init__.py" not in names:
            problems.append("no __init__.py at the zip's root")
        if sorted(data.get("platforms", [])) != sorted(platforms):
            problems.append(f"platforms {data.get('platforms')} differ from the requested {list(platforms)}")
        served: dict[str, set[str]] = {p: set() for p in platforms}
        for entry in data.get("wheels", []):
            if not entry.startswith("./wheels/"):
                problems.append(f"wheel path {entry!r} must start with ./wheels/")
                continue
            member = entry.removeprefix("./")
            if member not in names:
                problems.append(f"{member} is listed in the manifest but not in the zip")
                continue
            dist = member.removeprefix("wheels/").split("-")[0].lower()
            for platform in blender_platforms_of_wheel(member) & set(platforms):
                served[platform].add(dist)
        for member in sorted(n for n in names if n.startswith("wheels/")):
            if f"./{member}" not in data.get("wheels", []):
                problems.append(f"{member} is in the zip but not in the manifest")
        for platform, dists in served.items():
            lacking = {wheel_dist_name(d) for d in WHEELS} - dists
            if lacking:
                problems.append(f"no {', '.join(sorted(lacking))} wheel for {platform}")
        wire = f"wheels/{WIRE_DIR.name}-{wire_version(WIRE_DIR, str(data.get('version')))}-py3-none-any.whl"
        if wire not in names:
            problems.append(f"no {wire}: the add-on imports {WIRE_DIR.name} from it")
        backend = [n for n in names if n.startswith(f"{BACKEND_FOLDER}/") and n.endswith(".whl")]
        if len(backend) != 1:
            problems.append(f"{len(backend)} backend wheels in {BACKEND_FOLDER}/ (Install Backend needs exactly one)")
        for name in sorted(n for n in names if n.endswith(".py")):
            try:
                compile(zf.read(name), name, "exec", dont_inherit=True)
            except SyntaxError as exc:
                problems.append(f"{name} does not compile: {exc}")
    return problems


def build(
    output: Path,
    platforms: Sequence[str],
    cache: Path,
    *,
    addon_dir: Path = ADDON_DIR,
    wire_dir: Path = WIRE_DIR,
    repo: Path = REPO,
    log: Any = print,
) -> Path:
    """Build the package; returns the zip's path. ``repo``: the project whose backend wheel goes in (pyproject.toml)."""
    manifest_path = addon_dir / MANIFEST
    try:
        manifest_text = manifest_path.read_text(encoding="utf-8")
        manifest = tomllib.loads(manifest_text)
    except FileNotFoundError as exc:
        raise BuildError(f"{manifest_path} is missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{manifest_path} does not parse: {exc}") from exc
    if problems := check_manifest(manifest):
        raise BuildError(f"{manifest_path}: " + "; ".join(problems))
    files = addon_files(addon_dir)
    wheels = ensure_wheels(platforms, cache, log=log)
    unique = sorted({path.name: path.read_bytes() for paths in wheels.values() for path in paths}.items())  # universal2: once
    unique.append(build_wire_wheel(wire_dir, wire_version(wire_dir, str(manifest["version"]))))
    rendered = render_manifest(manifest_text, platforms, [name for name, _ in unique])
    try:
        backend_name, backend_data = build_project_wheel(repo)
    except WheelError as exc:
        raise BuildError(f"cannot build the backend wheel: {exc}") from exc

    stem = f"{manifest['id']}-{manifest['version']}"
    if sorted(platforms) != sorted(PLATFORMS):
        stem += "-" + "-".join(p.replace("-", "_") for p in platforms)
    output.mkdir(parents=True, exist_ok=True)
    zip_path = output / f"{stem}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _add(zf, MANIFEST, rendered.encode("utf-8"))
        for path, name in files:
            _add(zf, name, path.read_bytes())
        for name, data in unique:
            _add(zf, str(PurePosixPath("wheels", name)), data)
        _add(zf, str(PurePosixPath(BACKEND_FOLDER, backend_name)), backend_data)
    tmp = zip_path.with_suffix(".zip.tmp")
    tmp.write_bytes(buffer.getvalue())
    if problems := self_check(tmp, platforms):
        tmp.unlink()
        raise BuildError(f"the built package fails its check: {'; '.join(problems)}")
    tmp.replace(zip_path)
    log(
        f"{len(files)} add-on files, {len(unique)} wheels ({', '.join(platforms)}), the backend wheel {backend_name} "
        f"({len(backend_data) / 1e6:.1f} MB): {zip_path.stat().st_size / 1e6:.1f} MB"
    )
    return zip_path


def parse_platforms(spec: str) -> list[str]:
    if spec.strip() in ("", "all"):
        return list(PLATFORMS)
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item not in PLATFORMS:
            raise BuildError(f"unknown platform {item!r}: choose from {', '.join(PLATFORMS)} (or 'all')")
        if item not in chosen:
            chosen.append(item)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", "-o", type=Path, default=REPO / "dist", help="folder for the zip (default: dist/)")
    parser.add_argument("--platforms", default="all", help=f"comma-separated subset of {','.join(PLATFORMS)} (default: all)")
    parser.add_argument(
        "--wheel-cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="downloaded wheels, one folder per platform (default: build/wheels/)",
    )
    parser.add_argument("--addon-dir", type=Path, default=ADDON_DIR, help=argparse.SUPPRESS)  # for tests
    parser.add_argument("--wire-dir", type=Path, default=WIRE_DIR, help=argparse.SUPPRESS)  # for tests
    parser.add_argument(
        "--print-requirements", action="store_true", help="print the pinned wheel requirements (pip format) and exit"
    )
    args = parser.parse_args(argv)
    if args.print_requirements:
        print("\n".join(f"{d}=={v}" for d, v in WHEELS.items()))
        return 0
    try:
        platforms = parse_platforms(args.platforms)
        zip_path = build(
            args.output.resolve(),
            platforms,
            args.wheel_cache.resolve(),
            addon_dir=args.addon_dir.resolve(),
            wire_dir=args.wire_dir.resolve(),
            log=lambda msg: print(msg, file=sys.stderr),
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
