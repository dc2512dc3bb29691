"""tftrt tune: the fastest precision and settings that stay inside an accuracy budget.

  tftrt tune --model=saved_models/efficientnet_lite0 --data=saved_models/samples --labels_csv=saved_models/samples/labels.csv --output=/tmp/tuned
  tftrt tune --model=m --data=DIR --min_top1_agreement=0.99 --batch_size=1 --output=out/m-tuned

Tries every backend x precision this machine can run (cpu: fp32, bf16, int8; TensorRT:
fp32, fp16, int8 and its segment/dynamic-shape settings) and a second thread setting,
validates each against the original on --data, times them all at --batch_size interleaved
with the original, and writes the fastest one inside the budget to --output (a plain
SavedModel; assets.extra/tftrt_toolkit.json says why it was chosen). tune.json, tune.csv
and tune.png (latency vs accuracy, Pareto front, budget line) go to OUTPUT.tune/.
--objective: latency (lowest p50) or throughput (most requests/s with one request per core in
flight, each conversion at TF's threads and at 1 intra-op thread per request; the default at
--batch_size=1); the chosen threading and its measured reason go into the model's metadata.
Budget: --max_top1_drop (default 0.005 with labels: --labels_csv, or a --data folder whose image
names carry ImageNet WordNet ids; the table shows the drop with its 95% paired interval) or --min_top1_agreement
(default 0.99 without labels). When nothing qualifies: exit 8, the table is still written.
--preprocess (and --input_shape) say how images become the model's inputs, for validation,
timing and int8 calibration alike; the chosen model records the mode for later commands.
"""

from tftrt_toolkit.cli import flags as cli_flags


class TuneFlags(cli_flags.FlagGroup):
    """tune's own: the accuracy budget, the batch size and time it is measured with, the candidates, where reports go.

    --labels_csv (DataFlags) and --min_top1_agreement keep validate's names.
    """

    def add(self, flags):
        flags.define("integer", "batch_size", 8, "The batch size candidates are timed at (and validated with); at 1, "
                     "one-thread settings are tried too.")
        flags.define("float", "max_top1_drop", None,
                     "Accuracy budget with --labels_csv: the largest top-1 accuracy drop allowed, as a share (0.005 = half a "
                     "point; the default with labels).")
        flags.define("float", "min_top1_agreement", None,
                     "Accuracy budget without labels: the share of samples whose top-1 class must match the original's "
                     "(default 0.99).")
        flags.define("float", "time_budget", 600.0, "Seconds for the whole search; candidates not reached are skipped.")
        cli_flags.define_duration(flags, 3.0, "Seconds of timed runs per candidate (interleaved with the original).",
                                  formerly=["seconds_per_candidate"])
        flags.define("list", "candidates", None,
                     "What to try instead of the defaults: backend-precision[@INTRAxINTER], e.g. cpu-fp32,cpu-bf16,cpu-bf16@2x1.")
        cli_flags.define_calibration_data(flags, "int8 calibration data, same forms as --data (default: --data).")
        flags.define("string", "report_dir", None, "Where tune.json/csv/png go (default: OUTPUT.tune beside --output).")
        flags.define("enum", "objective", None,
                     "What tune maximises: latency (lowest p50, one request at a time) or throughput (most requests/s with one "
                     "request per core in flight, at TF's threads and at 1 intra-op thread per request; the default at "
                     "--batch_size=1).", enum_values=["latency", "throughput"])

    def parse(self, flags):
        self.batch_size = flags.value("batch_size")
        #: tune()'s budget keywords (tune checks that at most one is given).
        self.budget = {"max_top1_drop": flags.value("max_top1_drop"), "min_top1_agreement": flags.value("min_top1_agreement")}
        self.time_budget = flags.value("time_budget")
        self.duration = flags.value("duration")
        self.candidates = flags.value("candidates") or None
        self.calibration_data = flags.value("calibration_data")
        self.report_dir = flags.value("report_dir")
        self.objective = flags.value("objective")


def flag_groups():
    return [
        cli_flags.ModelFlags(),
        cli_flags.DataFlags(required=True, labels=True),
        TuneFlags(),
        cli_flags.OutputFlags("The directory the chosen model is written to (a SavedModel).", required=True),
    ]


def main(flags) -> int:
    from tftrt_toolkit.jobs.tune import NoCandidateInBudget, tune

    model, data, own, output = flags[cli_flags.ModelFlags], flags[cli_flags.DataFlags], flags[TuneFlags], flags[cli_flags.OutputFlags]
    try:
        result = tune(
            model.spec, data.data, output.path, overwrite=output.overwrite, **model.load_options,
            labels_csv=data.labels_csv, strict_data=data.strict, **data.options,
            batch_size=own.batch_size, time_budget=own.time_budget, candidates=own.candidates, duration=own.duration,
            report_dir=own.report_dir, calibration_data=own.calibration_data, objective=own.objective, **own.budget,
            progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
        )
    except NoCandidateInBudget as failure:
        print("\n".join(failure.result.table_lines()))
        raise
    print("\n".join(result.table_lines()))
    print(f"\nchosen: {result.reason}")
    serving = result.serving or {}
    if serving.get("intra_op_threads"):
        in_flight = (f", {serving['concurrency']} requests in flight (TF Serving: num_batch_threads)"
                     if serving.get("objective") == "throughput" else "")
        print(f"serve it with TF threads intra_op={serving['intra_op_threads']} inter_op={serving['inter_op_threads']}"
              f"{in_flight} (tf.config.threading before loading the model; ModelRunner, batch-predict and "
              "serving-config read it from the model)")
    if serving.get("reason"):
        print(f"why: {serving['reason']}")
    print(f"model: {result.output}\nreport: {result.report_dir}/tune.png")
    return 0
