"""tftrt run: the whole job on a model — convert, predict, validate, benchmark, report.

  tftrt run                                   # the shipped EfficientNet-Lite0 and sample photos, offline
  tftrt run --model=keras:VGG16 --weights=imagenet --data=DIR --precisions=fp32,bf16

Converts with the best precisions this machine offers (cpu: fp32, bf16 where the CPU has
BF16, int8 when it keeps top-1 agreement >= 99%; TensorRT: fp16 and int8 calibrated on the
data), predicts every image before and after, validates each optimized model against the
original, benchmarks them interleaved with the original, and writes report.md/.json,
predictions.json/.csv, benchmark.json/.csv/.png and the models into --output_dir.
int8 calibrates on --calibration_data (default: for the shipped model, its calibration crops of
free photos; for other models, --data). With labelled images (--labels_csv, or WordNet ids in
the file names) the report gives each model's top-1 accuracy and the drop with its 95% interval.
Files of the --data folder that were not used are named in a note and in report.json
(skipped_files); --strict_data refuses them before any conversion (exit 4).
"""

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    names = cli_flags.define_model_flags() + cli_flags.define_threading_flags() + cli_flags.define_data_flag()
    names += cli_flags.define_strict_data_flag() + cli_flags.define_backend_flag()
    names += [n for n in cli_flags.define_calibration_flags() if n == "calibration_data"]
    names += cli_flags.define_allow_partial_flag()
    names += [n for n in cli_flags.define_output_flags() if n == "overwrite"]
    names += [
        cli_flags.define("string", "output_dir", "tftrt-report", "Where the report and models go."),
        cli_flags.define("list", "precisions", None, "Precisions to convert to (default: the best this machine offers)."),
        cli_flags.define("string", "labels_csv", None, "image,class_id ground truth for accuracy (default: the samples' labels)."),
        *cli_flags.define_batch_sizes_flag(["1", "8"], "Batch sizes to benchmark.", formerly=["run_batch_sizes"]),
        *cli_flags.define_duration_flag(3.0, "Seconds of timed runs per model and batch size.",
                                        formerly=["seconds_per_measurement"]),
    ]
    return names


def main() -> int:
    from tftrt_toolkit.jobs.run import run_job

    FLAGS = cli_flags.FLAGS
    report = run_job(
        FLAGS.model, output_dir=FLAGS.output_dir, data=cli_flags.data_from_flags(), labels_csv=FLAGS.labels_csv,
        precisions=FLAGS.precisions, backend=FLAGS.backend, weights=FLAGS.weights,
        batch_sizes=cli_flags.batch_sizes_from_flags(), duration=FLAGS.duration, overwrite=FLAGS.overwrite,
        threads=cli_flags.threading_from_flags(), calibration_data=FLAGS.calibration_data,
        custom_objects=FLAGS.custom_objects or None, strict_data=FLAGS.strict_data,
        signature_key=FLAGS.signature, unsafe_deserialization=FLAGS.unsafe_deserialization,
        allow_partial_precision=FLAGS.allow_partial_precision,
        progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
    )
    print()
    print("\n".join(report.table_lines()))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {report.output_dir}/report.md")
    return 0
