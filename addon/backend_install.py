"""What *Install Backend* installs, where, and with which Python and torch (no bpy; tested in tests/addon/).

The backend runs in a private Python 3.11 environment in the extension's user folder (``ROOT``, from
``bpy.utils.extension_path_user``):

    ROOT/backend-env/              the environment: torch + the backend wheel bundled in the add-on zip
    ROOT/backend-env/adain-install.json   what was installed (versions, device, size), written last
    ROOT/backend-install.log       the last install's log (pip's output)

It is built in ``backend-env.partial`` beside it and renamed into place only when complete (``install_run``), so a
failed or cancelled install leaves the previous environment as it was.

Which torch (``choose_torch``):

- an NVIDIA GPU (``nvidia-smi`` on PATH, or ``/proc/driver/nvidia``), Linux or Windows: PyTorch's CUDA 12.8 index
  (``TORCH_CUDA_INDEX``; its wheels bring their CUDA libraries, a driver of 525 or newer runs them);
- macOS on Apple silicon: PyPI's default build, which has MPS (Metal); Intel Macs have no torch builds since 2.3:
  refused as an unsupported platform;
- anything else: the CPU build: on Linux from PyTorch's CPU index (``TORCH_CPU_INDEX``: PyPI's Linux torch carries
  CUDA libraries, gigabytes of them), on Windows from PyPI (whose Windows torch is CPU-only).

``ADAIN_TORCH_REQUIREMENT`` replaces the requirement (default: the backend wheel's own pin, e.g. ``torch==2.13.0``)
and ``ADAIN_PIP_ARGS`` (split like a shell command line) is given to every ``pip install``; when it is set, no index
of ours is added: ``--index-url URL`` or ``--find-links DIR`` for mirrors and offline installs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_DIR = "backend-env"
STAGING_SUFFIX = ".partial"
OLD_SUFFIX = ".old"
LOG_NAME = "backend-install.log"
INFO_NAME = "adain-install.json"
WHEEL_FOLDER = "backend_wheel"  # in the add-on zip (scripts/backend_wheel.py)
PYTHON = (3, 11)  # the backend wheel's Requires-Python and Blender 4.2 to 5.0's own
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
TORCH_REQUIREMENT_ENV = "ADAIN_TORCH_REQUIREMENT"
PIP_ARGS_ENV = "ADAIN_PIP_ARGS"
# Free disk space asked for before starting (torch, its libraries, pip's temporary copies), in GB.
SPACE_GB = {"cuda": 8.0, "cpu": 2.5, "mps": 2.0}
_CHECK = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"


class InstallError(Exception):
    """The install cannot go on; the message is one line that says why and what to do."""


class InstallCancelledError(InstallError):
    pass


# --- the machine and its torch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system().lower(): linux, darwin, windows...
    arch: str  # x86_64, arm64, aarch64, amd64...
    nvidia: bool

    @classmethod
    def detect(cls) -> Machine:
        return cls(platform.system().lower(), platform.machine().lower(), has_nvidia())


def has_nvidia() -> bool:
    """An NVIDIA driver is installed: its ``nvidia-smi`` is on PATH (Windows: or in System32), or Linux's
    ``/proc/driver/nvidia`` exists."""
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        return True
    system_root = os.environ.get("SystemRoot", "")
    return bool(system_root) and (Path(system_root) / "System32" / "nvidia-smi.exe").is_file()


@dataclass(frozen=True)
class TorchChoice:
    requirement: str  # e.g. torch==2.13.0
    index_args: tuple[str, ...]  # pip options for the torch step (--index-url ...), () for PyPI
    device: str  # what it is built for: cuda, mps or cpu
    why: str  # one line for the log and the preferences


def choose_torch(machine: Machine, default_requirement: str, environ: Mapping[str, str] = os.environ) -> TorchChoice:
    """The torch build for ``machine`` (module docstring); InstallError on an unsupported platform."""
    requirement = environ.get(TORCH_REQUIREMENT_ENV, "").strip() or default_requirement
    overridden = bool(environ.get(PIP_ARGS_ENV, "").strip())
    system, arch = machine.system, machine.arch
    if system == "darwin":
        if arch not in ("arm64", "aarch64") and not overridden:
            raise InstallError(
                "unsupported platform: PyTorch has no builds for Intel Macs since version 2.3; run the backend on "
                "another machine (Connect to backend), or point ADAIN_PIP_ARGS at a torch build you have"
            )
        choice = TorchChoice(requirement, (), "mps", "macOS: PyPI's torch, with Metal (MPS)")
    elif system in ("linux", "windows") and machine.nvidia:
        choice = TorchChoice(requirement, ("--index-url", TORCH_CUDA_INDEX), "cuda", "NVIDIA GPU: PyTorch's CUDA 12.8 build")
    elif system == "linux":
        choice = TorchChoice(requirement, ("--index-url", TORCH_CPU_INDEX), "cpu", "no NVIDIA GPU: PyTorch's CPU build")
    elif system == "windows":
        choice = TorchChoice(requirement, (), "cpu", "no NVIDIA GPU: PyPI's torch (CPU-only on Windows)")
    else:
        raise InstallError(
            f"unsupported platform {machine.system} {machine.arch}: PyTorch builds exist for Linux, Windows and macOS"
        )
    if overridden:
        choice = TorchChoice(requirement, (), choice.device, f"{choice.why}; the index from {PIP_ARGS_ENV}")
    if requirement != default_requirement:
        choice = TorchChoice(
            requirement, choice.index_args, choice.device, f"{choice.why}; {requirement} from {TORCH_REQUIREMENT_ENV}"
        )
    return choice


def user_pip_args(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """``ADAIN_PIP_ARGS`` split like a command line (Windows rules on Windows: backslashes stay)."""
    try:
        return tuple(shlex.split(environ.get(PIP_ARGS_ENV, ""), posix=os.name != "nt"))
    except ValueError as e:
        raise InstallError(f"{PIP_ARGS_ENV} does not parse ({e}): quote it as on a shell command line") from e


# --- Python -------------------------------------------------------------------------------------------------------


def python_problem(python: str | os.PathLike[str]) -> str | None:
    """Why ``python`` cannot make the environment (not found, not 3.11, no venv/ensurepip), or None when it can."""
    try:
        proc = subprocess.run([os.fspath(python), "-c", _CHECK], capture_output=True, text=True, timeout=60, env=clean_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run it ({getattr(e, 'strerror', None) or e})"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"it has no venv or ensurepip module ({last})"
    version = proc.stdout.strip()
    if version != f"{PYTHON[0]}.{PYTHON[1]}":
        return f"it is Python {version}, the backend needs {PYTHON[0]}.{PYTHON[1]}"
    return None


def find_python(configured: str = "", running: str = sys.executable, path_names: tuple[str, ...] = ("python3.11",)) -> str:
    """The Python that makes the environment: ``configured`` (the preferences' Advanced > Python) when given,
    else the running one (Blender's own), else one named ``path_names`` on PATH. InstallError when none is usable."""
    if configured.strip():
        why = python_problem(configured.strip())
        if why:
            raise InstallError(f"no usable Python: the one in the preferences ({configured.strip()}): {why}")
        return configured.strip()
    tried = []
    candidates = [running, *(p for p in (shutil.which(n) for n in path_names) if p)]
    for candidate in dict.fromkeys(candidates):
        why = python_problem(candidate)
        if why is None:
            return candidate
        tried.append(f"{candidate}: {why}")
    raise InstallError(
        f"no usable Python {PYTHON[0]}.{PYTHON[1]} to make the backend's environment ({'; '.join(tried)}): install "
        f"Python {PYTHON[0]}.{PYTHON[1]} and give its path in the preferences (Advanced > Python)"
    )


def clean_env(base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for the installer's subprocesses: Blender's and a caller's Python settings left out (they
    would point the new environment at another Python's modules); pip's own settings (PIP_*) kept."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONUSERBASE", "VIRTUAL_ENV",
            "__PYVENV_LAUNCHER__", "CONDA_PREFIX"}  # fmt: skip
    env = {k: v for k, v in base.items() if k not in drop}
    env.update(PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


# --- the bundled backend wheel ----------------------------------------------------------------------------------


def bundled_wheel(addon_dir: Path) -> Path:
    """The backend wheel in the add-on's folder; InstallError when there is none (an add-on run from source)."""
    found = sorted((addon_dir / WHEEL_FOLDER).glob("*.whl"))
    if len(found) != 1:
        raise InstallError(
            f"this add-on carries {'no' if not found else len(found)} backend wheel(s) in {addon_dir / WHEEL_FOLDER}: "
            "install the zip that scripts/build_addon.py builds, or set the backend command under Advanced"
        )
    return found[0]


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name (``adain_blender-0.1.0+abcd1234-py3-none-any.whl`` -> 0.1.0+abcd1234)."""
    return wheel.name.split("-")[1]


def wheel_torch_requirement(wheel: Path) -> str:
    """The wheel's own torch pin (its METADATA's ``Requires-Dist: torch...``), e.g. ``torch==2.13.0``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            lines = zf.read(meta).decode("utf-8").splitlines()
    except (OSError, zipfile.BadZipFile, StopIteration) as e:
        raise InstallError(f"the backend wheel {wheel} is unreadable ({e}): reinstall the add-on") from e
    for line in lines:
        m = re.match(r"Requires-Dist:\s*(torch(?![\w.-])[^;]*)(;.*)?$", line.strip(), re.IGNORECASE)
        if m and not m.group(2):
            return m.group(1).replace(" ", "")
    return "torch"


# --- what is installed --------------------------------------------------------------------------------------------


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@dataclass(frozen=True)
class Installed:
    """What ``adain-install.json`` says, and where."""

    env: Path
    torch: str
    backend: str
    device: str  # what the environment's torch found, e.g. "cuda:0 NVIDIA RTX 4090", "mps", "cpu"
    size_bytes: int
    python: str  # the Python it was made with
    torch_choice: str

    @property
    def python_exe(self) -> Path:
        return env_python(self.env)

    def command(self) -> tuple[str, ...]:
        """How to start the backend from this environment (BackendManager appends --bind and --owner-pid); ``-P``:
        the current folder is not searched for modules (one named ``backend`` or ``adain`` would shadow the installed
        ones)."""
        return (os.fspath(self.python_exe), "-P", "-m", "backend")

    def describe(self) -> str:
        return f"torch {self.torch}, backend {self.backend}, on {self.device}; {self.size_bytes / 1e9:.1f} GB"


def installed(root: Path) -> Installed | None:
    """The environment in ``root``, or None when there is none (or it is incomplete: no info file or no python)."""
    env = root / ENV_DIR
    try:
        data = json.loads((env / INFO_NAME).read_text(encoding="utf-8"))
        info = Installed(env, str(data["torch"]), str(data["backend"]), str(data["device"]), int(data["size_bytes"]),
                         str(data.get("python", "")), str(data.get("torch_choice", "")))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.python_exe.exists() else None


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def remove_tree(path: Path) -> None:
    """Delete a folder (read-only files too, as pip leaves some on Windows); InstallError when it stays."""

    def retry_writable(func: object, p: str, _exc: object) -> None:
        os.chmod(p, 0o700)
        func(p)  # type: ignore[operator]

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=retry_writable)
    if path.exists():
        raise InstallError(f"cannot remove {path}: a program still uses it (the backend?); stop it and try again")


def remove(root: Path) -> None:
    """Remove the environment, any half-made or replaced one, and the install log."""
    for name in (ENV_DIR, ENV_DIR + STAGING_SUFFIX, ENV_DIR + OLD_SUFFIX, LOG_NAME):
        remove_tree(root / name)
