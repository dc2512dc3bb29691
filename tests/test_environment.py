"""What the toolkit says about the machine: TensorRT's libraries, oneDNN's state, which precisions can run.

The oneDNN switch is read once when TensorFlow is imported, so the checks against plain
TensorFlow run in fresh subprocesses with TF_ENABLE_ONEDNN_OPTS unset, 0 and 1.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tftrt_toolkit import onednn, tensorrt_libraries
from tftrt_toolkit.backends.precisions import offered_precisions, precision_offers
from tftrt_toolkit.environment import probe
from tftrt_toolkit.report.doctor import doctor_json, doctor_lines

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(code_or_args, onednn_switch):
    environment = onednn.environment_with(None if onednn_switch is None else onednn_switch == "1", dict(os.environ, **QUIET))
    args = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else [sys.executable] + code_or_args
    result = subprocess.run(args, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("switch", [None, "0", "1"])
def test_doctor_reports_what_plain_tensorflow_does_in_the_same_setting(switch):
    plain = _run("from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())", switch)
    report = json.loads(_run(["-m", "tftrt_toolkit.cli.main", "doctor", "--json"], switch))
    assert report["onednn_enabled"] is (plain.strip() == "True")
    if switch is None:  # nobody chose: what TF does here is its default, by its own rule
        assert report["onednn_default"] is report["onednn_enabled"]
    assert report["onednn_set_by"] == ("default" if switch is None else "user")
    # tftrt's own commands turn oneDNN on unless the user turned it off.
    assert report["onednn_in_tftrt_commands"] is (switch != "0")
    assert ("int8" in report["precisions"]) is (switch != "0" and "avx2" in report["cpu_features"]
                                                 and report["precision_offers"][2]["available"])


def test_doctor_json_has_the_tensorrt_facts_from_tensorflow_itself():
    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert

    report = doctor_json(probe())
    built = bool(tf.sysconfig.get_build_info().get("is_tensorrt_build"))
    assert report["tensorrt_build"] is built
    pywrap = trt_convert._pywrap_py_utils
    if built:
        assert report["tensorrt_linked"] == ".".join(map(str, pywrap.get_linked_tensorrt_version()))
    if not pywrap.is_tensorrt_enabled():  # the libraries did not load: name them
        assert report["tensorrt_loaded"] is None
        if built:
            assert report["tensorrt_missing_libraries"] == [f"libnvinfer.so.{report['tensorrt_linked']}",
                                                           f"libnvinfer_plugin.so.{report['tensorrt_linked']}"]
            text = "\n".join(doctor_lines(probe()))
            assert "built without TensorRT" not in text and "libnvinfer.so." in text and "LD_LIBRARY_PATH" in text


def test_tensorflow_default_rule_is_tensorflows():
    # tensorflow/core/util/util.cc (2.17): on by default on Linux for AVX512-VNNI/BF16, AVX-VNNI, AMX.
    assert not onednn.default_for(["avx2", "fma"], "linux")
    assert onednn.default_for(["avx2", "avx512f", "avx512_vnni"], "linux")
    assert onednn.default_for(["amx_tile"], "linux")
    assert not onednn.default_for(["avx512_vnni"], "win32")


def test_turning_on_respects_the_user_and_a_tensorflow_already_imported():
    assert onednn.turn_on_before_tensorflow({"TF_ENABLE_ONEDNN_OPTS": "0"}) == "user"
    environ = {}
    outcome = onednn.turn_on_before_tensorflow(environ)
    if "tensorflow" in sys.modules:  # this test process imported it already: too late to change
        assert outcome == "too-late" and environ == {}
    else:
        assert outcome == "toolkit" and environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    child = onednn.environment_with(False, {"TF_ENABLE_ONEDNN_OPTS": "1", onednn.SET_BY_TOOLKIT: "1"})
    assert child["TF_ENABLE_ONEDNN_OPTS"] == "0" and onednn.SET_BY_TOOLKIT not in child


_FREED_TENSOR_SCRIPT = """
import sys
from tftrt_toolkit import onednn
onednn.turn_on_before_tensorflow()
asked = onednn.return_freed_memory_before_tensorflow() if sys.argv[1] == "convert" else False
import tensorflow as tf

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

