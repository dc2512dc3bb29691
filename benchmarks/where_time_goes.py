"""Where a SavedModel's CPU time goes: per TF op type, per oneDNN primitive, per thread count.

    python benchmarks/where_time_goes.py --model=OUT/r50-int8 --batch_size=1 --threads=1,2
    python benchmarks/where_time_goes.py --model=OUT/r50-bf16 --openvino_model=OUT/r50-original

It answers "what limits this model here?" with numbers instead of guesses. For each thread
count it starts a fresh process (TensorFlow fixes its thread pools once per process, and
oneDNN's verbose mode is read at start-up) that:
- times the model the way users run it: ``tf.saved_model.load``, the serving signature,
  outputs fetched with ``.numpy()``; median of ``--calls`` calls after warm-up;
- traces ``--traced_calls`` calls of the same frozen graph in a ``tf.compat.v1.Session``
  with FULL_TRACE, and sums each op type's time (the ops TF really ran, after its own
  rewrites: ``_MklNative*``, ``_MklQuantized*``, Eigen ``Relu``/``AddV2``...);
- with ``ONEDNN_VERBOSE=1``, sums the execution time oneDNN reports per primitive kind and
  implementation (e.g. ``convolution brgconv_1x1:avx512_core_amx``) over the timed calls;
- with ``--openvino_model`` (the original model, since OpenVINO does not read TF's oneDNN
  ops), profiles OpenVINO's CPU plugin on it at the same threads (``PERF_COUNT``, bf16 or
  ``--openvino_precision``), as the peer to compare kernels with, in a second process.

Writes OUTPUT.json and OUTPUT.md. Timings are for comparison inside one run: TF's wall-clock
medians are taken with oneDNN's verbose logging on, which adds a little to each call, so compare
them with each other, and use ``peers.py`` for speed against other runtimes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "where_time_goes: timed calls start"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/where_time_goes.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a SavedModel dir (e.g. a tftrt convert output)")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to compare, e.g. 1,2")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per thread count")
    parser.add_argument("--traced_calls", type=int, default=10)
    parser.add_argument("--openvino_model", default=None,
                        help="also profile OpenVINO on this (original) SavedModel at the same threads")
    parser.add_argument("--openvino_precision", default="bf16", choices=("bf16", "f32", "int8"))
    parser.add_argument("--calibration_data", default="photos:saved_models/samples",
                        help="OpenVINO int8 only: NNCF calibrates on the batches our int8 conversion draws from this")
    parser.add_argument("--output", default=None, help="path prefix for OUTPUT.json and OUTPUT.md")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_part", default="tf", choices=("tf", "openvino"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads={args.threads!r} is not a list of whole numbers, e.g. 1,2")
    if not args.threads or min(args.threads) < 1 or args.batch_size < 1 or args.calls < 1:
        parser.error("--threads, --batch_size and --calls must be whole numbers >= 1")
    return args


# --------------------------------------------------------------------------- the child process

def _input_batch(signature, batch_size: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    batch = {}
    for name, spec in signature.structured_input_signature[1].items():
        shape = [batch_size] + [d if d is not None else 224 for d in spec.shape.as_list()[1:]]
        if spec.dtype.is_floating:
            batch[name] = rng.uniform(0, 255, shape).astype(spec.dtype.as_numpy_dtype)
        else:
            batch[name] = rng.integers(0, 100, shape).astype(spec.dtype.as_numpy_dtype)
    return batch


def _time_calls(run, calls: int, warmup: int = 5) -> List[float]:
    """Milliseconds of ``calls`` timed calls (the toolkit's timing loop), between the marks oneDNN's verbose lines are summed in."""
    from tftrt_toolkit.runtime.timing import time_calls

    if warmup:
        time_calls(run, count=warmup)
    sys.stdout.flush()
    print(MARK, flush=True)
    times = [seconds * 1e3 for seconds in time_calls(run, count=calls)]
    print(MARK.replace("start", "end"), flush=True)
    return times


def _op_times(signature, batch: Dict[str, np.ndarray], threads: int, traced_calls: int) -> Dict[str, dict]:
    """Per op type: nodes run per call and ms per call, from Session FULL_TRACE step stats."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(signature)
    graph_def = frozen.graph.as_graph_def()
    # Placeholders are named after the signature's inputs ("images:0").
    feeds = {tensor.name: batch[tensor.name.split(":")[0]] for tensor in frozen.inputs}
    fetches = [tensor.name for tensor in frozen.outputs]
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    totals = collections.defaultdict(lambda: [0, 0.0])
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        for _ in range(5):
            session.run(fetches, feeds)
        for _ in range(traced_calls):
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetches, feeds, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    label = node.timeline_label
                    op = label.split(" = ")[1].split("(")[0] if " = " in label else node.node_name
                    totals[op][0] += 1
                    totals[op][1] += node.all_end_rel_micros / 1e3
    return {op: {"nodes_per_call": count / traced_calls, "ms_per_call": ms / traced_calls}
            for op, (count, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])}


