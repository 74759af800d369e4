"""Install Backend's logic without Blender: the torch build per platform, the environment overrides, finding a
Python, the staged install with cancel, swapping an environment in, reading and removing it.

The real install (venv, torch, the bundled backend wheel, an F12 through it) is tested in real Blender:
tests/blender/test_backend_install.py. Here one fake "python" stands in for the venv step, only to test the cancel
mechanics: a subprocess (and its child) that would run for a minute, killed, and nothing left behind.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from addon import backend_install as bi
from addon.install_run import Install, Progress, explain, swap_in

LINUX, WINDOWS = bi.Machine("linux", "x86_64", False), bi.Machine("windows", "amd64", False)
PIN = "torch==2.13.0"


# --- which torch ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "index", "device"),
    [
        (bi.Machine("linux", "x86_64", True), ("--index-url", bi.TORCH_CUDA_INDEX), "cuda"),
        (bi.Machine("windows", "amd64", True), ("--index-url", bi.TORCH_CUDA_INDEX), "cuda"),
        (LINUX, ("--index-url", bi.TORCH_CPU_INDEX), "cpu"),
        (bi.Machine("linux", "aarch64", False), ("--index-url", bi.TORCH_CPU_INDEX), "cpu"),
        (WINDOWS, (), "cpu"),  # PyPI's Windows torch is the CPU build
        (bi.Machine("darwin", "arm64", False), (), "mps"),  # PyPI's macOS torch has MPS
    ],
)
def test_torch_build_per_platform(machine: bi.Machine, index: tuple[str, ...], device: str) -> None:
    choice = bi.choose_torch(machine, PIN, environ={})
    assert (choice.requirement, choice.index_args, choice.device) == (PIN, index, device)
    assert choice.why


def test_unsupported_platforms_are_refused_in_one_line() -> None:
    with pytest.raises(bi.InstallError, match=r"unsupported platform: PyTorch has no builds for Intel Macs"):
        bi.choose_torch(bi.Machine("darwin", "x86_64", False), PIN, environ={})
    with pytest.raises(bi.InstallError, match=r"unsupported platform freebsd amd64"):
        bi.choose_torch(bi.Machine("freebsd", "amd64", False), PIN, environ={})


def test_environment_overrides_the_requirement_and_the_index() -> None:
    env = {bi.TORCH_REQUIREMENT_ENV: "torch==2.13.0+cpu", bi.PIP_ARGS_ENV: "--index-url https://mirror.example/simple"}
    choice = bi.choose_torch(bi.Machine("linux", "x86_64", True), PIN, environ=env)
    assert choice.requirement == "torch==2.13.0+cpu"
    assert choice.index_args == (), "with ADAIN_PIP_ARGS set no index of ours is added"
    assert bi.TORCH_REQUIREMENT_ENV in choice.why and bi.PIP_ARGS_ENV in choice.why
    only_req = bi.choose_torch(LINUX, PIN, environ={bi.TORCH_REQUIREMENT_ENV: " torch==0.0.1 "})
    assert only_req.requirement == "torch==0.0.1" and only_req.index_args == ("--index-url", bi.TORCH_CPU_INDEX)
    # a mirror may serve an Intel Mac a torch of its own
    assert bi.choose_torch(bi.Machine("darwin", "x86_64", False), PIN, environ={bi.PIP_ARGS_ENV: "--find-links /w"})


def test_pip_args_split_like_a_command_line() -> None:
    env = {bi.PIP_ARGS_ENV: "--find-links '/srv/my wheels' --index-url https://m/simple"}
    if os.name != "nt":
        assert bi.user_pip_args(env) == ("--find-links", "/srv/my wheels", "--index-url", "https://m/simple")
    assert bi.user_pip_args({}) == ()
    with pytest.raises(bi.InstallError, match="ADAIN_PIP_ARGS does not parse"):
        bi.user_pip_args({bi.PIP_ARGS_ENV: "--find-links '/unclosed"})


# --- which Python ---------------------------------------------------------------------------------------------------


def test_the_running_python_is_taken_when_it_can_make_venvs() -> None:
    assert sys.version_info[:2] == bi.PYTHON
    assert bi.python_problem(sys.executable) is None
    assert bi.find_python("", running=sys.executable) == sys.executable


def test_no_usable_python_is_one_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-python")
    assert "cannot run it" in (bi.python_problem(missing) or "")
    with pytest.raises(bi.InstallError, match=r"no usable Python: the one in the preferences .*cannot run it"):
        bi.find_python(missing, running=sys.executable)
    with pytest.raises(bi.InstallError, match=r"no usable Python 3\.11 .*give its path in the preferences"):
        bi.find_python("", running=missing, path_names=())
    other = next((p for p in ("/root/.pyenv/versions/3.12.1/bin/python3", "/usr/bin/python3.12") if Path(p).is_file()), None)
    if other:  # a real Python of another version
        assert bi.python_problem(other) == "it is Python 3.12, the backend needs 3.11"


def test_subprocesses_get_no_python_settings_of_blender() -> None:
    env = bi.clean_env({"PYTHONPATH": "/blender/scripts", "PYTHONHOME": "/b", "PIP_INDEX_URL": "https://m", "PATH": "/bin"})
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env
    assert env["PIP_INDEX_URL"] == "https://m" and env["PATH"] == "/bin" and env["PYTHONNOUSERSITE"] == "1"


# --- the bundled wheel ----------------------------------------------------------------------------------------------


def _wheel(folder: Path, requires: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adain_blender-0.1.0+0123abcd-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: adain-blender\nVersion: 0.1.0+0123abcd\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("adain_blender-0.1.0+0123abcd.dist-info/METADATA", meta)
    return path


def test_the_wheel_gives_the_version_and_the_torch_pin(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / bi.WHEEL_FOLDER, ["torchvision>=0.1", "torch==2.13.0", "numpy>=1.26", "torch; extra == 'x'"])
    assert bi.bundled_wheel(tmp_path) == wheel
    assert bi.wheel_version(wheel) == "0.1.0+0123abcd"
    assert bi.wheel_torch_requirement(wheel) == "torch==2.13.0"
    with pytest.raises(bi.InstallError, match=r"carries no backend wheel.*scripts/build_addon\.py"):
        bi.bundled_wheel(tmp_path / "elsewhere")


# --- the staged install ---------------------------------------------------------------------------------------------


def _env(root: Path, name: str = bi.ENV_DIR, backend: str = "0.1.0+old") -> Path:
    """A made-up environment as an install leaves it: a python and the info file."""
    env = root / name
    python = bi.env_python(env)
    python.parent.mkdir(parents=True)
    python.write_text("")
    info = {"torch": "2.13.0+cpu", "backend": backend, "device": "cpu", "size_bytes": 123, "python": "/usr/bin/python3.11"}
    (env / bi.INFO_NAME).write_text(json.dumps(info))
    (env / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = /usr/bin/python3.11 -m venv {env}\n")
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(os.name == "nt", reason="the fake step is a POSIX shell script")
def test_cancel_kills_the_step_and_its_children_and_keeps_the_previous_environment(tmp_path: Path) -> None:
    root = tmp_path / "user"
    previous = _env(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    # A stand-in for the first step (``python -m venv STAGING``): it starts making the folder, starts a child, and
    # would take a minute; the real steps are tested in real Blender.
    fake = tmp_path / "slow-python"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        mkdir -p "$3/lib" && echo half > "$3/lib/half-made"
        sleep 60 &
        echo $$ $! > {tmp_path / "pids"}
        echo "Collecting torch"
        wait
    """))  # fmt: skip
    fake.chmod(0o755)
    choice = bi.TorchChoice(PIN, (), "cpu", "test")
    install = Install(root, tmp_path / "backend.whl", str(fake), choice)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            install.run(cancel.is_set)
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "pids").exists() or install.progress.detail != "Collecting torch":
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert install.progress.step == 1 and 0 < install.progress.fraction < 1
    assert install.progress.line() == "1/4 Creating the environment: Collecting torch"
    assert (root / (bi.ENV_DIR + bi.STAGING_SUFFIX) / "lib" / "half-made").is_file()
    t0 = time.monotonic()
    cancel.set()
    worker.join(15)
    assert not worker.is_alive() and time.monotonic() - t0 < 5
    assert len(errors) == 1 and isinstance(errors[0], bi.InstallCancelledError), errors
    pids = [int(x) for x in (tmp_path / "pids").read_text().split()]
    assert not any(_alive(pid) for pid in pids), "the step and its child must be killed"
    assert not (root / (bi.ENV_DIR + bi.STAGING_SUFFIX)).exists(), "the half-made environment must go"
    after = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert after == sorted([*before, Path(bi.LOG_NAME)]), "only the log is new"
    assert "cancelled" in (root / bi.LOG_NAME).read_text()
    assert bi.installed(root) is not None and bi.installed(root).env == previous  # type: ignore[union-attr]


