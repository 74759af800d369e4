"""The project (the ``adain`` library, the ``backend`` server and the ``adain_wire`` package) as a wheel, for the add-on
zip: its *Install Backend* button pip-installs this wheel into a private environment, so the backend it runs is
always the one the add-on was built with.

    adain_blender-0.1.0+<8 hex digits>-py3-none-any.whl

What goes in is what ``pip wheel .`` would put in, read from ``pyproject.toml``: the ``[tool.setuptools] packages``
(each package's modules; setuptools does not add subpackages to an explicit list either) and their
``package-data`` (the shipped weights, the model card, the sample images), with ``[project]`` dependencies as
``Requires-Dist`` and ``[project.scripts]`` as console scripts. It is written here rather than by setuptools so that
the build needs no network and no build backend, and the same tree gives the same bytes (fixed timestamps, sorted
members), which keeps the add-on zip reproducible. The version carries a hash of everything in the wheel (like the
wire wheel's), so an add-on built from changed sources ships, and installs, a backend of another version.

Imported by ``scripts/build_addon.py``; needs Python 3.11+ and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from pathlib import Path
from typing import Any, Final

ZIP_DATE: Final = (2024, 1, 1, 0, 0, 0)  # fixed timestamps: the same tree gives the same wheel
FOLDER: Final = "backend_wheel"  # where the wheel lies in the add-on zip (not wheels/: Blender installs those itself)


class WheelError(Exception):
    """The project cannot be packed as it is; the message says why."""


def add_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED if name.endswith(".whl") else zipfile.ZIP_DEFLATED  # wheels are zips
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def wheel_bytes(members: list[tuple[str, bytes]], dist_info: str) -> bytes:
    """A wheel (zip) of ``members`` (name, bytes), in that order, with ``<dist_info>/RECORD`` appended."""
    record = ""
    for name, data in members:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    rows = [*members, (f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode())]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in rows:
            add_member(zf, name, data)
    return buffer.getvalue()


def _pyproject(repo: Path) -> dict[str, Any]:
    path = repo / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WheelError(f"cannot read {path}: {exc}") from exc


def project_files(repo: Path) -> list[tuple[Path, str]]:
    """(file, name in the wheel) for the packages and package data ``pyproject.toml`` names, sorted by name."""
    tool = _pyproject(repo).get("tool", {}).get("setuptools", {})
    packages = tool.get("packages")
    if not packages:
        raise WheelError("pyproject.toml names no [tool.setuptools] packages")
    data = tool.get("package-data", {})
    found: dict[str, Path] = {}
    for package in packages:
        root = repo / package.replace(".", "/")
        if not (root / "__init__.py").is_file():
            raise WheelError(f"package {package} has no {root / '__init__.py'}")
        files = [p for p in root.glob("*.py")]
        for pattern in data.get(package, []):
            files += [p for p in root.glob(pattern) if p.is_file()]
        for p in files:
            found[p.relative_to(repo).as_posix()] = p
    return [(found[name], name) for name in sorted(found)]


def project_version(repo: Path) -> str:
    """``<pyproject version>+<8 hex digits of the sha256 of the wheel's files>``."""
    base = str(_pyproject(repo)["project"]["version"])
    h = hashlib.sha256()
    for path, name in project_files(repo):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{base}+{h.hexdigest()[:8]}"


def dist_name(name: str) -> str:
    """The distribution name as wheel file names spell it (PEP 427: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata(project: dict[str, Any], version: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
    ]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    licence = project.get("license", {})
    if isinstance(licence, dict) and "text" in licence:
        lines.append(f"License: {licence['text']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def build_project_wheel(repo: Path) -> tuple[str, bytes]:
    """(file name, bytes) of the project's wheel; see the module docstring."""
    project = _pyproject(repo)["project"]
    version = project_version(repo)
    dist = dist_name(str(project["name"]))
    dist_info = f"{dist}-{version}.dist-info"
    members = [(name, path.read_bytes()) for path, name in project_files(repo)]
    wheel = "Wheel-Version: 1.0\nGenerator: scripts/backend_wheel.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members += [(f"{dist_info}/METADATA", _metadata(project, version).encode()), (f"{dist_info}/WHEEL", wheel.encode())]
    scripts = project.get("scripts", {})
    if scripts:
        text = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(scripts.items()))
        members.append((f"{dist_info}/entry_points.txt", text.encode()))
    return f"{dist}-{version}-py3-none-any.whl", wheel_bytes(members, dist_info)
