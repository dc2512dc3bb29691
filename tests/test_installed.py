"""Installed, not only checked out: a built wheel carries the default model and samples, and its
`tftrt run` works from any directory.

The wheel is built (without network: --no-build-isolation, --no-deps) from a copy of the
checkout's files, since a build writes build/ into its source tree, and installed with
--target into a temporary directory that comes first on PYTHONPATH; its dependencies are
this environment's. The full check from the issue, with a fresh virtualenv and every
dependency downloaded, is the same run:
    python3 -m venv /tmp/v && /tmp/v/bin/pip install . && cd /tmp && /tmp/v/bin/tftrt run --output_dir=/tmp/r
"""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("efficientnet_lite0/saved_model.pb", "efficientnet_lite0/variables/variables.index",
           "efficientnet_lite0/variables/variables.data-00000-of-00001", "samples/cat.jpg", "samples/labels.csv")


def _checkout_copy(destination) -> str:
    """The checkout's files (tracked and new, not ignored) copied to ``destination``; skip outside a git checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: nothing to build a wheel from")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = os.path.join(REPO, name)
        if not os.path.lexists(source):
            continue  # deleted in the working tree
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif os.path.isfile(source):
            shutil.copy2(source, target)
    return str(destination)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    source = _checkout_copy(root / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist"), source], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = [os.path.join(root / "dist", name) for name in os.listdir(root / "dist") if name.endswith(".whl")]
    return path


@pytest.mark.slow
def test_the_wheel_ships_the_default_model_and_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SHIPPED if f"tftrt_toolkit/shipped/{name}" not in names]
    assert missing == []


@pytest.mark.slow
def test_tftrt_run_from_an_installed_wheel_finds_its_model_anywhere(wheel, tmp_path):
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    which = subprocess.run([sys.executable, "-c", "import tftrt_toolkit; print(tftrt_toolkit.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert which.stdout.strip().startswith(str(site)), "the installed copy is the one imported, not the checkout"
    done = subprocess.run([str(site / "bin" / "tftrt"), "run", f"--output_dir={tmp_path / 'report'}",
                           "--seconds_per_measurement=0.5"], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").exists()
    assert "Egyptian cat" in done.stdout  # the shipped cat photo, found inside the installed package