def test_a_failing_step_is_one_line_and_leaves_nothing_half_made(tmp_path: Path) -> None:
    root = tmp_path / "user"
    _env(root)
    choice = bi.TorchChoice(PIN, (), "cpu", "test")
    install = Install(root, tmp_path / "backend.whl", str(tmp_path / "no-such-python"), choice)
    with pytest.raises(bi.InstallError) as info:
        install.run()
    message = str(info.value)
    assert "\n" not in message and "cannot run" in message and str(root / bi.LOG_NAME) in message
    assert not (root / (bi.ENV_DIR + bi.STAGING_SUFFIX)).exists()
    assert bi.installed(root) is not None


def test_too_little_disk_space_stops_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(100e9, 99.5e9, 0.5e9))  # type: ignore[attr-defined]
    install = Install(tmp_path, tmp_path / "b.whl", sys.executable, bi.TorchChoice(PIN, (), "cuda", "test"))
    with pytest.raises(bi.InstallError, match=r"^no disk space: the backend needs about 8 GB, .* has 0\.5 GB free"):
        install.run()
    assert install.progress.step == 0


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (["WARNING: Retrying ... NewConnectionError('Failed to establish a new connection: [Errno -3] Temporary failure "
          "in name resolution')", "ERROR: Could not find a version that satisfies the requirement torch==2.13.0",
          "ERROR: No matching distribution found for torch==2.13.0"], "^no network: pip could not reach"),
        (["ERROR: Could not find a version that satisfies the requirement torch==0.0.1 (from versions: 2.13.0)",
          "ERROR: No matching distribution found for torch==0.0.1"], r"^pip found no torch==0\.0\.1 for this machine"),
        (["ERROR: Cannot install torch==0.0.1 because these package versions have conflicting dependencies.",
          "The conflict is caused by:", "    The user requested torch==0.0.1",
          "    The user requested (constraint) torch<=2.14.1",
          "Additionally, some packages in these conflicts have no matching distributions available for your environment:",
          "    torch", "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/..."],
         r"^pip found no torch==0\.0\.1 for this machine"),  # a constraint in pip's configuration says it so
        (["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"], "^no disk space left"),
        (["ERROR: Cannot install torch==0.0.1 because these package versions have conflicting dependencies.", "",
          "The conflict is caused by:", "    The user requested torch==0.0.1",
          "    The user requested (constraint) torch<=2.14.1", "", "ERROR: ResolutionImpossible: for help visit ..."],
         r"^pip cannot install torch==0\.0\.1 with constraint torch<=2\.14\.1 \(installing torch\)"),  # pip 23
        (["ERROR: ResolutionImpossible: ..."], "^pip found the requirements in conflict"),
        (["ERROR: something else went wrong"], "^installing torch failed: ERROR: something else went wrong"),
    ],
)  # fmt: skip
def test_pip_failures_are_named(output: list[str], expected: str, tmp_path: Path) -> None:
    message = explain("Installing torch", output, 1, tmp_path / "x.log", tmp_path)
    assert "\n" not in message
    assert message.endswith(f"(log: {tmp_path / 'x.log'})")
    import re

    assert re.search(expected, message), message


