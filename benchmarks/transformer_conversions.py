"""Convert a transformer in each precision: conversion time, precision coverage, agreement and speed-up.

    python benchmarks/transformer_conversions.py --model=transformer:bert_base --precisions=bf16,int8 \\
        --output=benchmarks/results/transformer-bert-base-spr

For each precision: ``tftrt convert --backend=cpu --precision=P`` in a process of its own, as a
user runs it (int8 calibrated on synthetic token ids), its wall time and peak memory; its
precision coverage (share of the multiply-adds in P, from the metadata); agreement with the
original SavedModel on ``--agreement_samples`` synthetic token sequences (top-1 and max
|difference| of the output); then ``--rounds`` interleaved rounds at each batch size
(``runtime.timing.time_rounds``, rotating), speed-up = the original's median / the model's
median. Token ids are uniform in [0, 100) (every vocabulary here is larger). Writes OUTPUT.json
and OUTPUT.md, with the machine's load average (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "models"))


def _signature(path):
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures["serving_default"]
    name = next(iter(function.structured_input_signature[1]))
    seq_len = function.structured_input_signature[1][name].shape[1]
    return function, name, int(seq_len)


def _outputs(function, name, tokens, batch=8):
    import tensorflow as tf

    return np.concatenate([next(iter(function(**{name: tf.constant(tokens[i:i + batch])}).values())).numpy()
                           for i in range(0, len(tokens), batch)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/transformer_conversions.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="transformer:bert_base", help="a SavedModel dir or transformer:SIZE")
    parser.add_argument("--precisions", default="bf16,int8")
    parser.add_argument("--agreement_samples", type=int, default=256)
    parser.add_argument("--batch_sizes", default="1,8", help="batch sizes to time; empty for none")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--calibration_steps", type=int, default=8, help="int8 calibration batches (of 8 sequences)")
    parser.add_argument("--compare", default="",
                        help="NAME=DIR,...: SavedModels converted elsewhere, checked and timed in the same rounds")
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--output", required=True, help="path prefix: writes OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    to_compare = []
    for entry in [e.strip() for e in args.compare.split(",") if e.strip()]:
        name, _, path = entry.partition("=")
        if not name or not os.path.isfile(os.path.join(path, "saved_model.pb")):
            parser.error(f"--compare entry {entry!r}: give NAME=DIR, DIR a SavedModel directory")
        to_compare.append((name, path))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf
    import transformer as transformer_builder

    from tftrt_toolkit import artifacts
    from tftrt_toolkit.runtime.timing import prepared_call, time_calls, time_rounds

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="transformer_conversions_")
    load_start = os.getloadavg()
    start = time.perf_counter()
    source = transformer_builder.saved_model_for(args.model, work_dir)
    export_s = time.perf_counter() - start if args.model.startswith(transformer_builder.PREFIX) else None
    original, input_name, seq_len = _signature(source)
    tokens = np.random.default_rng(11).integers(0, 100, size=(args.agreement_samples, seq_len)).astype(np.int32)
    reference = _outputs(original, input_name, tokens)

    rows = []
    models = {"original": original}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        output = os.path.join(work_dir, f"cpu_{precision}")
        command = [sys.executable, "-m", "tftrt_toolkit.cli.main", "convert", f"--model={source}", "--backend=cpu",
                   f"--precision={precision}", f"--output={output}", "--overwrite"]
        if precision == "int8":
            command += ["--calibration_data=synthetic", f"--calibration_steps={args.calibration_steps}"]
        # Each conversion in a process of its own, as a user runs it: its wall time and peak memory are its own.
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb=%M", *command], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
        convert_s = time.perf_counter() - start
        peak = [line for line in done.stderr.splitlines() if line.startswith("peak_rss_kb=")]
        row = {"precision": precision, "convert_s": round(convert_s, 1), "exit_code": done.returncode,
               "peak_rss_gb": round(int(peak[-1].split("=")[1]) / 1e6, 2) if peak else None}
        if done.returncode != 0:
            row["error"] = [line for line in done.stderr.splitlines() if "error" in line.lower()][-1:]
            rows.append(row)
            continue
        summary = artifacts.read_metadata(output)["conversion_summary"]
        function, _, _ = _signature(output)
        got = _outputs(function, input_name, tokens)
        models[f"cpu_{precision}"] = function
        row.update({
            "precision_coverage": summary["precision_coverage"],
            "top1_agreement": float(np.mean(got.argmax(-1) == reference.argmax(-1))),
            "max_abs_difference": float(np.abs(got - reference).max()),
            "stages_that_changed_the_graph": summary["stages_that_changed_the_graph"],
        })
        rows.append(row)

    compared = []
    for name, path in to_compare:
        function, _, _ = _signature(path)
        got = _outputs(function, input_name, tokens)
        models[name] = function
        compared.append({"name": name, "path": path,
                         "top1_agreement": float(np.mean(got.argmax(-1) == reference.argmax(-1))),
                         "max_abs_difference": float(np.abs(got - reference).max())})

    speed = {}
    for batch in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
        calls = {key: prepared_call(function, {input_name: tf.constant(tokens[:batch])})
                 for key, function in models.items()}
        for call in calls.values():
            time_calls(call, count=1, warmup=1)
        times = time_rounds(calls, rounds=args.rounds, calls_per_turn=args.calls, warmup_per_turn=1, rotate=True)
        medians = {key: float(np.median(values)) * 1e3 for key, values in times.items()}
        speed[str(batch)] = {key: {"median_ms": round(ms, 2), "speed_up": round(medians["original"] / ms, 2),
                                   "timed_calls": len(times[key])} for key, ms in medians.items()}

    record = {
        "model": args.model, "export_s": None if export_s is None else round(export_s, 1),
        "seq_len": seq_len, "agreement_samples": args.agreement_samples,
        "conversions": rows, "compared": compared, "speed": speed, "rounds": args.rounds, "calls_per_round": args.calls,
        "threads": "TF default (all cores)", "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(load_start[0], 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "versions": {"tensorflow": tf.__version__},
        "command": "python benchmarks/transformer_conversions.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    with open(args.output + ".json", "w") as handle:
        json.dump(record, handle, indent=2)
    with open(args.output + ".md", "w") as handle:
        handle.write(_markdown(record))
    print(_markdown(record))
    return 0


def _markdown(record) -> str:
    lines = [f"# Transformer conversions: {record['model']}", "",
             "| precision | conversion (own process) | peak memory | coverage (FLOPs share) | left behind | "
             "top-1 vs original | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    for row in record["conversions"]:
        peak = f"{row['peak_rss_gb']:.1f} GB" if row.get("peak_rss_gb") else "–"
        if row["exit_code"] != 0:
            lines.append(f"| {row['precision']} | failed after {row['convert_s']:.0f} s (exit {row['exit_code']}) | "
                         f"{peak} | {' '.join(row.get('error') or [])} | | | |")
            continue
        coverage = row["precision_coverage"]
        left = ", ".join(f"{op} ×{e['count']}" for op, e in coverage["ops_left_behind"].items()) or "–"
        lines.append(f"| {row['precision']} | {row['convert_s']:.0f} s | {peak} | {coverage['share']:.1%} of "
                     f"{coverage['total_flops'] / 1e9:.1f} GFLOPs | {left} | {row['top1_agreement']:.1%} | "
                     f"{row['max_abs_difference']:.2e} |")
    if record.get("compared"):
        lines += ["", "| compared SavedModel | top-1 vs original | max abs diff |", "|---|---|---|"]
        lines += [f"| {c['name']} (`{c['path']}`) | {c['top1_agreement']:.1%} | {c['max_abs_difference']:.2e} |"
                  for c in record["compared"]]
    if record["speed"]:
        batches = list(record["speed"])
        lines += ["", "| model | " + " | ".join(f"bs{b} median | bs{b} speed-up" for b in batches) + " |",
                  "|---|" + "---|---|" * len(batches)]
        for key in record["speed"][batches[0]]:
            cells = [f"{record['speed'][b][key]['median_ms']:.1f} ms | {record['speed'][b][key]['speed_up']:.2f}×"
                     for b in batches]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", f"Agreement on {record['agreement_samples']} synthetic token sequences (ids in [0, 100), "
                  f"seq {record['seq_len']}); speed from {record['rounds']} interleaved rounds of "
                  f"{record['calls_per_round']} calls per model (runtime.timing.time_rounds, rotating), after warm-up. CPU: {record['cpu_count']} cores, "
                  f"1-minute load average {record['load_average_1min_at_start']} at start, "
                  f"{record['load_average_1min_at_end']} at end.",
              f"Regenerate: `{record['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
