"""Seeded corruptions of real model files through the loaders: only ModelLoadError (or success) comes out.

saved_model.pb mutants go through load_model, which parses the graph without loading weights
(fast); the ones that still parse are then fully loaded and frozen, as conversion does.
.keras mutants go through load_model as raw bytes (the zip's CRCs catch most) and, in the
slow suite, as valid zips with a corrupted member (config.json, weights) to reach Keras itself.
Every case also checks that the error is one line and that no temporary export is left.
"""

import io
import os
import random
import shutil
import tempfile
import zipfile

import pytest

from tftrt_toolkit.backends.frozen.freeze import freeze_signature
from tftrt_toolkit.errors import ModelLoadError, ToolkitError
from tftrt_toolkit.models.loader import load_model

SEED = 20240607


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded corruption: a bit flip, random bytes, a truncation, a zeroed run or a spliced copy."""
    raw = bytearray(data)
    kind = rng.choice(("flip", "bytes", "truncate", "zeros", "splice"))
    if kind == "flip":
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(2, 32)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif kind == "truncate":
        del raw[rng.randrange(len(raw)):]
    elif kind == "zeros":
        start = rng.randrange(len(raw))
        raw[start:start + rng.randint(1, 64)] = bytes(min(64, len(raw) - start))
    else:
        start, source, length = rng.randrange(len(raw)), rng.randrange(len(raw)), rng.randint(1, 256)
        raw[start:start + length] = raw[source:source + length]
    return bytes(raw)


@pytest.fixture
def private_tempdir(tmp_path, monkeypatch):
    """Route the loader's temporary exports here, so leftovers can be seen."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def load_outcome(path, unexpected, case, then=None):
    """'ok' or the ModelLoadError's message; anything else is recorded in ``unexpected``."""
    try:
        with load_model(str(path), weights=None) as loaded:
            if then is not None:
                then(loaded)
        return "ok"
    except ModelLoadError as error:
        message = str(error)
        if "\n" in message or not message:
            unexpected.append((case, "message is not one line", message))
        return message
    except BaseException as error:  # noqa: B902 - the point is to see every other type
        unexpected.append((case, type(error).__name__, str(error)[:300]))
        return type(error).__name__


def test_saved_model_pb_mutations(tiny_saved_model, tmp_path, private_tempdir):
    model = tmp_path / "model"
    shutil.copytree(tiny_saved_model, model)
    original = (model / "saved_model.pb").read_bytes()
    rng = random.Random(SEED)
    unexpected, outcomes, parseable = [], [], []
    for case in range(300):
        data = mutate(original, rng)
        (model / "saved_model.pb").write_bytes(data)
        outcomes.append(load_outcome(model, unexpected, case))
        if outcomes[-1] == "ok":
            parseable.append(data)
    assert unexpected == []
    assert _left_behind(private_tempdir) == []
    # Both sides were exercised: refused mutants, and ones that parse and go on to a full load below.
    assert any("cannot be parsed" in o and "re-export the model" in o for o in outcomes)
    assert len(parseable) >= 30

    # Full loads: tf.saved_model.load + freezing, as conversion does. Corrupt graphs that still
    # parse fail here in TensorFlow's Python (KeyError, ValueError...), wrapped as ModelLoadError.
    full_loads = {"ok": 0, "refused": 0}
    for case, data in enumerate(parseable[:30]):
        (model / "saved_model.pb").write_bytes(data)
        try:
            freeze_signature(str(model), "serving_default")
            full_loads["ok"] += 1
        except ToolkitError as error:
            full_loads["refused"] += 1
            if "\n" in str(error):
                unexpected.append((f"full load {case}", "message is not one line", str(error)))
        except BaseException as error:  # noqa: B902
            unexpected.append((f"full load {case}", type(error).__name__, str(error)[:300]))
    assert unexpected == []
    assert full_loads["ok"] and full_loads["refused"], full_loads


def test_keras_file_byte_mutations(tiny_keras_file, tmp_path, private_tempdir):
    original = tiny_keras_file.read_bytes()
    path = tmp_path / "model.keras"
    rng = random.Random(SEED)
    unexpected, outcomes = [], []
    for case in range(150):
        path.write_bytes(mutate(original, rng))
        outcomes.append(load_outcome(path, unexpected, case))
    assert unexpected == []
    assert _left_behind(private_tempdir) == []
    assert any("is not a valid .keras file (not a zip archive" in o for o in outcomes)
    assert any("is truncated or corrupt (Bad CRC-32" in o for o in outcomes)


def _left_behind(directory):
    """What is left in ``directory``, minus TF autograph's own cache modules (TF removes them at exit)."""
    return [name for name in os.listdir(directory) if not name.startswith("__autograph_generated_file")]


@pytest.mark.slow
def test_keras_member_mutations_reach_keras(tiny_keras_file, tmp_path, private_tempdir):
    """Valid zips whose config.json, metadata.json or weights are corrupted: Keras's own parsing errors."""
    with zipfile.ZipFile(tiny_keras_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    path = tmp_path / "model.keras"
    rng = random.Random(SEED)
    unexpected = []
    for case in range(60):
        damaged = rng.choice(sorted(members))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, mutate(data, rng) if name == damaged else data)
        path.write_bytes(buffer.getvalue())
        load_outcome(path, unexpected, (case, damaged))
    assert unexpected == []
    assert _left_behind(private_tempdir) == []
