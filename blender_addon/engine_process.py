"""Start and stop a local `dimo serve` with the engine's own Python, for artists who do not run it themselves.

The port is picked free on 127.0.0.1; the URL and token are read back from the token file the service
writes when it is ready (docs/formats.md, "Engine service").
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .engine_client import EngineError

STARTUP_TIMEOUT_S = 120.0


@dataclass
class EngineConnection:
    """Where a running engine answers."""

    url: str
    token: str
    pid: int | None = None


@dataclass
class LocalEngine:
    """A `dimo serve` this add-on started."""

    process: subprocess.Popen
    token_file: Path
    log_file: Path
    connection: EngineConnection | None = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


# The one engine this Blender session started, if any: stopping Blender's add-on must stop it too.
_local_engine: LocalEngine | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def read_token_file(path: str | os.PathLike) -> EngineConnection:
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"The engine token file {path} does not exist; start the engine or fix the path in the preferences.") from None
    except (OSError, ValueError) as error:
        raise EngineError(f"The engine token file {path} cannot be read ({error}); start the engine again to rewrite it.") from None
    if not isinstance(data, dict) or not data.get("url"):
        raise EngineError(f"The engine token file {path} has no 'url'; start the engine again to rewrite it.")
    return EngineConnection(url=str(data["url"]), token=str(data.get("token", "")), pid=data.get("pid"))


def local_engine() -> LocalEngine | None:
    return _local_engine


def start_local_engine(
    python_executable: str,
    model_path: str = "",
    token_file: str | os.PathLike | None = None,
    extra_args: tuple[str, ...] = (),
) -> LocalEngine:
    """Launch `python -m dimo_engine serve` on a free port; returns at once (see `wait_until_ready`)."""
    global _local_engine
    if _local_engine is not None and _local_engine.running:
        raise EngineError("A local engine started by Blender is already running; stop it first.")
    python_executable = os.path.expanduser(python_executable or "")
    if not python_executable or not os.path.isfile(python_executable):
        raise EngineError(
            f"The engine Python '{python_executable}' does not exist; set the Python of the environment where dimo is installed in the preferences."
        )
    run_dir = Path(tempfile.mkdtemp(prefix="dimo-engine-"))
    token_file = Path(token_file).expanduser() if token_file else run_dir / "serve.json"
    # A stale file from an earlier run would make us connect to a dead port.
    token_file.unlink(missing_ok=True)
    command = [
        python_executable, "-m", "dimo_engine", "serve",
        "--host", "127.0.0.1", "--port", str(free_port()), "--token-file", str(token_file),
    ]
    if model_path:
        command += ["--model", os.path.expanduser(model_path)]
    command += list(extra_args)
    log_file = run_dir / "serve.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _local_engine = LocalEngine(process=process, token_file=token_file, log_file=log_file)
    return _local_engine


def _last_log_line(log_file: Path) -> str:
    try:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def wait_until_ready(engine: LocalEngine, timeout: float = STARTUP_TIMEOUT_S) -> EngineConnection:
    """Block (call from a background job) until the service wrote its token file and answers health."""
    from .engine_client import EngineClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not engine.running:
            last = _last_log_line(engine.log_file)
            raise EngineError(
                f"The local engine exited with code {engine.process.returncode}"
                + (f" ({last})" if last else "")
                + f"; see {engine.log_file}."
            )
        if engine.token_file.is_file():
            try:
                connection = read_token_file(engine.token_file)
                EngineClient(connection.url, connection.token, timeout=2.0).health()
                engine.connection = connection
                return connection
            except EngineError:
                pass  # the file may be half-visible or the server not listening yet
        time.sleep(0.2)
    raise EngineError(f"The local engine did not become ready within {timeout:g} s; see {engine.log_file}.")


def stop_local_engine(timeout: float = 10.0) -> bool:
    """Stop the engine this session started; returns False when there was none."""
    global _local_engine
    engine, _local_engine = _local_engine, None
    if engine is None:
        return False
    if engine.running:
        engine.process.terminate()
        try:
            engine.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait(timeout=timeout)
    return True
