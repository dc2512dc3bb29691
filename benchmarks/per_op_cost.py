"""Per-op cost at each intra-op thread count: oneDNN kernel time, TF's per-op time and wall time per call.

    python benchmarks/per_op_cost.py --model=OUT/lite0-int8 --threads=1,2 --calls=300 \\
        --output=benchmarks/results/lite0-int8-per-op-cost-spr

It answers "which ops lose with the second thread, and how much of a call is not kernels?".
For each thread count two fresh processes (TF fixes its thread pools once per process, oneDNN
reads ``ONEDNN_VERBOSE`` at start-up) run the same model at intra-op T, inter-op ``--inter``:

- the *plain* process (no verbose logging) times the serving signature as users call it
  (``tf.saved_model.load``, outputs fetched with ``.numpy()``) with the process's CPU time over
  those calls (all its threads: on a shared machine a 1-thread and a 2-thread process get different
  shares of the cores, so CPU time per call says what the second thread costs where wall time
  cannot), then the same frozen graph in a
  ``tf.compat.v1.Session`` untraced, then ``--traced_calls`` calls with FULL_TRACE step stats:
  per op type the time TF spent in it, the sum over all ops, and the step's span;
- the *verbose* process runs the same signature calls with ``ONEDNN_VERBOSE=1`` and sums the
  execution times oneDNN reports, per primitive kind (convolution, reorder, ...).

From these: kernels / wall (the floor oneDNN sets), TF op time / traced span (the rest is the
executor's dispatch between ops), and the cost per op type and per primitive kind at each thread
count side by side with the ratio. Wall times come from the plain process; the verbose process's
wall is recorded too (logging adds to it). ``--repeats`` alternates the thread counts and reports
medians (each repeat's wall and CPU time are listed). Writes OUTPUT.json and OUTPUT.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import where_time_goes  # noqa: E402  (benchmarks/ is not a package: the sibling script)

MARK = where_time_goes.MARK


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/per_op_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a SavedModel dir (e.g. a tftrt cpu int8 conversion)")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to compare, e.g. 1,2")
    parser.add_argument("--inter", type=int, default=1, help="inter-op threads in every process")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--traced_calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure each thread count this many times, alternating (1,2,1,2...); medians are reported")
    parser.add_argument("--output", default=None, help="path prefix for OUTPUT.json and OUTPUT.md")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads={args.threads!r} is not a list of whole numbers, e.g. 1,2")
    if not args.threads or min(args.threads) < 1 or min(args.batch_size, args.calls, args.traced_calls, args.inter, args.repeats) < 1:
        parser.error("--threads, --inter, --batch_size, --calls, --traced_calls and --repeats must be whole numbers >= 1")
    return args


# --------------------------------------------------------------------------- the child process

def _median(values) -> float:
    return float(np.median(values)) if len(values) else 0.0


def step_stats_summary(step_stats_list) -> dict:
    """Per op type (nodes and ms per call), TF op time summed per call and the step's span, from traced steps."""
    per_type = collections.defaultdict(lambda: [0, 0.0])
    op_sums, spans = [], []
    for step_stats in step_stats_list:
        starts, ends, total = [], [], 0.0
        for device in step_stats.dev_stats:
            for node in device.node_stats:
                label = node.timeline_label
                op = label.split(" = ")[1].split("(")[0] if " = " in label else node.node_name
                ms = node.all_end_rel_micros / 1e3
                per_type[op][0] += 1
                per_type[op][1] += ms
                total += ms
                starts.append(node.all_start_micros)
                ends.append(node.all_start_micros + node.all_end_rel_micros)
        op_sums.append(total)
        spans.append((max(ends) - min(starts)) / 1e3 if starts else 0.0)
    steps = max(len(step_stats_list), 1)
    return {"tf_op_ms_per_call": _median(op_sums), "traced_span_ms": _median(spans),
            "op_types": {op: {"nodes_per_call": n / steps, "ms_per_call": ms / steps}
                         for op, (n, ms) in sorted(per_type.items(), key=lambda kv: -kv[1][1])}}


