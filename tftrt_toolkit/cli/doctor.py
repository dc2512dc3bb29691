"""tftrt doctor: what this machine can run.

Reports the TensorFlow and Keras versions, whether TensorFlow was built with TensorRT and
which TensorRT version is loaded, visible GPUs, the CPU features our kernels use (AVX512,
BF16, AMX, VNNI), and the backend and precisions `--backend=auto` would pick.
Probing never aborts: TensorRT versions are only asked for when TF reports TensorRT support.
"""

import json

from tftrt_toolkit.cli import flags as cli_flags


def flag_groups():
    return [cli_flags.JsonFlag()]


def main(flags) -> int:
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.report.doctor import doctor_json, doctor_lines

    env = probe(toolkit_process=False)  # what a plain TF process here gets
    if flags[cli_flags.JsonFlag].json:
        print(json.dumps(doctor_json(env), indent=2))
    else:
        print("\n".join(doctor_lines(env)))
    return 0
