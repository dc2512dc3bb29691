"""What a conversion costs: wall time and peak RSS per step (load, freeze, each graph stage, save).

    python benchmarks/conversion_cost.py --model=keras:VGG16 --precision=fp32 \
        --output=benchmarks/results/conversion-cost-vgg16-fp32
    python benchmarks/conversion_cost.py --model=keras:VGG16 --before=OLD.json --reference=OLD_MODEL_DIR ...

Each conversion runs in a fresh process (``tftrt_toolkit.convert``, the same call as ``tftrt
convert``), so one model's memory never inflates the next. The steps are the pipeline's own
progress events (``StepEvent``): at each step's start the process's peak-RSS mark is reset
(``/proc/self/clear_refs``), at its end the kernel's high-water mark (``VmHWM``) is that step's
peak. ``process_s`` is the wall time of the whole process, TensorFlow's import included, as a
user of ``tftrt convert`` waits for it.

When the model is a SavedModel directory, another fresh process first does what TensorFlow
itself does with it, ``tf.saved_model.load`` + ``tf.saved_model.save`` (same oneDNN and
allocator settings), and its seconds and peak RSS are reported beside the conversion's:
issue 26 asks for convert() ≤ 2× that time and peak RSS ≤ 1.5× the model.

With ``--reference=DIR`` (an earlier conversion of the same model) both models run on the same
random batch in another process and the largest absolute difference is reported. With
``--before=FILE.json`` (an earlier run of this script) the markdown puts the two side by side.

Writes OUTPUT.json and OUTPUT.md with the command that regenerates them, the CPU, and the
load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1024 * 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/conversion_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model spec: keras:VGG16, a SavedModel dir, ...")
    parser.add_argument("--weights", default="none", help="for keras: specs (default none: offline, same cost)")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--precision", default="fp32", help="one precision, or several separated by commas")
    parser.add_argument("--calibration_data", default="synthetic", help="int8 only")
    parser.add_argument("--output", default=None, help="path prefix for OUTPUT.json and OUTPUT.md")
    parser.add_argument("--keep_output", default=None,
                        help="keep the converted model here (PRECISION appended when several are given)")
    parser.add_argument("--reference", default=None, help="compare the result with this earlier conversion")
    parser.add_argument("--before", default=None, help="an earlier JSON from this script, shown side by side")
    parser.add_argument("--note", default="", help="a sentence for the markdown (e.g. which code version ran)")
    parser.add_argument("--tensorflow_allocator_pool", action="store_true",
                        help="keep TensorFlow's oneDNN memory pool (freed memory stays resident), as before "
                             "`tftrt convert` asked for the system allocator")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps_record", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    return args


# --------------------------------------------------------------------------- the child process

def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    """Start a new peak-RSS window (Linux ≥ 4.0); False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class StepMeter:
    """A progress callable that records each step's seconds and peak RSS from the pipeline's StepEvents."""

    def __init__(self, record_path: Optional[str] = None):
        self.record_path = record_path  # each finished step is appended here too, in case the process is killed
        self.steps: List[dict] = []
        self.between_peak = 0  # peak RSS outside any step (import, probe, metadata)
        self.baseline_rss = None  # RSS when the first step starts: Python + TensorFlow, before the model
        self.windowed = _reset_peak()

    def __call__(self, message) -> None:
        phase = getattr(message, "phase", None)
        if phase == "start":
            if self.baseline_rss is None:
                self.baseline_rss = _status_bytes("VmRSS")
            self.between_peak = max(self.between_peak, _status_bytes("VmHWM"))
            _reset_peak()
        elif phase == "end":
            self.steps.append({"step": message.name, "seconds": round(message.seconds, 2),
                               "peak_rss_mb": round(_status_bytes("VmHWM") / MB), "rss_after_mb":
                               round(_status_bytes("VmRSS") / MB)})
            if self.record_path:
                with open(self.record_path, "a") as record:
                    record.write(json.dumps(self.steps[-1]) + "\n")
            _reset_peak()
        print(f"conversion_cost: {message}", file=sys.stderr, flush=True)