before = rss_mb()
weights = tf.random.uniform([64, 1024, 1024])  # 256 MB, freed next
weights = None
print(asked, rss_mb() - before)
"""


def _resident_after_freeing(mode):
    environ = {key: value for key, value in os.environ.items()
               if key not in ("TF_ENABLE_ONEDNN_OPTS", onednn.SET_BY_TOOLKIT, onednn.SYSTEM_ALLOCATOR)}
    completed = subprocess.run([sys.executable, "-c", _FREED_TENSOR_SCRIPT, mode], env=environ,
                               capture_output=True, text=True, check=True)
    asked, grown = completed.stdout.split()
    return asked == "True", int(grown)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident size from /proc")
def test_converting_processes_give_freed_memory_back_to_the_system():
    # With oneDNN on, TensorFlow pools freed tensors: a conversion's steps would stack their peaks.
    asked, grown = _resident_after_freeing("convert")
    assert asked and grown < 64, f"{grown} MB still resident after freeing a 256 MB tensor"
    _, pooled = _resident_after_freeing("other")
    assert pooled > 200, "TensorFlow's oneDNN pool no longer keeps freed memory: the system allocator may be moot"
    assert not onednn.return_freed_memory_before_tensorflow({onednn.SYSTEM_ALLOCATOR: "0"})


# ----------------------------------------------------------------------------- which precisions, by capability

def _env(features, onednn_on=True):
    return dataclasses.replace(probe(), cpu_features=tuple(features), onednn_enabled=onednn_on,
                               tensorflow_built_with_tensorrt=False, tensorrt_loaded_version=None, gpus=())


@pytest.mark.parametrize("features, onednn_on, inc, expected", [
    (("avx2", "fma"), True, True, ("fp32", "int8")),                      # AMD EPYC (Zen 2/3), most laptops
    (("avx2", "fma"), False, True, ("fp32",)),                            # same CPU, oneDNN off in the process
    (("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), True, True, ("fp32", "bf16", "int8")),  # AMD EPYC Zen 4
    (("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"), True, True, ("fp32", "bf16", "int8")),
    (("avx2", "avx512f", "avx512_vnni"), True, False, ("fp32",)),          # INC not installed: no int8 conversion
    (("avx",), True, True, ("fp32",)),                                     # no AVX2: no oneDNN int8 kernels
    (("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), False, True, ("fp32",)),  # Zen 4, oneDNN off: no bf16 pass
])
def test_cpu_precisions_follow_capabilities(features, onednn_on, inc, expected):
    env = _env(features, onednn_on)
    offers = precision_offers(env, "cpu", inc_installed=inc)
    assert tuple(o.precision for o in offers if o.available) == expected
    for offer in offers:
        assert offer.reason  # every yes and every no says why
    # int8 models run only on oneDNN; bf16 models also run on Eigen's kernels (oneDNN off), on any CPU.
    assert [o.precision for o in offers if o.requires_onednn] == ["int8"]


def test_the_one_answer_is_what_backends_run_and_tune_use():
    from tftrt_toolkit.jobs.tune import default_candidates

    env = probe()
    cpu = offered_precisions(env, "cpu")
    assert cpu[0] == "fp32"
    names = [c.name for c in default_candidates(env, batch_size=8) if c.threads is None]
    assert names == [f"cpu-{p}" for p in cpu]
    assert offered_precisions(env) == (cpu if not env.tensorrt_usable else ("fp32", "fp16", "int8"))


# ----------------------------------------------------------------------------- TensorRT's libraries, on fake trees

def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_libraries_under_the_wanted_names_in_pips_folder_are_found_and_put_on_the_path(tmp_path):
    libs = _touch(tmp_path / "site-packages" / "tensorrt_libs", "libnvinfer.so.8.6.1", "libnvinfer_plugin.so.8.6.1")
    found = tensorrt_libraries.search("8.6.1", [str(tmp_path / "elsewhere"), str(libs)], loader=lambda name: False)
    assert found.missing == ("libnvinfer.so.8.6.1", "libnvinfer_plugin.so.8.6.1")
    assert found.folders_to_add == (str(libs),)
    assert "export LD_LIBRARY_PATH=" + str(libs) in found.fix()
    environment = tensorrt_libraries.environment_for(found, {"LD_LIBRARY_PATH": "/opt/x"})
    assert environment["LD_LIBRARY_PATH"] == f"{libs}{os.pathsep}/opt/x"
    # the restarted process carries a marker, so it never restarts again
    assert tensorrt_libraries.environment_for(found, environment) is None


def test_same_major_version_under_another_name_gets_the_symlink_fix(tmp_path):
    libs = _touch(tmp_path / "tensorrt_libs", "libnvinfer.so.8", "libnvinfer_plugin.so.8")
    found = tensorrt_libraries.search("8.6.1", [str(libs)], loader=lambda name: False)
    assert found.folders_to_add == ()
    assert found.same_major == {"libnvinfer.so.8.6.1": str(libs / "libnvinfer.so.8"),
                                "libnvinfer_plugin.so.8.6.1": str(libs / "libnvinfer_plugin.so.8")}
    assert f"ln -s {libs / 'libnvinfer.so.8'} {libs / 'libnvinfer.so.8.6.1'}" in found.fix()
    assert tensorrt_libraries.environment_for(found, {}) is None


def test_nothing_installed_gives_the_install_recipe_and_loadable_libraries_need_nothing(tmp_path):
    nothing = tensorrt_libraries.search("8.6.1", [str(tmp_path)], loader=lambda name: False)
    assert "pip install 'tensorflow[and-cuda]==2.17.1' 'tensorrt==8.6.1'" in nothing.fix()
    loaded = tensorrt_libraries.search("8.6.1", [str(tmp_path)], loader=lambda name: True)
    assert loaded.loadable and loaded.missing == () and tensorrt_libraries.environment_for(loaded, {}) is None
    assert tensorrt_libraries.search(None) is None


def test_pip_folders_in_site_packages_are_searched(tmp_path, monkeypatch):
    site_packages = tmp_path / "lib" / "site-packages"
    libs = _touch(site_packages / "tensorrt_libs", "libnvinfer.so.8.6.1")
    cuda = _touch(site_packages / "nvidia" / "cudnn" / "lib", "libcudnn.so.8")
    monkeypatch.setattr(sys, "path", [str(site_packages)])
    folders = tensorrt_libraries.default_search_folders()
    assert str(libs) in folders and str(cuda) in folders


def test_a_smaller_cpu_is_imitated_with_onednn_max_cpu_isa():
    # The AVX2 path (AMD Zen 2/3, most laptops) on whatever CPU runs the suite: oneDNN's kernels
    # capped at AVX2 and its ops on; bf16 is not offered, int8 is (when INC is installed).
    environment = dict(onednn.environment_with(True, dict(os.environ, **QUIET)), ONEDNN_MAX_CPU_ISA="AVX2")
    result = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "doctor", "--json"], env=environment,
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    assert not any(f.startswith(("avx512", "amx")) for f in report["cpu_features"])
    assert "bf16" not in report["precisions"] and report["precisions"][0] == "fp32"
    int8 = report["precision_offers"][2]
    assert int8["available"] is ("avx2" in report["cpu_features"] and "Neural Compressor" not in int8["reason"])