def test_progress_line() -> None:
    p = Progress()
    assert p.fraction == 0 and p.line() == "Starting"
    p.step, p.label, p.detail = 2, "Installing torch==2.13.0", "Downloading torch (190 MB)"
    assert p.fraction == pytest.approx(1.5 / 4)
    assert p.line() == "2/4 Installing torch==2.13.0: Downloading torch (190 MB)"


# --- in place, read, removed ----------------------------------------------------------------------------------------


def test_swap_in_replaces_the_previous_environment_and_leaves_no_stray_folder(tmp_path: Path) -> None:
    root = tmp_path / "user"
    _env(root, backend="0.1.0+old")
    staging = _env(root, bi.ENV_DIR + bi.STAGING_SUFFIX, backend="0.1.0+new")
    done = swap_in(root, staging, root / bi.LOG_NAME)
    assert done.backend == "0.1.0+new" and done.env == root / bi.ENV_DIR
    assert sorted(p.name for p in root.iterdir()) == [bi.ENV_DIR]
    cfg = (root / bi.ENV_DIR / "pyvenv.cfg").read_text()
    assert str(staging) not in cfg and f"-m venv {root / bi.ENV_DIR}" in cfg, "the environment's files name its new place"
    assert done.command() == (str(bi.env_python(root / bi.ENV_DIR)), "-P", "-m", "backend")
    assert "torch 2.13.0+cpu, backend 0.1.0+new, on cpu" in done.describe()


