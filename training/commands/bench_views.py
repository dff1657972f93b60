"""`dimo bench-views`: the cross-view benchmark (training/benchmark.py) — DiMo and its baselines re-enact held-out test
clips from the driving view, novel views and moving cameras; prints and writes the metrics table, side-by-side
MP4s and a contact sheet.

    dimo render-clips --split test --layout benchmark --clips 4 --frames 17 --engine workbench --out data/bench
    dimo bench-views --data data/bench --model DiMo=dimo_engine/weights/default \\
        --model "2D pose"=runs/baseline-2d-pose/pipeline --model "noisy 3D"=runs/baseline-3d-noisy/pipeline \\
        --pose2d "2D pose" --joints3d "noisy 3D" --out bench_out --write-docs docs/benchmark.md

The library (training/benchmark.py, training/bench_report.py) writes only into --out; rewriting a docs page is
this command's explicit step, `--write-docs PATH` (`--docs` is the older spelling), off by default.
"""

from __future__ import annotations

import os
from pathlib import Path

HELP = "score DiMo and its baselines on held-out clips from driving, novel and moving views"
DOCS_BEGIN, DOCS_END = "<!-- bench-views:begin -->", "<!-- bench-views:end -->"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="a dataset rendered with `dimo render-clips --layout benchmark`")
    parser.add_argument("--split", default="test", help="split of the dataset to score (default test)")
    parser.add_argument("--clips", type=int, default=0, help="score only the first N clips (0: all)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                        help="a method to score: a name and a DiMo pipeline folder; repeat for baselines (the first is DiMo)")
    parser.add_argument("--pose2d", default=None, help="name of the 2D-pose baseline among --model (for the bar check)")
    parser.add_argument("--joints3d", default=None, help="name of the noisy-3D baseline among --model (for the bar check)")
    parser.add_argument("--locator", default=None,
                        help="pipeline folder whose keypoint locator scores joints for every method (default: the first model's)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per generation")
    parser.add_argument("--guidance", type=float, default=2.0, help="motion guidance scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=2, help="clips whose novel-90 and moving targets get MP4s and the sheet")
    parser.add_argument("--out", required=True, help="folder for results.json, table.md, MP4s and contact_sheet.png")
    parser.add_argument("--write-docs", "--docs", dest="write_docs", default=None, metavar="PATH",
                        help="also write the table into this Markdown file, between its bench-views markers (default: off)")
    parser.add_argument("--note", default="", help="a line printed above the table (data, budget, device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vae-bound", action="store_true",
                        help="add a reference row: the ground truth through the first model's VAE (the ceiling its VAE sets)")


def parse_models(specs: list[str]) -> dict[str, str]:
    from dimo_engine.errors import InputError

    if not specs:
        raise InputError("No --model was given; pass at least one as NAME=FOLDER, e.g. --model DiMo=dimo_engine/weights/default.")
    models = {}
    for spec in specs:
        name, separator, folder = spec.partition("=")
        if not separator or not name.strip() or not folder.strip():
            raise InputError(f"--model {spec!r} needs the form NAME=FOLDER, e.g. --model DiMo=dimo_engine/weights/default.")
        if name.strip() in models:
            raise InputError(f"--model names {name.strip()!r} twice; give every method its own name.")
        models[name.strip()] = folder.strip()
    return models


def write_docs_section(path, text: str) -> Path:
    """Replace what lies between the bench-views markers in a Markdown file (append the section when the
    markers are missing; create the file when it does not exist), atomically."""
    from blender_addon.core.atomic_io import write_text_atomic

    path = Path(path)
    section = f"{DOCS_BEGIN}\n{text.strip()}\n{DOCS_END}"
    current = path.read_text() if path.is_file() else ""
    if DOCS_BEGIN in current and DOCS_END in current:
        before, rest = current.split(DOCS_BEGIN, 1)
        updated = before + section + rest.split(DOCS_END, 1)[1]
    else:
        updated = (current.rstrip() + "\n\n" if current.strip() else "") + section + "\n"
    return write_text_atomic(path, updated)


def run(args) -> int:
    import platform

    from blender_addon.core.atomic_io import write_text_atomic
    from dimo_engine.clips import ClipDataset
    from dimo_engine.errors import InputError
    from dimo_engine.pipelines import load_pipeline
    from training.bench_report import bar_check, markdown_table
    from training.benchmark import BenchSettings, run_benchmark

    models = parse_models(args.model)
    for role, name in (("--pose2d", args.pose2d), ("--joints3d", args.joints3d)):
        if name is not None and name not in models:
            raise InputError(f"{role} {name!r} is not one of the --model names ({', '.join(models)}); use one of those.")
    if args.steps < 1 or args.clips < 0 or args.examples < 0:
        raise InputError("--steps must be at least 1 and --clips, --examples at least 0; fix the numbers.")
    dataset = ClipDataset(args.data, args.split)
    clips = [dataset[i] for i in range(len(dataset) if args.clips == 0 else min(args.clips, len(dataset)))]
    pipes = {name: load_pipeline(folder, args.device) for name, folder in models.items()}
    locator_pipe = load_pipeline(args.locator, args.device) if args.locator else next(iter(pipes.values()))
    locator = locator_pipe.keypoint_locator
    if locator is None:
        raise InputError("The locator's pipeline has no keypoint locator; pass --locator with a trained checkpoint.")
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    settings = BenchSettings(num_inference_steps=args.steps, motion_guidance_scale=args.guidance, seed=args.seed)
    result = run_benchmark(pipes, clips, locator, settings, args.out, num_examples=args.examples,
                           vae_bound=args.vae_bound)

    first = next(iter(models))
    checks = bar_check(result, first, args.pose2d, args.joints3d)
    lines = []
    if args.note:
        lines.append(args.note)
    lines.append(f"Scored on {len(clips)} test clips of {os.path.abspath(args.data)} ({args.split}), "
                 f"{settings.num_inference_steps} denoising steps, motion guidance {settings.motion_guidance_scale}, "
                 f"seed {settings.seed}, at {pipes[first].config.width}x{pipes[first].config.height} px; machine: "
                 f"{platform.machine()} {os.cpu_count()}-core CPU, device {args.device}.")
    if not locator.config.trained:
        lines.append("Warning: the keypoint locator is untrained, so joint errors are not meaningful.")
    lines.append("")
    lines.append(markdown_table(result))
    lines.append("")
    lines.append("Generation time per method: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items()) + ".")
    if checks:
        lines.append("")
        lines.extend(f"- {line}" for line in checks)
    text = "\n".join(lines)
    table_path = os.path.join(args.out, "table.md")
    write_text_atomic(table_path, text + "\n")
    if args.write_docs:
        write_docs_section(args.write_docs, text)
    print(text)
    print(f"wrote {table_path}, {os.path.join(args.out, 'results.json')} and the example videos and contact sheet in {args.out}")
    return 0
