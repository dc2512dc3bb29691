"""Saving is atomic and never touches the input: what users of serving directories rely on."""

import os
import threading

import pytest

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.artifacts import (check_output, next_version, read_metadata, resolve_output, staged_output,
                                     write_metadata)
from tftrt_toolkit.backends.base import Conversion, ConversionBackend
from tftrt_toolkit.errors import OutputError


class FakeBackend(ConversionBackend):
    """Writes a small file tree; can fail half-way through writing."""

    name = "cpu"

    def __init__(self, fail_after_files=None, error=RuntimeError("boom"), marker="new"):
        self.fail_after_files = fail_after_files
        self.error = error
        self.marker = marker

    def check_available(self, config, env):
        pass

    def convert(self, model, config, *, calibration_input_fn=None, build_input_fn=None):
        def write(output_dir):
            for i in range(3):
                if self.fail_after_files is not None and i >= self.fail_after_files:
                    raise self.error
                with open(os.path.join(output_dir, f"part{i}"), "w") as handle:
                    handle.write(self.marker)
            open(os.path.join(output_dir, "saved_model.pb"), "w").close()

        return Conversion(backend="cpu", precision="fp32", write=write)


def _convert(model, output, backend, **kwargs):
    return convert(str(model), str(output), ConversionConfig(backend="cpu"), backend=backend, **kwargs)


def test_success_leaves_only_the_output(tiny_saved_model, tmp_path, tree_hash):
    before = tree_hash(tiny_saved_model)
    result = _convert(tiny_saved_model, tmp_path / "out", FakeBackend())
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert read_metadata(result.path)["backend"] == "cpu"
    assert tree_hash(tiny_saved_model) == before


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_failure_mid_write_leaves_nothing(tiny_saved_model, tmp_path, error, tree_hash):
    before = tree_hash(tiny_saved_model)
    expected = OutputError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as raised:
        _convert(tiny_saved_model, tmp_path / "deep" / "out", FakeBackend(fail_after_files=1, error=error))
    if isinstance(error, OSError):
        assert "disk full" in str(raised.value) and "Nothing was written" in str(raised.value)
    assert os.listdir(tmp_path) == [], "no temp dir, no created parents"
    assert tree_hash(tiny_saved_model) == before


def test_existing_output_needs_overwrite_and_is_untouched_without_it(tiny_saved_model, tmp_path, tree_hash):
    _convert(tiny_saved_model, tmp_path / "out", FakeBackend(marker="old"))
    before = tree_hash(tmp_path / "out")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        _convert(tiny_saved_model, tmp_path / "out", FakeBackend(marker="new"))
    assert tree_hash(tmp_path / "out") == before


def test_overwrite_replaces_whole(tiny_saved_model, tmp_path):
    _convert(tiny_saved_model, tmp_path / "out", FakeBackend(marker="old"))
    _convert(tiny_saved_model, tmp_path / "out", FakeBackend(marker="new"), overwrite=True)
    assert (tmp_path / "out" / "part2").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_failed_overwrite_keeps_the_old_model(tiny_saved_model, tmp_path, tree_hash):
    _convert(tiny_saved_model, tmp_path / "out", FakeBackend(marker="old"))
    before = tree_hash(tmp_path / "out")
    with pytest.raises(RuntimeError):
        _convert(tiny_saved_model, tmp_path / "out", FakeBackend(fail_after_files=2), overwrite=True)
    assert tree_hash(tmp_path / "out") == before


@pytest.mark.parametrize("relative, fragment", [
    (".", "is the input model"),
    ("inside", "is inside the input model"),
    ("..", "contains the input model"),
])
def test_outputs_that_would_touch_the_input_are_refused(tiny_saved_model, relative, fragment, tree_hash):
    before = tree_hash(tiny_saved_model)
    with pytest.raises(OutputError, match=fragment):
        _convert(tiny_saved_model, os.path.normpath(os.path.join(str(tiny_saved_model), relative)), FakeBackend(),
                 overwrite=True)
    assert tree_hash(tiny_saved_model) == before


def test_read_only_parent_is_refused_before_any_work(tiny_saved_model, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permission bits: make the check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    try:
        with pytest.raises(OutputError, match="permission denied"):
            _convert(tiny_saved_model, locked / "out", FakeBackend())
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


def test_output_that_is_a_file_is_refused(tiny_saved_model, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        _convert(tiny_saved_model, tmp_path / "file", FakeBackend(), overwrite=True)


def test_concurrent_writers_one_wins_whole(tmp_path):
    target = str(tmp_path / "out")
    barrier = threading.Barrier(2)
    outcomes = []

    def writer(marker):
        try:
            with staged_output(target) as stage:
                with open(os.path.join(stage.path, "model"), "w") as handle:
                    handle.write(marker * 1000)
                barrier.wait()  # both have written; now both try to commit
                stage.commit()
            outcomes.append(("ok", marker))
        except OutputError as error:
            outcomes.append(("error", str(error)))

    threads = [threading.Thread(target=writer, args=(m,)) for m in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kind for kind, _ in outcomes) == ["error", "ok"]
    assert any("appeared while converting" in text for kind, text in outcomes if kind == "error")
    winner = next(marker for kind, marker in outcomes if kind == "ok")
    assert (tmp_path / "out" / "model").read_text() == winner * 1000
    assert os.listdir(tmp_path) == ["out"]


def test_serving_versions(tmp_path):
    base = tmp_path / "serving"
    assert resolve_output(str(base), "auto").endswith(os.path.join("serving", "1"))
    (base / "1").mkdir(parents=True)
    (base / "7").mkdir()
    assert next_version(str(base)) == 8
    assert resolve_output(str(base), 3).endswith(os.path.join("serving", "3"))
    for bad in ("0", "-2", "latest"):
        with pytest.raises(OutputError, match="--version"):
            resolve_output(str(base), bad)


def test_serving_version_written_atomically(tiny_saved_model, tmp_path):
    base = tmp_path / "serving"
    first = _convert(tiny_saved_model, base, FakeBackend(), version="auto")
    second = _convert(tiny_saved_model, base, FakeBackend(), version="auto")
    assert (first.path, second.path) == (str(base / "1"), str(base / "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_metadata_round_trip(tmp_path):
    write_metadata(str(tmp_path), {"backend": "cpu", "value": 1})
    meta = read_metadata(str(tmp_path))
    assert meta["backend"] == "cpu" and "created_at" in meta
    assert read_metadata(str(tmp_path / "nothing")) is None


def test_check_output_allows_an_empty_existing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output(str(tmp_path / "empty"), [], overwrite=False)