def _openvino_int8(model, model_dir: str, calibration_data: str):
    """NNCF's default post-training quantization on the batches our int8 conversion calibrates on (as peers.py)."""
    import logging

    import nncf

    from peer_benchmark.inputs import calibration_batches
    from tftrt_toolkit.models.loader import load_model

    nncf.set_log_level(logging.ERROR)
    batches = calibration_batches(calibration_data, load_model(model_dir))
    samples = [{index: batch[name][item:item + 1] for index, name in enumerate(batch)}
               for batch in batches for item in range(len(next(iter(batch.values()))))]
    return nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))


def _openvino(model_dir: str, signature_key: str, batch: Dict[str, np.ndarray], threads: int,
              precision: str, calls: int, profiled_calls: int, calibration_data: str) -> dict:
    import openvino
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    model = openvino.convert_model(loaded.signatures[signature_key])
    if precision == "int8":
        model = _openvino_int8(model, model_dir, calibration_data)
    model.reshape({port.get_any_name(): list(batch[list(batch)[i]].shape) for i, port in enumerate(model.inputs)})
    compiled = openvino.Core().compile_model(model, "CPU", {
        # int8: the quantized layers run int8 whatever the hint; the rest f32, as in peers.py's int8 row.
        "INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision, "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads), "PERF_COUNT": "YES"})
    request = compiled.create_infer_request()
    arrays = list(batch.values())
    infer = lambda: request.infer({i: a for i, a in enumerate(arrays)})  # noqa: E731
    times = _time_calls(infer, calls)
    layers = collections.defaultdict(lambda: [0, 0.0])
    sums = []
    for _ in range(profiled_calls):  # the counters describe the last call: read them after each one
        infer()
        total = 0.0
        for info in request.profiling_info:
            if info.status.name == "EXECUTED":
                ms = info.real_time.total_seconds() * 1e3
                layers[(info.node_type, info.exec_type)][0] += 1
                layers[(info.node_type, info.exec_type)][1] += ms
                total += ms
        sums.append(total)
    return {"median_ms": float(np.median(times)), "precision": precision, "layers_ms_per_call": float(np.median(sums)),
            "layers": [{"type": t, "implementation": impl, "count": n / profiled_calls, "ms_per_call": ms / profiled_calls}
                       for (t, impl), (n, ms) in sorted(layers.items(), key=lambda kv: -kv[1][1])]}


def child(args) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.child)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    loaded = tf.saved_model.load(args.model)  # keep it: the signature's variables live on it
    signature = loaded.signatures[args.signature]
    batch = _input_batch(signature, args.batch_size)
    if args.child_part == "openvino":
        try:
            result = _openvino(args.openvino_model, args.signature, batch, args.child,
                               args.openvino_precision, args.calls, args.traced_calls, args.calibration_data)
        except ImportError:
            result = {"skipped": "openvino is not installed: pip install -e '.[peers]'"}
    else:
        tensors = {name: tf.constant(value) for name, value in batch.items()}
        times = _time_calls(lambda: [v.numpy() for v in signature(**tensors).values()], args.calls)
        result = {"threads": args.child, "median_ms": float(np.median(times)),
                  "op_types": _op_times(signature, batch, args.child, args.traced_calls)}
    with open(args.child_output, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- the parent

def onednn_primitive_times(stdout: str, calls: int) -> List[dict]:
    """Sum ONEDNN_VERBOSE exec lines between the first pair of timing marks, per kind and implementation."""
    lines = stdout.split(MARK, 1)[-1].split(MARK.replace("start", "end"), 1)[0].splitlines()
    totals = collections.defaultdict(lambda: [0, 0.0])
    for line in lines:
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        at = fields.index("exec")
        key = (fields[at + 2], fields[at + 3])  # kind, implementation
        totals[key][0] += 1
        totals[key][1] += float(fields[-1])
    return [{"kind": kind, "implementation": impl, "per_call": n / calls, "ms_per_call": ms / calls}
            for (kind, impl), (n, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])]