def child(args) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tftrt_toolkit.runtime.timing import time_calls

    tf.config.threading.set_intra_op_parallelism_threads(args.child)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    loaded = tf.saved_model.load(args.model)  # keep it: the signature's variables live on it
    signature = loaded.signatures[args.signature]
    batch = where_time_goes._input_batch(signature, args.batch_size)
    tensors = {name: tf.constant(value) for name, value in batch.items()}
    call = lambda: [v.numpy() for v in signature(**tensors).values()]  # noqa: E731
    time_calls(call, count=20)  # warm-up, off the clocks
    cpu_start = time.process_time()  # every thread of this process: the cores the calls really used
    signature_ms = where_time_goes._time_calls(call, args.calls, warmup=0)
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / args.calls

    frozen = convert_variables_to_constants_v2(signature)
    feeds = {tensor.name: batch[tensor.name.split(":")[0]] for tensor in frozen.inputs}
    fetches = [tensor.name for tensor in frozen.outputs]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.child,
                                      inter_op_parallelism_threads=args.inter)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        run = lambda: session.run(fetches, feeds)  # noqa: E731
        time_calls(run, count=20)
        session_ms = [seconds * 1e3 for seconds in time_calls(run, count=args.calls)]
        traced = []
        for _ in range(args.traced_calls):
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetches, feeds, options=options, run_metadata=metadata)
            traced.append(metadata.step_stats)
    result = {"threads": args.child, "inter": args.inter, "signature_ms": _median(signature_ms),
              "signature_mean_ms": float(np.mean(signature_ms)), "cpu_ms_per_call": cpu_ms,
              "session_ms": _median(session_ms), **step_stats_summary(traced)}
    with open(args.child_output, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- the parent

def per_kind(primitives: List[dict]) -> Dict[str, dict]:
    """oneDNN primitive times summed per kind (all implementations of a kind together)."""
    kinds = collections.defaultdict(lambda: {"per_call": 0.0, "ms_per_call": 0.0})
    for primitive in primitives:
        kinds[primitive["kind"]]["per_call"] += primitive["per_call"]
        kinds[primitive["kind"]]["ms_per_call"] += primitive["ms_per_call"]
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["ms_per_call"]))


def _run_child(args, threads: int, env: dict):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "child.json")
        command = [sys.executable, os.path.abspath(__file__), f"--model={args.model}", f"--signature={args.signature}",
                   f"--batch_size={args.batch_size}", f"--calls={args.calls}", f"--traced_calls={args.traced_calls}",
                   f"--inter={args.inter}", f"--child={threads}", f"--child_output={out}"]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise SystemExit(f"per_op_cost: the {threads}-thread run failed: {tail[0]}")
        with open(out) as f:
            return json.load(f), done.stdout


def derived(figures: dict) -> dict:
    """The shares from the medians: kernels / wall, wall - kernels, TF op time / traced span."""
    wall, span = figures["signature_ms"], figures["traced_span_ms"]
    return {"kernel_share_of_wall": figures["onednn_ms_per_call"] / wall if wall else 0.0,
            "outside_kernels_ms": wall - figures["onednn_ms_per_call"],
            "tf_op_share_of_traced_span": figures["tf_op_ms_per_call"] / span if span else 0.0,
            "cpu_over_wall": figures["cpu_ms_per_call"] / figures["signature_mean_ms"]
            if figures.get("signature_mean_ms") else 0.0}


def measure(args, threads: int) -> dict:
    quiet = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    quiet.pop("ONEDNN_VERBOSE", None)
    result, _ = _run_child(args, threads, quiet)
    verbose, stdout = _run_child(args, threads, dict(quiet, ONEDNN_VERBOSE="1"))
    primitives = where_time_goes.onednn_primitive_times(stdout, args.calls)
    kernels = sum(p["ms_per_call"] for p in primitives)
    result.update({
        "signature_ms_with_verbose": verbose["signature_ms"],
        "onednn_primitives": primitives, "onednn_kinds": per_kind(primitives),
        "onednn_ms_per_call": kernels,
    })
    result.update(derived(result))
    return result


def combine(measured: List[dict]) -> dict:
    """One thread count's repeats as one: the median of every figure (per op type and primitive too), plus each repeat's wall."""
    if len(measured) == 1:
        return dict(measured[0], repeats=1)
    first = measured[0]
    result = {key: _median([m[key] for m in measured]) for key, value in first.items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)}
    result["threads"], result["inter"] = first["threads"], first["inter"]
    for table in ("op_types", "onednn_kinds"):
        names = {name for m in measured for name in m[table]}
        merged = {name: {field: _median([m[table].get(name, {}).get(field, 0.0) for m in measured])
                         for field in {f for m in measured for f in m[table].get(name, {})}}
                  for name in names}
        result[table] = dict(sorted(merged.items(), key=lambda kv: -kv[1]["ms_per_call"]))
    keys = {(p["kind"], p["implementation"]) for m in measured for p in m["onednn_primitives"]}
    primitives = []
    for kind, impl in keys:
        found = [[p for p in m["onednn_primitives"] if (p["kind"], p["implementation"]) == (kind, impl)] for m in measured]
        primitives.append({"kind": kind, "implementation": impl,
                           "per_call": _median([f[0]["per_call"] if f else 0.0 for f in found]),
                           "ms_per_call": _median([f[0]["ms_per_call"] if f else 0.0 for f in found])})
    result["onednn_primitives"] = sorted(primitives, key=lambda p: -p["ms_per_call"])
    result.update(derived(result))
    result["repeats"] = len(measured)
    result["each_repeat"] = [{key: m[key] for key in ("signature_ms", "cpu_ms_per_call", "session_ms", "onednn_ms_per_call",
                                                       "tf_op_ms_per_call", "traced_span_ms")} for m in measured]
    return result


