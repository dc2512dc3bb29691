"""tftrt benchmark: latency percentiles and throughput per batch size, before vs after.

  tftrt benchmark --model=SPEC [--baseline=SPEC] [--batch_sizes=1,8,32] [--warmup=5]
                  [--iterations=N | --duration=S] [--data=synthetic|DIR|...] [--output=DIR]

Reports latency min/mean/p50/p90/p99/max, throughput (samples/s), the first call's time
(graph optimization / engine build) apart, peak RSS and the number of runs, for each
batch size. With --baseline both models run in this process, interleaved run by run, and
speed-ups (p50 latency, throughput) are printed side by side. Inputs are prepared before
the clock starts; each timed run includes copying every output to host memory. Images are
prepared as the model records (tftrt convert's --preprocess), unless --preprocess.
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

class BenchmarkFlags(cli_flags.FlagGroup):
    """benchmark's own: the baseline, batch sizes, how many runs, the chart, concurrent clients."""

    def add(self, flags):
        flags.define("string", "baseline", None, "Also measure this model (usually the original), interleaved, and report speed-ups.")
        cli_flags.define_batch_sizes(flags, ["1", "8", "32"])
        flags.define("integer", "warmup", 5, "Untimed runs per model and batch size (after the first call, which is timed apart).")
        flags.define("integer", "iterations", None, "Timed runs per model and batch size.")
        cli_flags.define_duration(flags, None, "Or: about this many seconds of timed runs per model and batch size (default 5).")
        flags.define("bool", "plot", True, "Write benchmark.png into --output (needs matplotlib: pip install tftrt_toolkit[plot]).")
        flags.define("list", "concurrency", None,
                     "Also measure throughput with this many concurrent client threads, e.g. 1,4: requests/s, samples/s and "
                     "latency p50/p90/p99 per batch size (throughput.json/csv/png in --output).")

    def parse(self, flags):
        self.baseline = flags.value("baseline")
        self.batch_sizes = cli_flags.batch_sizes(flags)
        self.warmup, self.iterations, self.duration = flags.value("warmup"), flags.value("iterations"), flags.value("duration")
        self.plot = flags.value("plot")
        self.concurrency = flags.positive_ints("concurrency", "1,4")


def flag_groups():
    return [
        cli_flags.ModelFlags(),
        BenchmarkFlags(),
        cli_flags.DataFlags(default="synthetic"),
        cli_flags.OutputFlags("A directory for benchmark.json/.csv/.png (and throughput.* with --concurrency)."),
        cli_flags.ThreadingFlags(),
        cli_flags.JsonFlag(),
    ]


def main(flags) -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.report.throughput import throughput_paths
    from tftrt_toolkit.runtime.benchmark import benchmark
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.throughput import throughput as measure_throughput

    model, own, data, out = flags[cli_flags.ModelFlags], flags[BenchmarkFlags], flags[cli_flags.DataFlags], flags[cli_flags.OutputFlags]
    as_json = flags[cli_flags.JsonFlag].json
    output = out.path
    paths = {}
    if output:
        paths = results.benchmark_paths(output, plot=own.plot)
        if own.concurrency:
            paths.update(throughput_paths(output, plot=own.plot))
        # Refuse unusable outputs (and a missing matplotlib) before minutes of measuring.
        writers.check_writable(list(paths.values()), overwrite=out.overwrite, make_dirs=True)
        if own.plot:
            from tftrt_toolkit.report.plots import require_matplotlib

            require_matplotlib()
    threads = flags[cli_flags.ThreadingFlags].threads
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    baseline = ModelRunner(own.baseline, **model.load_options) if own.baseline else None
    with ModelRunner(model.spec, **model.load_options) as runner:
        try:
            report = benchmark(
                runner, baseline=baseline, batch_sizes=own.batch_sizes, warmup=own.warmup,
                iterations=own.iterations, duration=own.duration, data=data.data, strict_data=data.strict,
                threads=threads, progress=True, **data.options,
            )
            concurrent = None
            if own.concurrency:
                concurrent = measure_throughput(
                    runner, concurrency=own.concurrency, batch_sizes=own.batch_sizes, duration=own.duration or 5.0,
                    warmup=own.warmup, data=data.data, threads=threads, progress=True, **data.options)
        finally:
            if baseline is not None:
                baseline.close()
    table = "\n".join(report.table_lines()) + "\n"
    if concurrent is not None:
        table += "\n" + "\n".join(concurrent.table_lines()) + "\n"
    if as_json:
        sys.stderr.write(table)
        sys.stdout.write(writers.json_text(report))
    else:
        sys.stdout.write(table)
    if paths:
        # The same files BenchmarkReport.save(dir) and ThroughputReport.save(dir) write from the Python API.
        report.save(output, plot=own.plot, overwrite=out.overwrite)
        if concurrent is not None:
            concurrent.save(output, plot=own.plot, overwrite=out.overwrite)
        print(f"wrote {', '.join(paths.values())}", file=sys.stdout if not as_json else sys.stderr)
    return 0
