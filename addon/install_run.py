"""One backend install, run step by step with progress, cancel and a log (no bpy; tested in tests/addon/).

``Install(...).run(cancelled)`` builds the environment in ``backend-env.partial`` (any thread: the UI runs it on a
``BackgroundTask`` and polls ``progress``), ``commit()`` (main thread, once the backend that used the previous one is
stopped) renames it into place. The steps, each a subprocess whose output goes to the log:

1. ``python -m venv`` with the Python ``backend_install.find_python`` chose;
2. ``pip install <torch requirement>`` from the index ``backend_install.choose_torch`` chose;
3. ``pip install <the backend wheel>`` (its other requirements from PyPI or ``ADAIN_PIP_ARGS``), the torch of step
   2 held by a constraint, so pip never swaps it for another build;
4. the environment's Python imports the backend and says which device its torch finds.

Cancel kills the running subprocess (its whole process group) and removes the half-made environment; so does a
failure, which becomes one ``InstallError`` line naming the cause (no network, no disk space, no such torch...) and
the log file.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .backend_install import (
    ENV_DIR,
    INFO_NAME,
    LOG_NAME,
    OLD_SUFFIX,
    PIP_ARGS_ENV,
    SPACE_GB,
    STAGING_SUFFIX,
    TORCH_REQUIREMENT_ENV,
    InstallCancelledError,
    Installed,
    InstallError,
    TorchChoice,
    clean_env,
    env_python,
    installed,
    remove_tree,
    tree_size,
)

PIP = ("-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off", "--no-compile")
PROBE = """\
import importlib.metadata as md, json
import torch
import adain, adain_wire, backend
from adain import weights
weights.find_vgg19_file()
if torch.cuda.is_available():
    device = "cuda:0 " + torch.cuda.get_device_name(0)
elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    device = "mps"
else:
    device = "cpu"
print("ADAIN-PROBE " + json.dumps({"torch": torch.__version__, "backend": md.version("adain-blender"), "device": device}))
"""
_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
            "Name or service not known", "nodename nor servname", "getaddrinfo failed", "Network is unreachable",
            "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "No route to host")  # fmt: skip
_DISK = ("No space left on device", "[Errno 28]", "not enough space on the disk", "[WinError 112]")


@dataclass
class Progress:
    """Where an install is, for a progress bar: step ``step`` of ``steps`` (1-based), its label, pip's last line."""

    step: int = 0
    steps: int = 4
    label: str = "Starting"
    detail: str = ""

    @property
    def fraction(self) -> float:
        return max(0.0, min(1.0, (self.step - 0.5) / self.steps)) if self.step else 0.0

    def line(self) -> str:
        head = f"{self.step}/{self.steps} {self.label}" if self.step else self.label
        return f"{head}: {self.detail}" if self.detail else head