def child(args) -> None:
    try:  # as `tftrt convert` does: oneDNN's switches are read when TensorFlow is imported
        from tftrt_toolkit import onednn

        onednn.turn_on_before_tensorflow()
        if not args.tensorflow_allocator_pool:
            onednn.return_freed_memory_before_tensorflow()
    except ImportError:
        pass
    start = time.perf_counter()
    import tensorflow  # noqa: F401  (timed on its own: on a busy machine it takes tens of seconds)

    import_s = time.perf_counter() - start
    import tftrt_toolkit
    from tftrt_toolkit.config import ConversionConfig

    meter = StepMeter(args.steps_record)
    config = ConversionConfig(backend=args.backend, precision=args.child)
    start = time.perf_counter()
    result = tftrt_toolkit.convert(args.model, args.keep_output, config, weights=args.weights, overwrite=True,
                                   calibration_data=args.calibration_data if args.child == "int8" else None,
                                   progress=meter)
    convert_s = time.perf_counter() - start
    final_peak = _status_bytes("VmHWM")
    peak = max([meter.between_peak, final_peak] + [s["peak_rss_mb"] * MB for s in meter.steps])
    summary = result.metadata.get("conversion_summary", {})
    from tensorflow.python.util import _pywrap_util_port

    print(json.dumps({
        "onednn_enabled": bool(_pywrap_util_port.IsMklEnabled()),
        "onednn_system_allocator": os.environ.get("TF_ONEDNN_USE_SYSTEM_ALLOCATOR") == "1",
        "convert_s": round(convert_s, 2), "peak_rss_mb": round(peak / MB), "tensorflow_import_s": round(import_s, 2),
        "baseline_rss_mb": round((meter.baseline_rss or 0) / MB),
        "steps": meter.steps + [{"step": "(between steps: probe, output checks, metadata)", "seconds": round(
            convert_s - sum(s["seconds"] for s in meter.steps), 2), "peak_rss_mb": round(meter.between_peak / MB)}],
        "peak_windows_per_step": meter.windowed, "stages": summary.get("stages", []),
        "nodes_frozen": summary.get("nodes_frozen"), "nodes_optimized": summary.get("nodes_optimized"),
    }))


def load_save_child(model_dir: str, output_dir: str, tensorflow_allocator_pool: bool) -> None:
    """TensorFlow's own round trip of the model (load + save), timed and measured like a conversion."""
    try:
        from tftrt_toolkit import onednn

        onednn.turn_on_before_tensorflow()
        if not tensorflow_allocator_pool:
            onednn.return_freed_memory_before_tensorflow()
    except ImportError:
        pass
    start = time.perf_counter()
    import tensorflow as tf

    import_s = time.perf_counter() - start
    imported_rss = _status_bytes("VmRSS")
    start = time.perf_counter()
    loaded = tf.saved_model.load(model_dir)
    load_s = time.perf_counter() - start
    load_peak = _status_bytes("VmHWM")
    _reset_peak()
    start = time.perf_counter()
    tf.saved_model.save(loaded, output_dir, signatures=dict(loaded.signatures))
    save_s = time.perf_counter() - start
    print(json.dumps({"tensorflow_import_s": round(import_s, 2), "rss_after_import_mb": round(imported_rss / MB),
                      "load_s": round(load_s, 2), "save_s": round(save_s, 2),
                      "load_save_s": round(load_s + save_s, 2), "load_peak_rss_mb": round(load_peak / MB),
                      "save_peak_rss_mb": round(_status_bytes("VmHWM") / MB),
                      "peak_rss_mb": round(max(load_peak, _status_bytes("VmHWM")) / MB)}))


def compare_child(model_dir: str, reference_dir: str) -> None:
    try:  # run both models the way the toolkit's processes run them (fp32 fusions may need oneDNN)
        from tftrt_toolkit import onednn

        onednn.turn_on_before_tensorflow()
    except ImportError:
        pass
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    outputs = []
    for directory in (model_dir, reference_dir):
        function = tf.saved_model.load(directory).signatures["serving_default"]
        specs = function.structured_input_signature[1]
        if not outputs:
            batch = {name: tf.constant(rng.uniform(0, 255, [2] + [d or 224 for d in spec.shape.as_list()[1:]])
                                       .astype(spec.dtype.as_numpy_dtype)) for name, spec in specs.items()}
        outputs.append({k: v.numpy() for k, v in function(**batch).items()})
    print(json.dumps({"max_abs_diff": max(float(np.max(np.abs(outputs[0][k] - outputs[1][k]))) for k in outputs[0]),
                      "max_abs_reference": max(float(np.max(np.abs(v))) for v in outputs[1].values())}))


