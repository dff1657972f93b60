"""`dimo info`: which model the engine would use, on which device and dtype, and its memory."""

from __future__ import annotations

import argparse
import json
import resource
import sys

from dimo_engine.cli.model_args import add_model_arguments, load_model_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    import torch

    from dimo_engine import __version__

    pipe, path = load_model_from_args(args)
    components = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            components[name] = sum(p.numel() for p in component.parameters())
    parameter_bytes = sum(p.numel() * p.element_size() for c in pipe.components.values()
                          if isinstance(c, torch.nn.Module) for p in c.parameters())
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    config = pipe.config
    report = {
        "version": __version__,
        "model": str(path),
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "num_frames": int(config.num_frames), "fps": float(config.fps),
        "width": int(config.width), "height": int(config.height),
        "parameters": components,
        "parameter_memory_mib": round(parameter_bytes / 2**20, 1),
        "process_peak_rss_mib": round(peak_rss / 2**20, 1),
        "cuda_allocated_mib": round(torch.cuda.memory_allocated() / 2**20, 1) if pipe.device.type == "cuda" else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"DiMo engine {report['version']}")
    print(f"model:   {report['model']}")
    print(f"device:  {report['device']}  dtype: {report['dtype']}")
    print(f"output:  {report['num_frames']} frames at {report['fps']:g} fps, {report['width']}x{report['height']} px")
    for name, count in components.items():
        print(f"  {name:<18} {count / 1e6:8.2f} M parameters")
    print(f"memory:  parameters {report['parameter_memory_mib']} MiB, process peak {report['process_peak_rss_mib']} MiB"
          + (f", CUDA allocated {report['cuda_allocated_mib']} MiB" if report["cuda_allocated_mib"] is not None else ""))
    return 0
