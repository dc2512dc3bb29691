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
"""

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    names = cli_flags.define_model_flags() + cli_flags.define_data_flag() + cli_flags.define_strict_data_flag()
    names += [n for n in cli_flags.define_calibration_flags() if n == "calibration_data"]
    names += cli_flags.define_output_flags("The directory the chosen model is written to (a SavedModel).")
    names += cli_flags.define_duration_flag(3.0, "Seconds of timed runs per candidate (interleaved with the original).",
                                            formerly=["seconds_per_candidate"])
    return names + cli_flags.define_tune_flags()


def main() -> int:
    from tftrt_toolkit.jobs.tune import NoCandidateInBudget, tune

    FLAGS = cli_flags.FLAGS
    try:
        result = tune(
            cli_flags.require("model"), cli_flags.data_from_flags(cli_flags.require("data")), cli_flags.require("output"),
            labels_csv=FLAGS.labels_csv, batch_size=FLAGS.batch_size, time_budget=FLAGS.time_budget,
            candidates=FLAGS.candidates or None, duration=FLAGS.duration, report_dir=FLAGS.report_dir,
            calibration_data=FLAGS.calibration_data, overwrite=FLAGS.overwrite, strict_data=FLAGS.strict_data,
            objective=FLAGS.objective,
            **cli_flags.model_load_options_from_flags(),
            progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
            **cli_flags.tune_budget_from_flags(),
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