# --------------------------------------------------------------------------- the parent

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _directory_mb(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return round(total / MB, 1)


def _run_json(command: List[str]) -> dict:
    completed = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        return {"failed": f"exit {completed.returncode}" + (" (killed: out of memory?)" if completed.returncode == -9 else "")}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(args, precision: str) -> dict:
    keep = args.keep_output and (args.keep_output if len(args.precisions) == 1
                                 else os.path.join(args.keep_output, precision))
    with tempfile.TemporaryDirectory(prefix="conversion-cost-") as scratch:
        output = keep or os.path.join(scratch, "model")
        argv = [f"--model={args.model}", f"--weights={args.weights}", f"--backend={args.backend}",
                f"--calibration_data={args.calibration_data}", f"--keep_output={output}", f"--child={precision}"]
        if args.tensorflow_allocator_pool:
            argv.append("--tensorflow_allocator_pool")
        if os.path.isdir(args.model):  # TensorFlow's own load + save of the same model, just before
            code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                    f"import conversion_cost; conversion_cost.load_save_child({args.model!r}, "
                    f"{os.path.join(scratch, 'load-save')!r}, {bool(args.tensorflow_allocator_pool)!r})")
            load_save = _run_json([sys.executable, "-c", code])
            load_save["input_mb"] = _directory_mb(args.model)
        else:
            load_save = None
        steps_record = os.path.join(scratch, "steps.jsonl")
        argv.append(f"--steps_record={steps_record}")
        load_before = os.getloadavg()
        start = time.perf_counter()
        run = _run_json([sys.executable, os.path.abspath(__file__)] + argv)
        run["process_s"] = round(time.perf_counter() - start, 1)
        if "failed" in run:  # keep the steps that finished, and say where it stopped
            with open(steps_record) if os.path.exists(steps_record) else open(os.devnull) as record:
                run["steps"] = [json.loads(line) for line in record if line.strip()]
            run["peak_rss_mb"] = max([s["peak_rss_mb"] for s in run["steps"]], default=None)
        run["load_average_before"] = [round(x, 2) for x in load_before]
        run["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        run["precision"] = precision
        if load_save is not None:
            run["tensorflow_load_save"] = load_save
            run["input_mb"] = load_save["input_mb"]
            if "failed" not in run and "failed" not in load_save:
                run["peak_rss_over_input"] = round(run["peak_rss_mb"] / run["input_mb"], 2)
                run["convert_s_over_load_save_s"] = round(run["convert_s"] / load_save["load_save_s"], 2)
        run["output_mb"] = _directory_mb(output) if os.path.isdir(output) else None
        if run["output_mb"] and run.get("peak_rss_mb"):
            run["peak_rss_over_output"] = round(run["peak_rss_mb"] / run["output_mb"], 1)
        if args.reference and "failed" not in run:
            reference = args.reference if len(args.precisions) == 1 else os.path.join(args.reference, precision)
            code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                    f"import conversion_cost; conversion_cost.compare_child({output!r}, {reference!r})")
            run["reference"] = reference
            comparison = _run_json([sys.executable, "-c", code])
            run.update({"comparison_failed": comparison["failed"]} if "failed" in comparison else comparison)
    return run


def _step_table(run: dict, before: Optional[dict]) -> List[str]:
    before_steps = {s["step"]: s for s in (before or {}).get("steps", [])}
    names = [s["step"] for s in (before or run)["steps"]]
    names += [s["step"] for s in run["steps"] if s["step"] not in names]
    now = {s["step"]: s for s in run["steps"]}
    if before:
        lines = ["| step | before s | after s | before peak RSS MB | after peak RSS MB |", "|---|---:|---:|---:|---:|"]
    else:
        lines = ["| step | seconds | peak RSS MB |", "|---|---:|---:|"]

    def cell(step, key):
        return str(step[key]) if step else "not run"

    for name in names:
        if before:
            lines.append(f"| {name} | {cell(before_steps.get(name), 'seconds')} | {cell(now.get(name), 'seconds')} | "
                         f"{cell(before_steps.get(name), 'peak_rss_mb')} | {cell(now.get(name), 'peak_rss_mb')} |")
        else:
            lines.append(f"| {name} | {cell(now.get(name), 'seconds')} | {cell(now.get(name), 'peak_rss_mb')} |")
    totals = [("whole process (s)", "process_s"), ("TensorFlow import (s)", "tensorflow_import_s"),
              ("convert() (s)", "convert_s"), ("peak RSS (MB)", "peak_rss_mb"),
              ("RSS before the first step (MB)", "baseline_rss_mb"),
              ("output SavedModel (MB)", "output_mb"), ("peak RSS / output size", "peak_rss_over_output")]
    for label, key in totals:
        if before:
            lines.append(f"| **{label}** | {before.get(key, '-')} | {run.get(key, '-')} | | |")
        else:
            lines.append(f"| **{label}** | {run.get(key, '-')} | |")
    return lines