class Install:
    """One install into ``root`` (see the module docstring)."""

    def __init__(self, root: Path, wheel: Path, python: str, torch: TorchChoice, pip_args: tuple[str, ...] = (),
                 environ: Mapping[str, str] = os.environ) -> None:  # fmt: skip
        self.root, self.wheel, self.python, self.torch, self.pip_args = root, wheel, python, torch, pip_args
        self.staging = root / (ENV_DIR + STAGING_SUFFIX)
        self.log_path = root / LOG_NAME
        self.env = clean_env(environ)
        self.progress = Progress()
        self._log_lock = threading.Lock()
        self._log_file: IO[str] | None = None
        self._ran = False

    # ------------------------------------------------------------------------------ run
    def run(self, cancelled: Callable[[], bool] = lambda: False) -> dict[str, object]:
        """Build the environment in the staging folder; returns what ``adain-install.json`` says. Raises InstallError
        (InstallCancelledError after ``cancelled()`` turned true) and then leaves no staging folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_tree(self.staging)  # a leftover of a crash
        with open(self.log_path, "w", encoding="utf-8") as log:
            self._log_file = log
            try:
                info = self._steps(cancelled)
            except InstallError as e:
                self._log(f"FAILED: {e}")
                remove_tree(self.staging)
                raise
            except BaseException as e:
                self._log(f"FAILED: {type(e).__name__}: {e}")
                remove_tree(self.staging)
                raise
            finally:
                self._log_file = None
        self._ran = True
        return info

    def _steps(self, cancelled: Callable[[], bool]) -> dict[str, object]:
        t = self.torch
        self._log(f"AdaIN backend install, {datetime.datetime.now().isoformat(timespec='seconds')}")
        self._log(f"python: {self.python}; torch: {t.requirement} ({t.why}); wheel: {self.wheel.name}")
        overrides = {k: self.env.get(k, "") for k in (TORCH_REQUIREMENT_ENV, PIP_ARGS_ENV)}
        self._log(f"overrides: {overrides}")
        self._check_space()
        py = os.fspath(env_python(self.staging))
        self._step(1, "Creating the environment", [self.python, "-m", "venv", os.fspath(self.staging)], cancelled)
        self._step(2, f"Installing {t.requirement}", [py, *PIP, *t.index_args, *self.pip_args, t.requirement], cancelled)
        constraint = self.staging / "adain-constraints.txt"
        constraint.write_text(f"torch=={self._torch_version()}\n", encoding="utf-8")
        argv = [py, *PIP, *self.pip_args, "--constraint", os.fspath(constraint), os.fspath(self.wheel)]
        self._step(3, "Installing the backend", argv, cancelled)
        lines = self._step(4, "Checking the device", [py, "-c", PROBE], cancelled)
        probe = next((json.loads(x.split(" ", 1)[1]) for x in reversed(lines) if x.startswith("ADAIN-PROBE ")), None)
        if not isinstance(probe, dict):
            raise InstallError(f"the installed backend said nothing about its device (log: {self.log_path})")
        info: dict[str, object] = {**probe, "python": self.python, "torch_choice": t.why, "requirement": t.requirement}
        info["size_bytes"] = tree_size(self.staging)
        (self.staging / INFO_NAME).write_text(json.dumps(info, indent=1), encoding="utf-8")
        self._log(f"done: {info}")
        return info

    def _check_space(self) -> None:
        need = SPACE_GB.get(self.torch.device, 2.5)
        free = shutil.disk_usage(self.root).free / 1e9
        if free < need:
            raise InstallError(
                f"no disk space: the backend needs about {need:g} GB, {self.root} has {free:.1f} GB free; free some and "
                f"try again (log: {self.log_path})"
            )

    def _torch_version(self) -> str:
        found = sorted(self.staging.glob("[Ll]ib/**/site-packages/torch-*.dist-info"))
        if not found:
            raise InstallError(f"pip reported success but installed no torch (log: {self.log_path})")
        return found[0].name.removeprefix("torch-").removesuffix(".dist-info")

    # ------------------------------------------------------------------------------ one subprocess
    def _step(self, index: int, label: str, argv: list[str], cancelled: Callable[[], bool]) -> list[str]:
        self.progress.step, self.progress.label, self.progress.detail = index, label, ""
        self._log(f"\n== {index}/{self.progress.steps} {label}\n$ {shlex.join(argv)}")
        if cancelled():
            raise InstallCancelledError("backend install cancelled; nothing was changed")
        extra: dict[str, object] = {"start_new_session": True} if os.name != "nt" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}  # fmt: skip
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.root, text=True, encoding="utf-8", errors="replace",
                                    **extra)  # type: ignore[call-overload]  # fmt: skip
        except OSError as e:
            raise InstallError(f"{label}: cannot run {argv[0]} ({e.strerror or e}) (log: {self.log_path})") from e
        lines: list[str] = []
        reader = threading.Thread(target=self._read, args=(proc, lines), name="adain-install-output", daemon=True)
        reader.start()
        while proc.poll() is None:
            if cancelled():
                kill_tree(proc)
                reader.join(5)
                self._log("cancelled")
                raise InstallCancelledError("backend install cancelled; nothing was changed")
            time.sleep(0.1)
        reader.join(10)
        if proc.returncode != 0:
            raise InstallError(explain(label, lines, proc.returncode, self.log_path, self.root))
        return lines

    def _read(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            lines.append(line)
            self._log(line)
            if line.strip():
                self.progress.detail = line.strip()[:100]

    def _log(self, text: str) -> None:
        with self._log_lock:
            f = self._log_file
            if f is not None:
                f.write(text + "\n")
                f.flush()

    # ------------------------------------------------------------------------------ into place
    def commit(self) -> Installed:
        """Swap the finished environment in for the previous one (stop any backend running from that one first)."""
        if not self._ran or not self.staging.is_dir():
            raise InstallError("internal: nothing to put in place (the install did not finish)")
        return swap_in(self.root, self.staging, self.log_path)

    def discard(self) -> None:
        remove_tree(self.staging)


def swap_in(root: Path, staging: Path, log: Path) -> Installed:
    """Rename ``staging`` to ``root/backend-env``, the previous environment out of the way first and deleted after;
    when the rename fails the previous one is put back."""
    final, old = root / ENV_DIR, root / (ENV_DIR + OLD_SUFFIX)
    remove_tree(old)
    if final.exists():
        final.rename(old)
    try:
        staging.rename(final)
    except OSError as e:
        if old.exists() and not final.exists():
            old.rename(final)
        remove_tree(staging)
        raise InstallError(f"cannot put the new environment in place ({e.strerror or e}); the previous one is kept") from e
    relocate(final, staging)
    try:
        remove_tree(old)
    except InstallError:
        pass  # still in use (Windows): ``backend_install.remove`` or the next install takes it away
    done = installed(root)
    if done is None:
        raise InstallError(f"internal: the new environment in {final} is incomplete (log: {log})")
    return done


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """Kill a subprocess started in its own session or process group, with whatever it started."""
    try:
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def relocate(env: Path, was: Path) -> None:
    """Point an environment's text files that name the folder it was built in (pyvenv.cfg, activate scripts, the
    console scripts' first lines) at its new place; the add-on itself runs ``python -m backend`` and needs none."""
    old, new = os.fspath(was).encode(), os.fspath(env).encode()
    scripts = env / ("Scripts" if os.name == "nt" else "bin")
    for path in [env / "pyvenv.cfg", *(scripts.iterdir() if scripts.is_dir() else ())]:
        if path.is_symlink() or not path.is_file() or path.suffix == ".exe" or path.stat().st_size > 1_000_000:
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def explain(label: str, lines: list[str], code: int, log: Path, root: Path) -> str:
    """One line for a failed step, from what it printed (see the module docstring)."""
    text = "\n".join(lines)
    errors = [x.strip() for x in lines if x.strip().startswith("ERROR")]
    said = (errors or [x.strip() for x in lines if x.strip()] or [f"exit status {code}"])[-1][:300]
    if any(k in text for k in _DISK):
        why = f"no disk space left in {root}: free some and try again"
    elif any(k in text for k in _NETWORK):
        why = (
            f"no network: pip could not reach the package index ({label.lower()}); connect to the internet, or point "
            f"{PIP_ARGS_ENV} at a mirror (--index-url URL) or a folder of wheels (--find-links DIR)"
        )
    elif (what := _not_found(lines)) is not None:
        why = f"pip found no {what} for this machine ({label.lower()}): check {TORCH_REQUIREMENT_ENV} and {PIP_ARGS_ENV}"
    elif causes := _conflict(lines):
        why = f"pip cannot install {' with '.join(causes)} ({label.lower()}): check {TORCH_REQUIREMENT_ENV} and {PIP_ARGS_ENV}"
    elif "ResolutionImpossible" in text or "conflicting dependencies" in text:
        why = f"pip found the requirements in conflict ({said}); check {TORCH_REQUIREMENT_ENV} and {PIP_ARGS_ENV}"
    elif label.startswith("Creating"):
        why = f"cannot make a virtual environment ({said})"
    else:
        why = f"{label.lower()} failed: {said}"
    return f"{why} (log: {log})"


def _not_found(lines: list[str]) -> str | None:
    """The requirement pip found nothing for, or None: "No matching distribution found for X", or (with a constraint
    in pip's configuration) a conflict whose package "has no matching distributions available"."""
    for x in lines:
        if "No matching distribution found for" in x:
            return x.split("found for", 1)[1].strip()
    if not any("no matching distributions available" in x for x in lines):
        return None
    asked = [x.split("requested", 1)[1].strip() for x in lines if "The user requested" in x and "(constraint)" not in x]
    return asked[0] if asked else "the requested package"


def _conflict(lines: list[str]) -> list[str]:
    """The requirements pip's resolver found in conflict ("The conflict is caused by:" and the lines after it), e.g.
    ["torch==0.0.1", "constraint torch<=2.14.1"]; [] when it said none."""
    try:
        start = next(i for i, x in enumerate(lines) if x.strip() == "The conflict is caused by:") + 1
    except StopIteration:
        return []
    causes = []
    for x in lines[start:]:
        if not x.strip():
            break
        causes.append(x.strip().replace("The user requested (constraint) ", "constraint ").replace("The user requested ", ""))
    return causes
