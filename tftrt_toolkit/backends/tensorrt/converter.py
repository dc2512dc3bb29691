"""TF-TRT's converter, as the tensorrt backend makes and reads it: the factory, its summary, and why it cannot run here."""

from __future__ import annotations

from tftrt_toolkit.environment import Environment

NOT_BUILT_WITH_TENSORRT = (
    "TensorFlow here was built without TensorRT; use --backend=cpu or run on a machine with "
    "TF ≤ 2.17 + TensorRT (e.g. NVIDIA's TensorFlow containers)."
)


def tensorrt_libraries_missing(env: Environment) -> str:
    """One line: TF is a TensorRT build but the libraries did not load; which files are missing and what to do."""
    search = env.tensorrt_libraries
    missing = ", ".join(search.missing) if search and search.missing else "libnvinfer"
    fix = search.fix() if search else "install the TensorRT version TF was linked against"
    return (f"TensorFlow {env.tensorflow_version} is a TensorRT build (linked against TensorRT "
            f"{env.tensorrt_linked_version or '?'}) but the TensorRT libraries are not loadable here: {missing} not found; "
            f"{fix}; or use --backend=cpu.")


def default_converter_factory(**kwargs):
    from tensorflow.python.compiler.tensorrt import trt_convert

    return trt_convert.TrtGraphConverterV2(**kwargs)


def parse_summary(lines) -> dict:
    """Pick the two headline figures out of TF-TRT's summary() text."""
    parsed = {}
    for line in (str(l) for l in lines):
        if "Total number of TensorRT engines:" in line:
            parsed["tensorrt_engines"] = int(line.rsplit(":", 1)[1].strip())
        elif "% of OPs Converted:" in line:
            parsed["ops_converted_percent"] = float(line.split(":", 1)[1].split("%")[0].strip())
    return parsed
