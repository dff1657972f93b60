"""How long the add-on holds Blender's main thread while a Generate job runs against the test suite's fake
engine: the longest and the median timer step in milliseconds, beside one engine request timed the blocking
way on the same machine (the first job also pays the bpy module's one-off image start-up, about 50 ms).
tests/test_addon_jobs.py asserts the ratio; this prints the figures.

Run: `python benchmarks/bench_addon_main_thread.py [--delay 0.25] [--frames 5] [--jobs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from addon_fake_engine import FakeEngine  # noqa: E402
from addon_scene import enable_addon, make_shot, point_preferences_at  # noqa: E402


def main_thread_steps(job) -> list[float]:
    """Drive the add-on's timer callback as Blender's event loop would; seconds of every call."""
    from blender_addon import long_work

    steps = []
    while not job.finished:
        started = time.perf_counter()
        long_work.tick()
        steps.append(time.perf_counter() - started)
        time.sleep(0.01)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.25, help="the fake engine's delay per request, seconds")
    parser.add_argument("--frames", type=int, default=5, help="frames per job")
    parser.add_argument("--jobs", type=int, default=3, help="jobs to run")
    args = parser.parse_args()

    import bpy

    from blender_addon import generate_job, generate_request, preferences

    enable_addon()
    print("| job | timer steps | longest (ms) | median (ms) | one blocking request (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder, FakeEngine(delay_s=args.delay, num_frames=args.frames) as engine:
        point_preferences_at(engine.url, engine.token)
        for index in range(args.jobs):
            shot_dir = Path(folder) / f"job_{index}"
            shot_dir.mkdir()
            scene = make_shot(shot_dir)
            client = preferences.engine_client(bpy.context)
            steps = main_thread_steps(generate_job.start_generate(client, generate_request.prepare_generate(scene, [])))
            started = time.perf_counter()
            client.info()
            request = time.perf_counter() - started
            print(f"| {index + 1} | {len(steps)} | {max(steps) * 1000:.1f} | {statistics.median(steps) * 1000:.2f} | "
                  f"{request * 1000:.1f} |")


if __name__ == "__main__":
    main()
