"""tftrt run: the whole job on a model — convert, predict, validate, benchmark, report.

  tftrt run                                   # the shipped EfficientNet-Lite0 and sample photos, offline
  tftrt run --model=keras:VGG16 --weights=imagenet --data=DIR --precisions=fp32,bf16

Converts with the best precisions this machine offers (cpu: fp32, bf16 where the CPU has
BF16, int8 when it keeps top-1 agreement >= 99%; TensorRT: fp16 and int8 calibrated on the
data), predicts every image before and after, validates each optimized model against the
original, benchmarks them interleaved with the original, and writes report.md/.json,
predictions.json/.csv, benchmark.json/.csv/.png and the models into --output_dir.
"""

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    names = cli_flags.define_model_flags() + cli_flags.define_threading_flags()
    names += [n for n in cli_flags.define_data_flags() if n == "data"]
    names += [n for n in cli_flags.define_conversion_flags() if n == "backend"]
    names += [n for n in cli_flags.define_output_flags() if n == "overwrite"]
    names += [
        cli_flags.define("string", "output_dir", "tftrt-report", "Where the report and models go."),
        cli_flags.define("list", "precisions", None, "Precisions to convert to (default: the best this machine offers)."),
        cli_flags.define("string", "labels_csv", None, "image,class_id ground truth for accuracy (default: the samples' labels)."),
        cli_flags.define("list", "run_batch_sizes", ["1", "8"], "Batch sizes to benchmark."),
        cli_flags.define("float", "seconds_per_measurement", 3.0, "Benchmark time per model and batch size."),
    ]
    return names


def main() -> int:
    from tftrt_toolkit.jobs.run import run_job

    FLAGS = cli_flags.FLAGS
    data = FLAGS.data[0] if FLAGS.data and len(FLAGS.data) == 1 else FLAGS.data
    try:
        batch_sizes = [int(b) for b in FLAGS.run_batch_sizes]
    except ValueError:
        from tftrt_toolkit.errors import ConfigError

        raise ConfigError(f"--run_batch_sizes={','.join(FLAGS.run_batch_sizes)} is not valid; give integers, e.g. 1,8.") from None
    report = run_job(
        FLAGS.model, output_dir=FLAGS.output_dir, data=data, labels_csv=FLAGS.labels_csv,
        precisions=FLAGS.precisions, backend=FLAGS.backend, weights=FLAGS.weights, batch_sizes=batch_sizes,
        duration=FLAGS.seconds_per_measurement, overwrite=FLAGS.overwrite,
        threads=cli_flags.threading_from_flags(),
        progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
    )
    print()
    print("\n".join(report.table_lines()))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {report.output_dir}/report.md")
    return 0
