"""tftrt serving-config: TF Serving's models.config and batching_parameters.txt for a converted model.

  tftrt serving-config --model_base_path=BASE --name=NAME --output=DIR
                       [--benchmark_report=bench/benchmark.json] [--tune_report=OUT.tune/tune.json]

Writes DIR/models.config (a ModelServerConfig text proto: the name, BASE, platform
"tensorflow", serve the newest version) and DIR/batching_parameters.txt (TF Serving's
BatchingParameters: max_batch_size, batch_timeout_micros, num_batch_threads,
max_enqueued_batches, allowed_batch_sizes), each file atomically. With a benchmark report
(and the throughput.json `tftrt benchmark --concurrency` writes beside it) or a tune report
the batching values come from those measurements; without, from documented defaults. A model
chosen by tune carries its serving threading (threads, requests in flight, batch size) with the
measured reason; it becomes the --tensorflow_*_op_parallelism flags and num_batch_threads. Each
value's origin is a comment in the file. Prints the `docker run` lines for TF Serving's CPU
image and its GPU image (for TensorRT models); they are printed, not run.
"""

import sys

from tftrt_toolkit.cli import flags as cli_flags


class ServingConfigFlags(cli_flags.FlagGroup):
    """serving-config's own: where the model's versions are, its name, the measurements to size batching from."""

    def add(self, flags):
        flags.define("string", "model_base_path", None,
                     "The directory holding the model's version directories (BASE/1, BASE/2, ...).")
        flags.define("string", "name", None, "The model's name in TF Serving (/v1/models/NAME).")
        flags.define("string", "benchmark_report", None,
                     "A benchmark.json (tftrt benchmark --output; a throughput.json beside it is read too) to size batching from.")
        flags.define("string", "tune_report", None, "A tune.json (OUTPUT.tune/tune.json): its chosen threads and latency.")

    def parse(self, flags):
        self.base_path, self.name = flags.require("model_base_path"), flags.require("name")
        self.benchmark_report, self.tune_report = flags.value("benchmark_report"), flags.value("tune_report")


def flag_groups():
    return [
        ServingConfigFlags(),
        cli_flags.OutputFlags("The directory for models.config and batching_parameters.txt.", required=True),
        cli_flags.JsonFlag(),
    ]


def main(flags) -> int:
    from tftrt_toolkit.report import writers
    from tftrt_toolkit.serving.model_config import output_paths, serving_config

    own, out = flags[ServingConfigFlags], flags[cli_flags.OutputFlags]
    base_path, name, output, overwrite = own.base_path, own.name, out.path, out.overwrite
    models_config_path, batching_path = output_paths(output)
    config = serving_config(base_path, name, benchmark_report=own.benchmark_report, tune_report=own.tune_report)
    # Both files or neither: refuse an unusable output before writing the first one.
    writers.check_writable([models_config_path, batching_path], overwrite=overwrite, make_dirs=True)
    writers.write_text(models_config_path, config.models_config_text(), overwrite=overwrite)
    writers.write_text(batching_path, config.batching_parameters_text(), overwrite=overwrite)
    commands = config.docker_commands(output)
    if flags[cli_flags.JsonFlag].json:
        sys.stdout.write(writers.json_text({**config.to_json(), "files": [models_config_path, batching_path],
                                            "docker_commands": commands, "run_here": False}))
        return 0
    batching = config.batching
    lines = [f"wrote {models_config_path}", f"wrote {batching_path}",
             f"  max_batch_size={batching.max_batch_size} allowed_batch_sizes={','.join(map(str, batching.allowed_batch_sizes))} "
             f"batch_timeout_micros={batching.batch_timeout_micros} num_batch_threads={batching.num_batch_threads} "
             f"max_enqueued_batches={batching.max_enqueued_batches}"]
    if config.threads_reason:
        threads = " ".join(flag for flag in config.server_flags(output) if "_op_parallelism" in flag) or "TF's default"
        lines.append(f"  threads: {threads}, because {config.threads_reason}")
    lines += [f"  note: {note}" for note in config.notes]
    lines += ["", "Start TF Serving with these files (printed only: no TF Serving server was run on this machine):",
              "  CPU:", f"    {commands['cpu']}",
              "  GPU, for TensorRT models (TF Serving's GPU image on NVIDIA's CUDA base; needs the NVIDIA Container Toolkit;",
              "  engines saved with the model must match its TensorRT version, else they are rebuilt at load):",
              f"    {commands['gpu']}"]
    if config.backend == "tensorrt":
        lines.append("  The newest version is a TensorRT model: use the GPU line.")
    print("\n".join(lines))
    return 0
