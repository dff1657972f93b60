"""`dimo serve`: the engine's HTTP service for the Blender add-on, on loopback, with a random token
printed at start and written (with the real URL) to a token file the add-on reads."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.cli.model_args import add_model_arguments, load_model_from_args
from dimo_engine.errors import InputError

DEFAULT_TOKEN_FILE = Path("~/.dimo/serve.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (printed and written)")
    parser.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE,
                        help=f"where to write {{url, token, pid}} (default {DEFAULT_TOKEN_FILE})")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="jobs and motion cache (default: a fresh temporary folder)")
    parser.add_argument("--max-upload-mb", type=int, default=512)
    parser.add_argument("--max-side", type=int, default=4096, help="largest image/video side in pixels")
    parser.add_argument("--max-frames", type=int, default=600, help="longest motion, in frames at the model's fps")
    parser.add_argument("--max-cameras", type=int, default=16)
    add_model_arguments(parser)


def bind_socket(host: str, port: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port, or 0 for a free one") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def write_token_file(path: Path, url: str, token: str) -> Path:
    path = path.expanduser()
    with atomic_write(path) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the token is a secret
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"url": url, "token": token, "pid": os.getpid()}, handle)
    return path


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from dimo_engine.server import JobRunner, Limits, create_app

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a port number; give 0..65535 (0 picks a free one)")
    flags = {"max_upload_bytes": ("--max-upload-mb", args.max_upload_mb), "max_side": ("--max-side", args.max_side),
             "max_motion_frames": ("--max-frames", args.max_frames), "max_cameras": ("--max-cameras", args.max_cameras)}
    try:
        limits = Limits(max_upload_bytes=args.max_upload_mb * 2**20, max_side=args.max_side,
                        max_motion_frames=args.max_frames, max_cameras=args.max_cameras)
    except ValidationError as error:
        flag, value = flags[str(error.errors()[0]["loc"][0])]
        raise InputError(f"{flag} {value} is not a limit; give a whole number of at least 1") from None
    sock = bind_socket(args.host, args.port)  # before the slow model load, so a busy port fails fast
    pipe, model_path = load_model_from_args(args)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="dimo-serve-"))
    runner = JobRunner(pipe, work_dir, limits=limits, model_name=model_path.name)
    token = secrets.token_urlsafe(32)
    app = create_app(runner, token)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    token_file = write_token_file(args.token_file, url, token)
    print(f"DiMo engine serving {model_path} on {url}", flush=True)
    print(f"token: {token}", flush=True)
    print(f"token file: {token_file}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    # uvicorn re-raises SIGTERM after its graceful shutdown; exit through `finally` so the token file goes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.run(sockets=[sock])
    finally:
        runner.shutdown(timeout=5)
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)  # our own temporary folder: jobs are not kept across runs
        try:
            if json.loads(token_file.read_text()).get("pid") == os.getpid():
                token_file.unlink()
        except (OSError, ValueError):
            pass
    return 0