def _load_save_lines(run: dict) -> List[str]:
    load_save = run.get("tensorflow_load_save")
    if not load_save:
        return []
    if "failed" in load_save:
        return [f"TensorFlow's own load + save of the input failed: {load_save['failed']}.", ""]
    lines = ["TensorFlow's own `tf.saved_model.load` + `tf.saved_model.save` of the same input, in a fresh "
             "process just before the conversion (same oneDNN and allocator settings):", "",
             "| | TensorFlow load + save | this conversion | ratio |", "|---|---:|---:|---:|",
             f"| seconds (load + save / convert()) | {load_save['load_save_s']} | {run.get('convert_s', '-')} | "
             f"{run.get('convert_s_over_load_save_s', '-')}× |",
             f"| peak RSS MB | {load_save['peak_rss_mb']} | {run.get('peak_rss_mb', '-')} | "
             f"{round(run['peak_rss_mb'] / load_save['peak_rss_mb'], 2) if run.get('peak_rss_mb') else '-'}× |",
             f"| RSS after importing TensorFlow MB | {load_save['rss_after_import_mb']} | "
             f"{run.get('baseline_rss_mb', '-')} (before the first step) | |",
             f"| peak RSS / input SavedModel ({load_save['input_mb']} MB) | "
             f"{round(load_save['peak_rss_mb'] / load_save['input_mb'], 2)} | {run.get('peak_rss_over_input', '-')} | |",
             "", f"(TensorFlow's load: {load_save['load_s']} s, peak {load_save['load_peak_rss_mb']} MB; "
             f"its save: {load_save['save_s']} s, peak {load_save['save_peak_rss_mb']} MB.)", ""]
    return lines


def markdown(report: dict) -> str:
    lines = [f"# Conversion cost: {report['model']} ({report['backend']})", "",
             f"Regenerate: `{report['command']}`", "",
             f"CPU: {report['cpu']} ({report['cpu_count']} cores); TensorFlow {report.get('tensorflow', '?')}; "
             f"{report['date']}.", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    onednn = {run.get("onednn_enabled") for run in report["runs"]}
    if len(onednn) == 1 and None not in onednn:
        lines += [f"TensorFlow's oneDNN ops were {'on' if onednn.pop() else 'off'} in the converting process.", ""]
    allocator = {run.get("onednn_system_allocator") for run in report["runs"]}
    if len(allocator) == 1 and None not in allocator:
        lines += ["Freed memory went back to the system (`TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`, as `tftrt convert` sets)."
                  if allocator.pop() else "TensorFlow's oneDNN memory pool kept freed memory resident.", ""]
    for run in report["runs"]:
        before = run.get("before")
        lines += [f"## {run['precision']}", "",
                  f"Load average before/after (1, 5, 15 min): {run['load_average_before']} / "
                  f"{run['load_average_after']} (the machine may have been shared with other jobs).", ""]
        if before:
            lines += [f"Before: `{before.get('command', '?')}` on {before.get('date', '?')}, "
                      f"load average {before.get('load_average_before')}.", ""]
        if "failed" in run:
            lines += [f"**The conversion failed: {run['failed']}**, after the steps listed.", ""]
        lines += _step_table(run, before) + [""]
        lines += _load_save_lines(run)
        if "comparison_failed" in run:
            lines += [f"The comparison with {run['reference']} failed: {run['comparison_failed']}.", ""]
        if "max_abs_diff" in run:
            lines += [f"Largest absolute difference from {run['reference']} on one random batch: "
                      f"{run['max_abs_diff']:.3g} (largest output magnitude {run['max_abs_reference']:.3g}).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return {}
    before = {}
    if args.before:
        with open(args.before) as handle:
            old = json.load(handle)
        before = {run["precision"]: dict(run, command=old.get("command"), date=old.get("date")) for run in old["runs"]}
    runs = []
    for precision in args.precisions:
        run = measure(args, precision)
        if precision in before:
            run["before"] = before[precision]
        runs.append(run)
    import importlib.metadata

    report = {
        "model": args.model, "backend": args.backend, "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "note": args.note,
        "tensorflow": importlib.metadata.version("tensorflow"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/conversion_cost.py"]
                            + list(argv if argv is not None else sys.argv[1:])),
        "runs": runs,
    }
    text = markdown(report)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output + ".json", "w") as handle:
            json.dump(report, handle, indent=1)
            handle.write("\n")
        with open(args.output + ".md", "w") as handle:
            handle.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
