"""Accuracy benchmark: top-1/top-5 of a model and of every precision this machine offers, on labelled images.

    python benchmarks/accuracy.py --data=DIR [--calibration_data=DIR] [--labels_csv=FILE] \\
        [--model=saved_models/efficientnet_lite0] [--precisions=fp32,int8] \\
        [--output=benchmarks/results/efficientnet_lite0-accuracy] [--overwrite]

Labels: ``--labels_csv``, or ImageNet WordNet ids in the image names (``n01440764_tench.JPEG``,
``n01440764/*.JPEG``; see ``tftrt_toolkit.data.labels``).

Calibration and evaluation never share an image. With ``--calibration_data`` int8 calibrates
on that and every image of ``--data`` is evaluated; without it, ``--data``'s images (sorted)
are split: every ``--calibration_every``-th image calibrates (for ImageNet's sample images,
one per class sorted by WordNet id, that is the classes whose index is a multiple of 4), the
others are evaluated.

Each precision is converted with the toolkit's defaults (``ConversionConfig(backend="cpu",
precision=...)``; int8 calibrates on the first 64 calibration images, 8 batches of 8, unless
``--calibration_samples`` says otherwise) and validated against the original on the
evaluation images: both accuracies, the drop and its paired 95% interval
(``tftrt_toolkit.runtime.accuracy``), top-1 agreement with the original. Writes OUTPUT.json
(everything, with the command that regenerates it and the machine) and OUTPUT.md (the table).
TF's oneDNN ops are turned on in this process before TensorFlow is imported, as ``tftrt``
commands do (int8 models need them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from tftrt_toolkit import onednn  # noqa: E402  (imports no TensorFlow)

DEFAULT_MODEL = os.path.join(_ROOT, "saved_models", "efficientnet_lite0")
CALIBRATION_EVERY = 4
BATCH_SIZE = 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/accuracy.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="labelled images (a folder)")
    parser.add_argument("--calibration_data", default=None,
                        help="int8 calibration images (default: every --calibration_every-th image of --data, not evaluated)")
    parser.add_argument("--calibration_every", type=int, default=None,
                        help=f"calibrate on every Nth image of --data, evaluate the rest (default {CALIBRATION_EVERY}; "
                             "with --calibration_data: 0, evaluate all, or N to leave the same images out)")
    parser.add_argument("--calibration_samples", type=int, default=None,
                        help="int8 calibrates on this many (default: the toolkit's default, 8 batches of 8)")
    parser.add_argument("--labels_csv", default=None, help="image,class_id ground truth (default: WordNet ids in the names)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--precisions", default=None, help="comma list (default: every cpu precision offered here)")
    parser.add_argument("--output", default=None, help="OUTPUT.json/.md (default: benchmarks/results/<model>-accuracy)")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def split_images(data: str, calibration_data, every: int):
    """(evaluation images, calibration spec, description): disjoint by construction."""
    from tftrt_toolkit.data.images import iter_image_files
    from tftrt_toolkit.errors import DataError

    images = [str(path) for path in iter_image_files(data)]
    if not images:
        raise DataError(f"{data} has no images")
    if every is None:
        every = 0 if calibration_data is not None else CALIBRATION_EVERY
    if calibration_data is None and every < 2:
        raise DataError("without --calibration_data, --calibration_every must be 2 or more (calibration and "
                        "evaluation must not share images)")
    # With --calibration_data and --calibration_every, the same images are left out as without it,
    # so two calibrations are compared on the same evaluation images.
    evaluation = [path for index, path in enumerate(images) if index % every] if every else images
    if calibration_data is not None:
        return evaluation, calibration_data, (f"{calibration_data} (evaluation: {len(evaluation)} images of {data}"
                                              + (f", every {every}th left out)" if every else ")"))
    calibration = images[::every]
    return evaluation, calibration, (f"every {every}th image of {data} (sorted): {len(calibration)} images; "
                                     f"the other {len(evaluation)} are evaluated")


def main(argv=None) -> dict:
    onednn.turn_on_before_tensorflow()
    args = parse_args(argv)
    from tftrt_toolkit.backends.precisions import offered_precisions
    from tftrt_toolkit.config import ConversionConfig
    from tftrt_toolkit.data.labels import open_labels
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.errors import ConfigError, DataError, ToolkitError
    from tftrt_toolkit.models.loader import load_model
    from tftrt_toolkit.pipeline import convert
    from tftrt_toolkit.runtime.session import ModelRunner
    from tftrt_toolkit.runtime.validate import validate

    model_name = os.path.basename(os.path.normpath(args.model)).replace(":", "_")
    output = args.output or os.path.join(_ROOT, "benchmarks", "results", f"{model_name}-accuracy")
    paths = {"json": output + ".json", "md": output + ".md"}
    for path in paths.values():
        if os.path.exists(path) and not args.overwrite:
            raise ConfigError(f"{path} exists; pass --overwrite to replace it")
    evaluation, calibration, calibration_text = split_images(args.data, args.calibration_data, args.calibration_every)
    labels = open_labels(evaluation, args.labels_csv)
    if labels is None:
        raise DataError(f"the images of {args.data} carry no labels; give --labels_csv or name them by WordNet id")
    env = probe()
    precisions = args.precisions.split(",") if args.precisions else list(offered_precisions(env, "cpu"))
    rows = []
    work = tempfile.mkdtemp(prefix="tftrt-accuracy-")
    started = time.perf_counter()
    try:
        with load_model(args.model, weights=args.weights) as loaded:
            original = ModelRunner(loaded, name="original").load()
            try:
                for precision in precisions:
                    row = {"model": f"cpu-{precision}", "precision": precision}
                    rows.append(row)
                    config = ConversionConfig(backend="cpu", precision=precision, batch_size=BATCH_SIZE)
                    if precision == "int8" and args.calibration_samples:
                        config = config.replace(calibration_steps=math.ceil(args.calibration_samples / BATCH_SIZE))
                    print(f"converting {precision} ...", file=sys.stderr, flush=True)
                    convert_started = time.perf_counter()
                    try:
                        converted = convert(loaded, os.path.join(work, precision), config, env=env, progress=False,
                                            calibration_data=calibration if precision == "int8" else None)
                    except ToolkitError as error:
                        row["skipped"] = str(error)
                        continue
                    row["convert_s"] = round(time.perf_counter() - convert_started, 1)
                    summary = (converted.metadata or {}).get("conversion_summary", {})
                    if "int8" in summary:
                        row["int8_recipe"] = {k: v for k, v in summary["int8"].items() if k not in ("worst_layers",)}
                    print(f"validating {precision} on {len(evaluation)} images ...", file=sys.stderr, flush=True)
                    report = validate(original, os.path.join(work, precision), data=evaluation,
                                      labels_csv=args.labels_csv, batch_size=BATCH_SIZE, top_k=5)
                    row.update(accuracy=report.accuracy, top1_agreement=report.top1_agreement)
            finally:
                original.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    measured = [row for row in rows if "accuracy" in row]
    report = {
        "model": args.model,
        "command": "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "date": datetime.date.today().isoformat(),
        "data": args.data,
        "labels": labels.origin,
        "calibration": calibration_text,
        "evaluated_images": len(evaluation),
        "original": measured[0]["accuracy"]["original"] if measured else None,
        "rows": rows,
        "machine": {"cpu_model": env.cpu_model, "cpu_count": env.cpu_count, "cpu_features": list(env.cpu_features),
                    "onednn_enabled": env.onednn_enabled, "tensorflow_version": env.tensorflow_version},
        "seconds": round(time.perf_counter() - started, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    with open(paths["md"], "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The table: original and each precision, top-1/top-5, the drop with its paired 95% interval."""
    machine = report["machine"]
    lines = [
        f"# Accuracy on labelled images: {os.path.basename(os.path.normpath(report['model']))}", "",
        f"- data: `{report['data']}` ({report['labels']}); {report['evaluated_images']} images evaluated",
        f"- int8 calibration: {report['calibration']}",
        f"- machine: {machine['cpu_model']} ({machine['cpu_count']} cores; {' '.join(machine['cpu_features']) or '-'}); "
        f"TensorFlow {machine['tensorflow_version']}, oneDNN {'on' if machine['onednn_enabled'] else 'off'}",
        f"- {report['date']}; regenerate: `{report['command']}`", "",
        "| model | top-1 | top-5 | top-1 drop (points) | 95% interval (paired) | only original right / only this right "
        "| McNemar p | top-1 agreement with the original |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if report["original"]:
        n = report["evaluated_images"]
        lines.append(f"| original | {report['original']['top1']:.2%} | {report['original']['topk']:.2%} | - | - | - | - | "
                     f"n = {n} |")
    for row in report["rows"]:
        if "accuracy" not in row:
            lines.append(f"| {row['model']} | skipped: {row.get('skipped', '-')} | | | | | | |")
            continue
        acc = row["accuracy"]
        low, high = acc["top1_drop_interval"]
        lines.append(
            f"| {row['model']} | {acc['optimized']['top1']:.2%} | {acc['optimized']['topk']:.2%} | "
            f"{100 * acc['top1_drop']:+.2f} | {100 * low:+.2f} to {100 * high:+.2f} | "
            f"{acc['top1_only_original_right']} / {acc['top1_only_optimized_right']} | {acc['top1_mcnemar_exact_p']:.3g} | "
            f"{row['top1_agreement']:.2%} |")
    lines += ["", "Drop = original top-1 minus the model's, on the same images; the interval is Newcombe's paired "
              "square-and-add interval (only the images exactly one of the two gets right move it).", ""]
    for row in report["rows"]:
        if row.get("int8_recipe"):
            lines.append(f"int8 recipe ({row['model']}): `{json.dumps(row['int8_recipe'], sort_keys=True)}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the toolkit's errors are one line; say it and exit non-zero
        from tftrt_toolkit.errors import ToolkitError

        if not isinstance(error, ToolkitError):
            raise
        print(f"benchmarks/accuracy.py: error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 1))