def _side_by_side(runs: List[dict], rows: Dict[str, List[float]], label: str, limit: int) -> List[str]:
    threads = [run["threads"] for run in runs]
    ratio_head = f" | {threads[-1]}/{threads[0]}" if len(threads) > 1 else ""
    lines = [f"| {label} | " + " | ".join(f"{t} thread(s), ms" for t in threads) + ratio_head + " |",
             "|---" * (len(threads) + 1 + (1 if len(threads) > 1 else 0)) + "|"]
    order = sorted(rows.items(), key=lambda kv: -max(kv[1]))[:limit]
    for name, values in order:
        cells = " | ".join(f"{v:.3f}" for v in values)
        ratio = ""
        if len(values) > 1:
            ratio = f" | {values[-1] / values[0]:.2f}×" if values[0] > 0 else " | –"
        lines.append(f"| {name} | {cells}{ratio} |")
    return lines


def markdown(report: dict) -> str:
    runs = report["runs"]
    lines = [f"# Per-op cost: {report['model']} (batch {report['batch_size']}, inter-op {report['inter']})", "",
             "| intra-op threads | wall per call (signature) | CPU time per call (all threads) | CPU / wall (mean) "
             "| Session.run | sum of oneDNN kernels | kernels / wall "
             "| outside kernels | traced span | sum of TF op times | TF ops / span |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run['threads']} | {run['signature_ms']:.3f} ms | {run['cpu_ms_per_call']:.3f} ms "
            f"| {run['cpu_over_wall']:.2f} | {run['session_ms']:.3f} ms "
            f"| {run['onednn_ms_per_call']:.3f} ms | {run['kernel_share_of_wall']:.0%} "
            f"| {run['outside_kernels_ms']:.3f} ms | {run['traced_span_ms']:.3f} ms "
            f"| {run['tf_op_ms_per_call']:.3f} ms | {run['tf_op_share_of_traced_span']:.0%} |")
    kinds = collections.defaultdict(lambda: [0.0] * len(runs))
    counts = collections.defaultdict(lambda: [0.0] * len(runs))
    impls = collections.defaultdict(lambda: [0.0] * len(runs))
    ops = collections.defaultdict(lambda: [0.0] * len(runs))
    for i, run in enumerate(runs):
        for kind, value in run["onednn_kinds"].items():
            kinds[kind][i] = value["ms_per_call"]
            counts[kind][i] = value["per_call"]
        for p in run["onednn_primitives"]:
            impls[f"{p['kind']} {p['implementation']}"][i] = p["ms_per_call"]
        for op, value in run["op_types"].items():
            ops[op][i] = value["ms_per_call"]
    labelled = {f"{kind} ({max(counts[kind]):.0f}/call)": values for kind, values in kinds.items()}
    lines += ["", "## oneDNN kernel time per primitive kind (ms per call)", ""]
    lines += _side_by_side(runs, labelled, "primitive kind (executions per call)", 20)
    lines += ["", "## oneDNN kernel time per implementation (ms per call)", ""]
    lines += _side_by_side(runs, impls, "kind implementation", 12)
    lines += ["", "## TF op time per op type (FULL_TRACE step stats, ms per call)", ""]
    lines += _side_by_side(runs, ops, "TF op type", 15)
    if any(run.get("repeats", 1) > 1 for run in runs):
        lines += ["", "Medians over the repeats (alternating thread counts). Wall per call in each repeat: "
                  + "; ".join(f"{run['threads']} thread(s): " + ", ".join(f"{r['signature_ms']:.2f}" for r in run["each_repeat"])
                              + " (CPU " + ", ".join(f"{r['cpu_ms_per_call']:.2f}" for r in run["each_repeat"]) + ")"
                              for run in runs) + " ms."]
    lines += ["", f"Command: `{report['command']}`. CPU: {report['cpu']}. "
              f"Load average (1 min) before/after: {report['load']}."]
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return {}
    if not os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        raise SystemExit(f"per_op_cost: --model={args.model!r} is not a SavedModel directory "
                         "(convert one first: tftrt convert --model=... --output=DIR)")
    load = [round(os.getloadavg()[0], 2)] if hasattr(os, "getloadavg") else []
    measured = {threads: [] for threads in args.threads}
    for _ in range(args.repeats):  # alternating, so the thread counts share the machine's drift
        for threads in args.threads:
            measured[threads].append(measure(args, threads))
    runs = [combine(measured[threads]) for threads in args.threads]
    if hasattr(os, "getloadavg"):
        load.append(round(os.getloadavg()[0], 2))
    command = "python benchmarks/per_op_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"model": args.model, "batch_size": args.batch_size, "inter": args.inter, "calls": args.calls,
              "traced_calls": args.traced_calls, "cpu": _cpu_name(), "load": load, "command": command,
              "runs": runs}
    text = markdown(report)
    print(text)
    if args.output:
        with open(args.output + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(args.output + ".md", "w") as f:
            f.write(text)
    return report


if __name__ == "__main__":
    main()