def _run_child(args, threads: int, part: str, env: dict):
    """(result dict, child's stdout) of one child process; SystemExit with its last line when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "child.json")
        command = [sys.executable, os.path.abspath(__file__), f"--model={args.model}", f"--signature={args.signature}",
                   f"--batch_size={args.batch_size}", f"--calls={args.calls}", f"--traced_calls={args.traced_calls}",
                   f"--child={threads}", f"--child_output={out}", f"--child_part={part}",
                   f"--openvino_precision={args.openvino_precision}", f"--calibration_data={args.calibration_data}"]
        if args.openvino_model:
            command.append(f"--openvino_model={args.openvino_model}")
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise SystemExit(f"where_time_goes: the {threads}-thread {part} run failed: {tail[0]}")
        with open(out) as f:
            return json.load(f), done.stdout


def profile(args, threads: int) -> dict:
    quiet = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result, stdout = _run_child(args, threads, "tf", dict(quiet, ONEDNN_VERBOSE="1"))
    result["onednn_primitives"] = onednn_primitive_times(stdout, args.calls)
    result["onednn_ms_per_call"] = sum(p["ms_per_call"] for p in result["onednn_primitives"])
    if args.openvino_model:
        # Its own process, without ONEDNN_VERBOSE: OpenVINO's oneDNN fork fails a Reorder with it set.
        quiet.pop("ONEDNN_VERBOSE", None)
        result["openvino"], _ = _run_child(args, threads, "openvino", quiet)
    return result


def markdown(report: dict) -> str:
    lines = [f"# Where the time goes: {report['model']} (batch {report['batch_size']})", ""]
    if report.get("command"):
        lines += [f"Regenerate: `{report['command']}`", "", f"CPU: {report.get('cpu', '?')}; load average before/after "
                  f"{report.get('load_before')} / {report.get('load_after')}.", ""]
    lines += ["| threads | TF wall median | in oneDNN primitives (share of wall) | top TF op types (ms per call) | "
              "OpenVINO median | OpenVINO layers (share of its wall) |", "|---|---|---|---|---|---|"]
    for run in report["runs"]:
        ops = ", ".join(f"{op} {v['ms_per_call']:.2f}" for op, v in list(run["op_types"].items())[:4])
        openvino = run.get("openvino", {})
        ov = f"{openvino['median_ms']:.2f} ms" if "median_ms" in openvino else openvino.get("skipped", "-")
        ov_layers = (f"{openvino['layers_ms_per_call']:.2f} ms ({openvino['layers_ms_per_call'] / openvino['median_ms']:.0%})"
                     if "layers_ms_per_call" in openvino else "-")
        lines.append(f"| {run['threads']} | {run['median_ms']:.2f} ms | {run['onednn_ms_per_call']:.2f} ms "
                     f"({run['onednn_ms_per_call'] / run['median_ms']:.0%}) | {ops} | {ov} | {ov_layers} |")
    lines += ["", "oneDNN primitives per call (kind, implementation, ms):", ""]
    for run in report["runs"]:
        top = "; ".join(f"{p['kind']} {p['implementation']} {p['ms_per_call']:.2f}" for p in run["onednn_primitives"][:4])
        lines.append(f"- {run['threads']} thread(s): {top}")
        if run.get("openvino", {}).get("layers"):
            top = "; ".join(f"{layer['type']} {layer['implementation']} ×{layer['count']:.0f} {layer['ms_per_call']:.2f}"
                            for layer in run["openvino"]["layers"][:6])
            lines.append(f"  - OpenVINO {run['openvino']['precision']}: {top}")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{name}, {os.cpu_count()} cores"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return {}
    if not os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        raise SystemExit(f"where_time_goes: --model={args.model!r} is not a SavedModel directory "
                         "(convert one first: tftrt convert --model=... --output=DIR)")
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = [profile(args, threads) for threads in args.threads]
    report = {"model": args.model, "batch_size": args.batch_size, "openvino_model": args.openvino_model,
              "command": "python benchmarks/where_time_goes.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "cpu": _cpu_name(), "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
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
