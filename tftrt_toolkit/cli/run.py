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
--preprocess (and --input_shape) say how images become the model's inputs, for predicting,
validating, benchmarking and int8 calibration alike (default: what the model records, its
keras.applications family's convention, else raw 0..255 pixels); the converted models record
the mode, so later commands on them default to it.
Files of the --data folder that were not used are named in a note and in report.json
(skipped_files); --strict_data refuses them before any conversion (exit 4).
A precision that fails at any step (convert, load, predict, validate, benchmark) gets a row with
the step and the error's first line, and the run goes on; the exit is 0 when at least one
optimized model passed, and non-zero when a precision named in --precisions failed (that
failure's code: 6 conversion, 70 internal error, ...) or none passed.
"""

from tftrt_toolkit.cli import flags as cli_flags


class RunFlags(cli_flags.FlagGroup):
    """run's own: which precisions on which backend, int8 calibration data, and the benchmark's batch sizes and seconds."""

    def add(self, flags):
        cli_flags.define_backend(flags)
        flags.define("list", "precisions", None, "Precisions to convert to (default: the best this machine offers).")
        cli_flags.define_calibration_data(
            flags, "int8 calibration data, same forms as --data (default: the shipped model's calibration crops; else --data).")
        cli_flags.define_batch_sizes(flags, ["1", "8"], "Batch sizes to benchmark.", formerly=["run_batch_sizes"])
        cli_flags.define_duration(flags, 3.0, "Seconds of timed runs per model and batch size.",
                                  formerly=["seconds_per_measurement"])
        cli_flags.define_allow_partial(flags)

    def parse(self, flags):
        self.backend = flags.value("backend")
        self.precisions = flags.value("precisions")
        self.calibration_data = flags.value("calibration_data")
        self.batch_sizes = cli_flags.batch_sizes(flags)
        self.duration = flags.value("duration")
        self.allow_partial_precision = flags.value("allow_partial_precision")


def flag_groups():
    return [
        cli_flags.ModelFlags(required=False),
        cli_flags.DataFlags(
            data_help="Images (a folder or files), FILE.npy/.npz or 'synthetic:N' (default: the shipped samples with the "
                      "shipped model, else synthetic:8).",
            labels=True, labels_help="image,class_id ground truth for accuracy (default: the samples' labels)."),
        RunFlags(),
        cli_flags.OutputFlags("Where the report and models go.", name="output_dir", default="tftrt-report"),
        cli_flags.ThreadingFlags(),
    ]


def main(flags) -> int:
    from tftrt_toolkit.jobs.run import RunFailed

    try:
        report = _run_job_from_flags(flags)
    except RunFailed as failed:  # the report is written: show its table; main() prints the one error line
        _print_summary(failed.report)
        raise
    _print_summary(report)
    return 0


def _run_job_from_flags(flags):
    from tftrt_toolkit.jobs.run import run_job

    model, data, run, output = flags[cli_flags.ModelFlags], flags[cli_flags.DataFlags], flags[RunFlags], flags[cli_flags.OutputFlags]
    report = run_job(
        model.spec, output_dir=output.path, overwrite=output.overwrite, **model.load_options,
        data=data.data, labels_csv=data.labels_csv, strict_data=data.strict, **data.options,
        precisions=run.precisions, backend=run.backend, calibration_data=run.calibration_data,
        batch_sizes=run.batch_sizes, duration=run.duration, threads=flags[cli_flags.ThreadingFlags].threads,
        allow_partial_precision=run.allow_partial_precision,
        progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
    )
    return report


def _print_summary(report) -> None:
    print()
    print("\n".join(report.table_lines()))
    for note in report.notes:
        print(f"note: {note}")
    print(f"\nreport: {report.output_dir}/report.md")
