"""tftrt: optimize TensorFlow models for inference and check the result.

Usage: tftrt COMMAND [--flags] [--flagfile=configs/NAME.flags]

Commands:
  run          the whole job on a model: convert, predict, validate, benchmark, report
  doctor       what this machine can run (TensorFlow, TensorRT, GPUs, CPU features)
  inspect      a model's signatures, shapes, ops; --plan=tensorrt predicts TF-TRT's segments
  convert      optimize a model and save a SavedModel (backends: auto, tensorrt, cpu)
  predict      top-k labels (or raw outputs) for images or arrays, as JSON or CSV
  validate     compare an optimized model with its original (tolerances, top-k agreement)
  benchmark    latency percentiles and throughput, before vs after
  tune         the fastest precision/settings inside an accuracy budget
  batch-predict  predictions over many files with Apache Beam
  serving-config  TF Serving's models.config and batching_parameters.txt (from measurements when given)

`tftrt COMMAND --help` shows a command's flags. `--debug` (any command) prints the full
traceback of an unexpected error on stderr instead of writing it to a file.

Exit codes: 0 ok, 2 config, 3 model, 4 data, 5 backend, 6 conversion, 7 output, 8 validation,
70 internal error (a bug: one line, the traceback in a file), 130/143 interrupted (Ctrl-C/SIGTERM).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import tempfile
import traceback
from typing import List, Optional

COMMANDS = {
    "run": "tftrt_toolkit.cli.run",
    "doctor": "tftrt_toolkit.cli.doctor",
    "inspect": "tftrt_toolkit.cli.inspect",
    "convert": "tftrt_toolkit.cli.convert",
    "predict": "tftrt_toolkit.cli.predict",
    "validate": "tftrt_toolkit.cli.validate",
    "benchmark": "tftrt_toolkit.cli.benchmark",
    "tune": "tftrt_toolkit.cli.tune",
    "batch-predict": "tftrt_toolkit.cli.batch_predict",
    "serving-config": "tftrt_toolkit.cli.serving_config",
}


def _quiet_tensorflow() -> None:
    # TF's C++ start-up chatter (CUDA stub and cuFFT/cuDNN registration errors on CPU-only
    # machines) buries our one-line messages; failures we care about are checked explicitly.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a kind of Ctrl-C.

    A BaseException, so no ``except Exception`` on the way (ours wrap TensorFlow's errors into
    ModelLoadError/ConversionError) can turn it into a different error and exit code, and every
    cleanup that runs for Ctrl-C (temporary exports, staged outputs) runs for it too.
    """


def _restart_with_tensorrt_libraries(argv: List[str]) -> None:
    """Re-execute this command with TensorRT's library folders on LD_LIBRARY_PATH, when they are installed but off it.

    TF dlopens libnvinfer.so.<version> at import, through the loader's search path, which
    the loader reads only at process start: setting it now would not help this process.
    Only where the search found every missing library under the name TF wants (e.g. pip's
    tensorrt_libs folder); at most once (the new process carries a marker).
    """
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.tensorrt_libraries import environment_for

    found = probe().tensorrt_libraries
    environment = environment_for(found) if found is not None else None
    if environment is None:
        return
    print(f"tftrt: TensorRT's libraries are in {', '.join(found.folders_to_add)}, not on the loader's path; "
          "restarting with them on LD_LIBRARY_PATH.", file=sys.stderr)
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tftrt_toolkit.cli.main"] + list(argv[1:]), environment)


def _raise_on_sigterm(signum, frame):
    raise _Terminated()


def command_flags(command: str):
    """The flags ``tftrt COMMAND`` reads: its module's ``flag_groups()``, defined for it alone (cli/flags.py)."""
    from tftrt_toolkit.cli.flags import CommandFlags

    return CommandFlags(command, importlib.import_module(COMMANDS[command]).flag_groups())


def _print_help(module, flags) -> None:
    print((module.__doc__ or "").strip())
    print("\nFlags:")
    for name in flags.names:
        flag = flags.values[name]
        default = "" if flag.default in (None, "", []) else f" (default: {flag.default_as_str})"
        print(f"  --{name}: {flag.help}{default}")
    print("  --flagfile: read flags from a file (see configs/).")


def _internal_error(command: str, argv: List[str], debug: bool) -> int:
    """An exception that is no ToolkitError (a bug): one line on stderr, the traceback in a file (or on stderr with --debug)."""
    from tftrt_toolkit.errors import INTERNAL_ERROR_EXIT_CODE, first_line

    error = sys.exc_info()[1]
    reason = first_line(error)
    reason = reason if reason == type(error).__name__ else f"{type(error).__name__}: {reason}"
    trace = traceback.format_exc()
    if debug:
        sys.stderr.write(trace)
        print(f"tftrt {command}: internal error: {reason}", file=sys.stderr)
        return INTERNAL_ERROR_EXIT_CODE
    try:
        handle, path = tempfile.mkstemp(prefix=f"tftrt-{command}-", suffix=".trace.txt")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(f"tftrt {' '.join(argv[1:])}\n\n{trace}")
        where = f"full trace in {path}"
    except OSError as write_error:
        where = f"the trace could not be written ({write_error.strerror or write_error}); rerun with --debug to see it"
    print(f"tftrt {command}: internal error: {reason}; {where}", file=sys.stderr)
    return INTERNAL_ERROR_EXIT_CODE


