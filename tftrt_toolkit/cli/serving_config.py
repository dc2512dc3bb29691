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


def define_flags():
    output = cli_flags.define_output_flags("The directory for models.config and batching_parameters.txt.")
    return cli_flags.define_serving_config_flags() + output + cli_flags.define_format_flags()


def main() -> int:
    from tftrt_toolkit.report import writers
    from tftrt_toolkit.serving.model_config import output_paths, serving_config

    FLAGS = cli_flags.FLAGS
    base_path = cli_flags.require("model_base_path")
    name = cli_flags.require("name")
    output = cli_flags.require("output")
    models_config_path, batching_path = output_paths(output)
    config = serving_config(base_path, name, benchmark_report=FLAGS.benchmark_report, tune_report=FLAGS.tune_report)
    # Both files or neither: refuse an unusable output before writing the first one.
    writers.check_writable([models_config_path, batching_path], overwrite=FLAGS.overwrite, make_dirs=True)
    writers.write_text(models_config_path, config.models_config_text(), overwrite=FLAGS.overwrite)
    writers.write_text(batching_path, config.batching_parameters_text(), overwrite=FLAGS.overwrite)
    commands = config.docker_commands(output)
    if FLAGS.json:
        sys.stdout.write(writers.json_text({**config.to_json(), "files": [models_config_path, batching_path],
                                            "docker_commands": commands, "run_here": False}))
        return 0
    batching = config.batching
    lines = [f"wrote {models_config_path}", f"wrote {batching_path}",
             f"  max_batch_size={batching.max_batch_size} allowed_batch_sizes={','.join(map(str, batching.allowed_batch_sizes))} "
             f"batch_timeout_micros={batching.batch_timeout_micros} num_batch_threads={batching.num_batch_threads} "
             f"max_enqueued_batches={batching.max_enqueued_batches}"]
    if config.threads_reason:
        flags = " ".join(flag for flag in config.server_flags(output) if "_op_parallelism" in flag) or "TF's default"
        lines.append(f"  threads: {flags}, because {config.threads_reason}")
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
