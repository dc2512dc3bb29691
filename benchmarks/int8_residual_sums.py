"""Speed of the int8 residual-add fusion: two converted models, one interleaved run per thread count.

Each measurement is one ``tftrt benchmark --model=AFTER --baseline=BEFORE --json`` process (both
models loaded in it, timed call by call in turn), at one intra-op thread count (inter-op 1);
the processes alternate thread counts (1, 2, 1, 2, ...) ``--repeats`` times. Reported: each
process's p50 latencies and after/before ratio, and the median ratio per thread count and
batch size, with the load average around each process (the machine may be shared).

    tftrt convert --model=saved_models/efficientnet_lite0 --backend=cpu --precision=int8 \\
        --calibration_data=saved_models/calibration --int8_fuse_residual_adds=false --output=/tmp/lite0-islands
    tftrt convert --model=saved_models/efficientnet_lite0 --backend=cpu --precision=int8 \\
        --calibration_data=saved_models/calibration --output=/tmp/lite0-fused
    python benchmarks/int8_residual_sums.py --before=/tmp/lite0-islands --after=/tmp/lite0-fused \\
        --output=benchmarks/results/lite0-int8-residual-sums-speed-spr
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(before: str, after: str, threads: int, batch_sizes: str, duration: float) -> dict:
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    load_before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "benchmark", f"--model={after}",
                           f"--baseline={before}", f"--batch_sizes={batch_sizes}", f"--duration={duration}",
                           f"--intra_op_threads={threads}", "--inter_op_threads=1", "--json", "--plot=false"],
                          env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"int8_residual_sums: tftrt benchmark failed at {threads} thread(s): {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    p50 = {}
    for row in report["results"]:
        p50.setdefault(row["batch_size"], {})[row["role"]] = row["latency_ms"]["p50"]
    return {"threads": threads, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "p50_ms": {str(b): {"before": v["baseline"], "after": v["optimized"],
                                "after_over_before": round(v["optimized"] / v["baseline"], 4)} for b, v in p50.items()}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="SavedModel converted with --int8_fuse_residual_adds=false")
    parser.add_argument("--after", required=True, help="SavedModel converted with the fusion (the default)")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts, one process each per repeat")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of timed runs per model and batch size")
    parser.add_argument("--output", required=True, help="path prefix for OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    for flag, path in (("--before", args.before), ("--after", args.after)):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            sys.exit(f"int8_residual_sums: {flag}={path} is not a SavedModel directory (no saved_model.pb); "
                     "give two int8 conversions of one model.")
    threads = [int(t) for t in args.threads.split(",")]
    runs = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for _ in range(args.repeats):
        for count in threads:
            runs.append(_measure(args.before, args.after, count, args.batch_sizes, args.duration))
    summary = {}
    for count in threads:
        for batch in args.batch_sizes.split(","):
            rows = [r["p50_ms"][batch] for r in runs if r["threads"] == count]
            summary[f"{count}/{batch}"] = {
                "threads": count, "batch_size": int(batch),
                "before_p50_ms": round(statistics.median(r["before"] for r in rows), 6),
                "after_p50_ms": round(statistics.median(r["after"] for r in rows), 6),
                "after_over_before": round(statistics.median(r["after_over_before"] for r in rows), 4),
                "per_process": [r["after_over_before"] for r in rows]}
    result = {"before": args.before, "after": args.after, "started": started, "repeats": args.repeats,
              "duration_s": args.duration, "command": " ".join(["int8_residual_sums.py", *(sys.argv[1:] if argv is None else argv)]),
              "summary": list(summary.values()), "runs": runs}
    with open(args.output + ".json", "w") as handle:
        json.dump(result, handle, indent=2)
    lines = [f"# int8 residual-add fusion: after / before p50 latency ({started})", "",
             f"before: `{args.before}`; after: `{args.after}`. One `tftrt benchmark --model=after --baseline=before` "
             f"process per row of `per process` (both models interleaved in it, {args.duration:g} s per model and batch "
             "size, inter-op 1), thread counts alternating; medians over the processes.", "",
             "| intra-op threads | batch | before p50 | after p50 | after / before | per process | load average |",
             "|---|---|---|---|---|---|---|"]
    for row in summary.values():
        loads = [r["load_average"] for r in runs if r["threads"] == row["threads"]]
        lines.append(f"| {row['threads']} | {row['batch_size']} | {row['before_p50_ms']:.2f} ms "
                     f"| {row['after_p50_ms']:.2f} ms | **{row['after_over_before']:.3f}** | {', '.join(f'{v:.3f}' for v in row['per_process'])} "
                     f"| {', '.join(f'{a:.1f}→{b:.1f}' for a, b in loads)} |")
    lines += ["", f"Command: `python benchmarks/{result['command']}`", ""]
    with open(args.output + ".md", "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