def _refuse_other_commands_flags(command: str, flags, passed_on) -> None:
    """A flag of another tftrt command among those passed on (to Beam) is refused as an unknown flag here,
    before Beam is asked (none of them is a Beam pipeline option)."""
    from absl import flags as absl_flags

    others = {name for other in COMMANDS if other != command for name in command_flags(other).names}
    for arg in passed_on:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name and name not in flags.names and (name in others or (name.startswith("no") and name[2:] in others)):
            raise absl_flags.UnrecognizedFlagError(name, arg)


def _flag_error(command: str, flags, error) -> str:
    """absl's parse error as one line; a flag this command does not read is named as such, with the nearest it has."""
    from absl import flags as absl_flags

    if isinstance(error, absl_flags.UnrecognizedFlagError):
        import difflib

        name = error.flagname
        close = difflib.get_close_matches(name, flags.names, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""
        return (f"tftrt {command}: error: --{name} is not a flag of `tftrt {command}`, which would ignore it{hint}; "
                f"see `tftrt {command} --help`.")
    message = str(error).replace("ERROR:: ", "").strip()
    return f"tftrt {command}: error: {message}; see `tftrt {command} --help`."


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand; returns the exit code (0 ok, ToolkitError codes, 70 internal error, 130/143 when interrupted).

    No traceback reaches the user: a ToolkitError is its one line, anything else one "internal
    error" line naming a file with the traceback (``--debug``: the traceback on stderr).
    """
    argv = list(sys.argv if argv is None else argv)
    debug = "--debug" in argv[1:]
    argv = argv[:1] + [arg for arg in argv[1:] if arg != "--debug"]
    _quiet_tensorflow()
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    command = argv[1]
    if command not in COMMANDS:
        print(f"tftrt: unknown command {command!r}; run `tftrt --help` for the list.", file=sys.stderr)
        return 2
    try:
        return _run_command(command, argv, debug)
    except KeyboardInterrupt:  # before the command's own handling (e.g. while TensorFlow is imported)
        print(f"tftrt {command}: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001  (the last stop: a bug becomes one line and a trace file, never a traceback)
        return _internal_error(command, argv, debug)


def _run_command(command: str, argv: List[str], debug: bool) -> int:
    if command != "doctor":
        # Before TensorFlow is imported; doctor reports what a plain TF process here gets instead.
        from tftrt_toolkit import onednn

        onednn.turn_on_before_tensorflow()
        if command == "convert":
            onednn.return_freed_memory_before_tensorflow()
        _restart_with_tensorrt_libraries(argv)

    from absl import flags as absl_flags

    from tftrt_toolkit import progress
    from tftrt_toolkit.errors import ToolkitError

    module = importlib.import_module(COMMANDS[command])
    flags = command_flags(command)
    rest = argv[2:]
    if any(a in ("-h", "--help", "--helpfull") for a in rest):
        _print_help(module, flags)
        return 0
    # batch-predict hands flags it does not define to Beam's PipelineOptions (--runner, --direct_num_workers, ...).
    passes_unknown_flags = getattr(module, "PASSES_UNKNOWN_FLAGS", False)
    try:
        remaining = flags.parse([f"tftrt {command}"] + rest, known_only=passes_unknown_flags)
        if passes_unknown_flags:
            _refuse_other_commands_flags(command, flags, remaining[1:])
    except absl_flags.Error as error:
        print(_flag_error(command, flags, error), file=sys.stderr)
        return 2
    except ToolkitError as error:  # a value a flag group refuses (ConfigError)
        print(f"tftrt {command}: error: {error}", file=sys.stderr)
        return error.exit_code

    previous_handler = None
    try:
        previous_handler = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    except ValueError:
        pass  # not the main thread (e.g. called from a worker): keep the default handler
    # The library logs what it is doing (never prints); the CLI shows those step lines on stderr.
    # run's and tune's lines name their step already ("[2/6] convert: fp32", "tune: ...").
    log_handler = progress.log_to_stderr("" if command in ("run", "tune") else f"tftrt {command}: ", debug=debug)
    try:
        if passes_unknown_flags:
            return int(module.main(flags, remaining[1:]) or 0)
        return int(module.main(flags) or 0)
    except ToolkitError as error:
        print(f"tftrt {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stop:
        if isinstance(stop, _Terminated):
            print(f"tftrt {command}: terminated (SIGTERM); nothing was written.", file=sys.stderr)
            return 143
        print(f"tftrt {command}: interrupted; nothing was written.", file=sys.stderr)
        return 130
    finally:
        progress.remove_log_handler(log_handler)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