def test_installed_needs_the_info_file_and_the_python(tmp_path: Path) -> None:
    assert bi.installed(tmp_path) is None
    env = _env(tmp_path)
    assert bi.installed(tmp_path) is not None
    bi.env_python(env).unlink()
    assert bi.installed(tmp_path) is None, "a broken environment is not an installed one"


def test_remove_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "user"
    for name in (bi.ENV_DIR, bi.ENV_DIR + bi.STAGING_SUFFIX, bi.ENV_DIR + bi.OLD_SUFFIX):
        env = _env(root, name)
        (env / "read-only").write_text("x")
        (env / "read-only").chmod(0o444)
    (root / bi.LOG_NAME).write_text("log")
    bi.remove(root)
    assert list(root.iterdir()) == []
    bi.remove(root)  # nothing there: fine
    assert bi.tree_size(root) == 0


def test_prepare_takes_the_bundled_wheel_its_torch_pin_and_a_python(tmp_path: Path) -> None:
    from addon.install_state import prepare

    repo_addon = Path(__file__).resolve().parents[2] / "addon"
    with pytest.raises(bi.InstallError, match="carries no backend wheel"):  # the add-on run from source has none
        prepare(tmp_path / "user", repo_addon, environ={})
    _wheel(tmp_path / "addon" / bi.WHEEL_FOLDER, ["torch==2.13.0"])
    install = prepare(tmp_path / "user", tmp_path / "addon", environ={}, running=sys.executable, machine=LINUX)
    assert install.python == sys.executable and install.pip_args == ()
    assert (install.torch.requirement, install.torch.index_args) == (PIN, ("--index-url", bi.TORCH_CPU_INDEX))
    with pytest.raises(bi.InstallError, match="unsupported platform"):
        prepare(tmp_path / "user", tmp_path / "addon", environ={}, machine=bi.Machine("darwin", "x86_64", False))
