"""Peak memory (RSS) of `dimo generate` and of one service job on a 1920x1080 24 fps driving clip of 10 s
and of 2 minutes. Each case runs in a fresh process that reports its own peak; the clips are ffmpeg's
test pattern, encoded fast and small (a few MB) in a temporary folder. Prints a Markdown table (copied
into docs/engine.md).

    python benchmarks/bench_driving_memory.py [--model PATH] [--seconds 10 120]

Without --model the tiny random pipeline is used: the figures are then the reading and the service's
own overhead, not a large model's weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg


def make_clip(path: Path, seconds: float) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=1920x1080:rate=24:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "40", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def prepare(folder: Path, model: Path | None) -> dict:
    import numpy as np
    from PIL import Image

    from blender_addon.core.camera_rigs import static_view
    from dimo_engine.camera import save_camera_path

    if model is None:
        from dimo_engine.pipelines import create_random_pipeline

        model = folder / "model"
        create_random_pipeline(seed=0, preset="tiny").save_pretrained(model)
    Image.fromarray(np.full((64, 64, 3), 140, np.uint8)).save(folder / "ref.png")
    save_camera_path(static_view(30.0, 10.0, 1, 12.0, 64, 64), folder / "still.json")  # fits any length
    return {"model": str(model), "reference": str(folder / "ref.png"), "camera": str(folder / "still.json")}


def run_generate(files: dict, clip: str, out: str) -> str:
    from dimo_engine.cli.main import main

    code = main(["generate", "--reference", files["reference"], "--driving", clip, "--camera", files["camera"],
                 "--model", files["model"], "--steps", "1", "--out", out, "--no-video"])
    return "done" if code == 0 else "refused"


def run_service_job(files: dict, clip: str, work: str) -> str:
    from fastapi.testclient import TestClient

    from blender_addon.core import api_schema as api
    from dimo_engine.pipelines import load_pipeline
    from dimo_engine.server import JobRunner, create_app

    runner = JobRunner(load_pipeline(files["model"], "cpu"), work)
    auth = {"Authorization": "Bearer t"}
    with TestClient(create_app(runner, "t")) as client:
        with open(files["reference"], "rb") as ref, open(files["camera"], "rb") as cam, open(clip, "rb") as drive:
            answer = client.post(api.CREATE_JOB.path(), headers=auth,
                                 data={api.FORM_SETTINGS: json.dumps({"num_inference_steps": 1})},
                                 files=[(api.UPLOAD_REFERENCE, ("ref.png", ref)), (api.UPLOAD_CAMERAS, ("cam.json", cam)),
                                        (api.UPLOAD_DRIVING, ("clip.mp4", drive))])
        if answer.status_code != 202:
            runner.shutdown()
            return "refused"
        job_id = answer.json()["job_id"]
        while (status := client.get(api.JOB.path(job_id=job_id), headers=auth).json()["status"]) not in api.TERMINAL_STATUSES:
            time.sleep(0.2)
    runner.shutdown()
    return status


def one_case(kind: str, files: dict, clip: str, scratch: str) -> None:
    start = time.perf_counter()
    outcome = (run_generate if kind == "generate" else run_service_job)(files, clip, scratch)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"outcome": outcome, "peak_mb": peak_mb, "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 120.0])
    parser.add_argument("--one", nargs=4, metavar=("KIND", "FILES", "CLIP", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, files, clip, scratch = args.one
        one_case(kind, json.loads(files), clip, scratch)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        files = prepare(folder, args.model)
        rows = []
        for seconds in args.seconds:
            clip = make_clip(folder / f"clip_{seconds:g}s.mp4", seconds)
            size_mb = clip.stat().st_size / 2**20
            for kind in ("generate", "service job"):
                scratch = folder / f"{kind.replace(' ', '_')}_{seconds:g}"
                answer = subprocess.run([sys.executable, __file__, "--one", kind, json.dumps(files), str(clip),
                                         str(scratch)], capture_output=True, text=True, check=True)
                result = json.loads(answer.stdout.strip().splitlines()[-1])
                rows.append(f"| {kind} | {seconds:g} s 1920x1080 24 fps ({size_mb:.1f} MB) | {result['outcome']} | "
                            f"{result['peak_mb']:.0f} MB | {result['seconds']:.1f} s |")
            clip.unlink()
    print("| run | driving clip | outcome | peak RSS | time |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
