"""Batch-1 latency of a SavedModel under TF thread settings and TF's oneDNN switches, all in one interleaved run.

    python benchmarks/thread_switches.py --model=OUT/lite0-int8 --baseline=saved_models/efficientnet_lite0 \\
        --output=benchmarks/results/lite0-int8-thread-switches-spr --rounds=300

Why this exists: at batch 1 TF's oneDNN kernels run a model slower on two intra-op threads than
on one (benchmarks/int8_cpu_notes.md). Each setting is a process of its own (TF fixes its thread
pools and reads its environment switches once per process): one ``ProcessWorker`` per setting
loads the model and the baseline; each round, every worker in turn times one call of each, so
the settings share the same rounds and machine drift and never compete for cores. Writes
OUTPUT.json and OUTPUT.md (median ms per setting and the ratio to intra=1 inter=1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CALLER_THREAD = "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"
# (name, (intra, inter), environment switches)
SETTINGS = (
    ("intra=1 inter=1", (1, 1), {}),
    ("intra=2 inter=2 (TF's default on 2 cores)", (2, 2), {}),
    ("intra=2 inter=1", (2, 1), {}),
    (f"intra=2 inter=2, {CALLER_THREAD}=1", (2, 2), {CALLER_THREAD: "1"}),
    (f"intra=2 inter=1, {CALLER_THREAD}=1", (2, 1), {CALLER_THREAD: "1"}),
    ("intra=2 inter=2, TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1", (2, 2), {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}),
)


@contextlib.contextmanager
def environment(switches):
    saved = {name: os.environ.get(name) for name in switches}
    os.environ.update(switches)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/thread_switches.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the SavedModel to time (e.g. a tftrt cpu int8 conversion)")
    parser.add_argument("--baseline", required=True, help="the original SavedModel, timed alongside")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds (one call per model per setting)")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--output", required=True, help="path prefix: OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)

    from tftrt_toolkit.runtime.process_worker import ProcessWorker

    workers = {}
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    try:
        for name, threads, switches in SETTINGS:
            with environment(switches):  # the worker copies this process's environment when it starts
                worker = ProcessWorker({"model": args.model}, args.baseline, threads=threads, data=args.data,
                                       batch_size=args.batch_size, warmup=20)
                workers[name] = worker.start(timeout=600)
            print(f"[thread_switches] started {name}", file=sys.stderr, flush=True)
        for _ in range(args.rounds):
            for worker in workers.values():
                worker.round()
        results = {name: worker.finish() for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    if hasattr(os, "getloadavg"):
        load.append(os.getloadavg()[0])
    reference = results[SETTINGS[0][0]]
    lines = ["| setting | model median | vs intra=1 inter=1 | baseline median | vs intra=1 inter=1 |", "|---|---|---|---|---|"]
    for name, measured in results.items():
        model, base = measured["model"]["p50_ms"], measured["baseline"]["p50_ms"]
        lines.append(f"| {name} | {model:.2f} ms | {model / reference['model']['p50_ms']:.2f}× | {base:.2f} ms | "
                     f"{base / reference['baseline']['p50_ms']:.2f}× |")
    from tftrt_toolkit.environment import probe

    env = probe()
    report = {"model": args.model, "baseline": args.baseline, "batch_size": args.batch_size, "rounds": args.rounds,
              "cpu_model": env.cpu_model, "cpu_count": env.cpu_count, "load_average_1min": load,
              "command": "python benchmarks/thread_switches.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "results": results}
    with open(args.output + ".json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    text = (f"# Batch-{args.batch_size} latency by TF thread setting and switch\n\n" + "\n".join(lines) + "\n\n"
            f"Model `{args.model}`, baseline `{args.baseline}`; {env.cpu_model}, {env.cpu_count} cores; "
            f"{args.rounds} interleaved rounds, one call per model per setting per round, one process per setting; "
            f"1-minute load average {', '.join(f'{value:.1f}' for value in load)} (start, end; shared machine).\n\n"
            f"Regenerate: `{report['command']}`\n")
    with open(args.output + ".md", "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
