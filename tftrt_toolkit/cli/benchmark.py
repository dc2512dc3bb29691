"""tftrt benchmark: latency percentiles and throughput per batch size, before vs after.

  tftrt benchmark --model=SPEC [--baseline=SPEC] [--batch_sizes=1,8,32] [--warmup=5]
                  [--iterations=N | --duration=S] [--data=synthetic|DIR|...] [--output=DIR]

Reports latency min/mean/p50/p90/p99/max, throughput (samples/s), the first call's time
(graph optimization / engine build) apart, peak RSS and the number of runs, for each
batch size. With --baseline both models run in this process, interleaved run by run, and
speed-ups (p50 latency, throughput) are printed side by side. Inputs are prepared before
the clock starts; each timed run includes copying every output to host memory.
--output=DIR writes benchmark.json, benchmark.csv and benchmark.png (the chart needs
matplotlib: pip install tftrt_toolkit[plot]; --noplot skips it). The settings (threads,
batch sizes, runs, TF version, CPU) are recorded in benchmark.json.

--concurrency=1,4 then measures throughput under concurrent requests: N client threads
share the one loaded model (as TF Serving's request threads do) and send requests back to
back for --duration seconds (default 5) per batch size; reports requests/s, samples/s and
latency p50/p90/p99 per number of clients, and --output=DIR also gets throughput.json,
throughput.csv and throughput.png. --intra_op_threads=1 with several clients is one thread
per request; the default is all of TF's threads on each request.
"""

import sys

from tftrt_toolkit.cli import flags as cli_flags

def define_flags():
    return (cli_flags.define_model_flags() + cli_flags.define_benchmark_flags()
            + cli_flags.define_data_flag() + cli_flags.define_input_flags()
            + cli_flags.define_output_flags("A directory for benchmark.json/.csv/.png (and throughput.* with --concurrency).")
            + cli_flags.define_threading_flags() + cli_flags.define_format_flags())


def main() -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.report.throughput import throughput_paths
    from tftrt_toolkit.runtime.benchmark import benchmark
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.throughput import throughput as measure_throughput

    FLAGS = cli_flags.FLAGS
    model = cli_flags.require("model")
    batch_sizes = cli_flags.batch_sizes_from_flags()
    output = FLAGS.output
    paths = {}
    concurrency = cli_flags.concurrency_from_flags()
    if output:
        paths = results.benchmark_paths(output, plot=FLAGS.plot)
        if concurrency:
            paths.update(throughput_paths(output, plot=FLAGS.plot))
        # Refuse unusable outputs (and a missing matplotlib) before minutes of measuring.
        writers.check_writable(list(paths.values()), overwrite=FLAGS.overwrite, make_dirs=True)
        if FLAGS.plot:
            from tftrt_toolkit.report.plots import require_matplotlib

            require_matplotlib()
    threads = cli_flags.threading_from_flags()
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    load_options = cli_flags.model_load_options_from_flags()
    baseline = ModelRunner(FLAGS.baseline, **load_options) if FLAGS.baseline else None
    with ModelRunner(model, **load_options) as runner:
        try:
            report = benchmark(
                runner, baseline=baseline, batch_sizes=batch_sizes, warmup=FLAGS.warmup,
                iterations=FLAGS.iterations, duration=FLAGS.duration,
                data=cli_flags.data_from_flags(default="synthetic"), threads=threads, progress=True,
                **cli_flags.data_options_from_flags(),
            )
            concurrent = None
            if concurrency:
                concurrent = measure_throughput(
                    runner, concurrency=concurrency, batch_sizes=batch_sizes, duration=FLAGS.duration or 5.0,
                    warmup=FLAGS.warmup, data=cli_flags.data_from_flags(default="synthetic"), threads=threads,
                    progress=True, **cli_flags.data_options_from_flags())
        finally:
            if baseline is not None:
                baseline.close()
    table = "\n".join(report.table_lines()) + "\n"
    if concurrent is not None:
        table += "\n" + "\n".join(concurrent.table_lines()) + "\n"
    if FLAGS.json:
        sys.stderr.write(table)
        sys.stdout.write(writers.json_text(report))
    else:
        sys.stdout.write(table)
    if paths:
        # The same files BenchmarkReport.save(dir) and ThroughputReport.save(dir) write from the Python API.
        report.save(output, plot=FLAGS.plot, overwrite=FLAGS.overwrite)
        if concurrent is not None:
            concurrent.save(output, plot=FLAGS.plot, overwrite=FLAGS.overwrite)
        print(f"wrote {', '.join(paths.values())}", file=sys.stdout if not FLAGS.json else sys.stderr)
    return 0
