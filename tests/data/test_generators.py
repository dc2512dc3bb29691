"""calibration_input_fn / build_input_fn: the callables TF-TRT's convert() and build() iterate."""

import io
import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data import build_input_fn, calibration_input_fn, open_source, parse_build_shapes
from tftrt_toolkit.errors import ConfigError, DataError


@pytest.fixture
def mixed_signature(signature):
    """Three inputs of three dtypes, in TF's positional (sorted-name) order."""
    return signature(
        ("attention_mask", (None, 16), "int32"),
        ("image", (None, 8, 8, 3), "float32"),
        ("input_ids", (None, 16), "int64"),
    )


@pytest.fixture
def mixed_npz(tmp_path, mixed_signature):
    rng = np.random.default_rng(0)
    path = tmp_path / "mixed.npz"
    np.savez(
        path,
        input_ids=rng.integers(0, 50, size=(10, 16)),
        image=rng.uniform(size=(10, 8, 8, 3)).astype(np.float32),
        attention_mask=np.ones((10, 16), np.int32),
    )
    return path


def _assert_tuples_in_signature_order(inputs, signature, batch_size):
    for item in inputs:
        assert isinstance(item, tuple) and len(item) == len(signature.inputs)
        for array, info in zip(item, signature.inputs):
            assert isinstance(array, np.ndarray)
            assert array.dtype == info.np_dtype, info.name
            assert array.shape == (batch_size,) + tuple(info.shape[1:]), info.name


def test_calibration_yields_tuples_in_signature_order(mixed_npz, mixed_signature):
    source = open_source(mixed_npz, mixed_signature)
    calibration = calibration_input_fn(source, batch_size=3, steps=3)
    batches = list(calibration())
    assert len(batches) == 3
    _assert_tuples_in_signature_order(batches, mixed_signature, 3)
    with np.load(mixed_npz) as stored:
        np.testing.assert_array_equal(batches[0][2], stored["input_ids"][:3])
        np.testing.assert_array_equal(batches[2][1], stored["image"][6:9])
    assert (calibration.samples_used, calibration.batches_used) == (9, 3)


def test_calibration_can_be_called_again_and_gives_the_same_data(image_dir, image_signature):
    # TF-TRT calls it a second time when calibration is deferred to build().
    calibration = calibration_input_fn(open_source(image_dir, image_signature(), preprocess="tf"), batch_size=2, steps=2)
    first, second = list(calibration()), list(calibration())
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
    assert calibration.samples_used == 4


def test_calibration_callable_is_truthy(image_dir, image_signature):
    # TF-TRT checks `if not calibration_input_fn`.
    assert bool(calibration_input_fn(open_source(image_dir, image_signature()), batch_size=1, steps=1))
    assert bool(build_input_fn(image_signature(), "1"))


def test_calibration_logs_the_samples_used(image_dir, image_signature, caplog):
    calibration = calibration_input_fn(open_source(image_dir, image_signature()), batch_size=2, steps=2)
    with caplog.at_level(logging.INFO, logger="tftrt_toolkit.data"):
        list(calibration())
    assert any("calibration used 4 samples (2 batches of 2)" in record.getMessage() for record in caplog.records)


def test_too_few_samples_says_how_many_there_are(image_dir, image_signature):
    source = open_source(image_dir, image_signature())
    with pytest.raises(DataError) as error:
        calibration_input_fn(source, batch_size=2, steps=4)
    assert str(error.value) == (
        f"calibration needs 8 samples (calibration_steps 4 x batch_size 2) but directory {image_dir} has 5; "
        "add data or lower --calibration_steps to 2"
    )
    with pytest.raises(DataError, match="has 5; add data or lower --batch_size to at most 5"):
        calibration_input_fn(source, batch_size=8, steps=1)


def test_running_short_because_of_undecodable_files_fails_mid_run(tmp_path, photo, image_signature):
    root = tmp_path / "data"
    root.mkdir()
    for index in range(3):
        Image.fromarray(photo).resize((40, 30)).save(root / f"good_{index}.jpg")
    (root / "bad.jpg").write_bytes(b"")
    calibration = calibration_input_fn(open_source(root, image_signature()), batch_size=2, steps=2)  # 4 files: enough on paper
    with pytest.raises(DataError) as error:
        list(calibration())
    assert "calibration needs 4 samples" in str(error.value) and "only 3 could be read" in str(error.value)
    assert "lower --calibration_steps to 1" in str(error.value)


def test_calibration_with_unbounded_synthetic_data(mixed_signature):
    calibration = calibration_input_fn(open_source("synthetic", mixed_signature), batch_size=4, steps=5)
    batches = list(calibration())
    assert len(batches) == 5
    _assert_tuples_in_signature_order(batches, mixed_signature, 4)


@pytest.mark.parametrize("steps, batch_size", [(0, 1), (1, 0), (-2, 4), (1.5, 2)])
def test_calibration_refuses_nonpositive_counts(image_dir, image_signature, steps, batch_size):
    with pytest.raises(ConfigError, match="must be a positive integer"):
        calibration_input_fn(open_source(image_dir, image_signature()), batch_size=batch_size, steps=steps)


def test_calibration_checks_a_fixed_batch_dim_up_front(image_dir, image_signature):
    with pytest.raises(DataError, match="takes batches of exactly 1; use --batch_size=1"):
        calibration_input_fn(open_source(image_dir, image_signature(batch=1)), batch_size=2, steps=1)


def test_calibration_bar_on_a_terminal_when_asked(image_dir, image_signature, monkeypatch):
    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", stream)
    calibration = calibration_input_fn(open_source(image_dir, image_signature()), batch_size=2, steps=2, progress=True)
    assert len(list(calibration())) == 2
    drawn = stream.getvalue()
    # tqdm redraws at most every 0.1 s, so a fast run may show only its start: "calibration: 0/2 [...batch/s]".
    assert "calibration" in drawn and "/2 [" in drawn and "batch" in drawn


def test_calibration_draws_nothing_unless_asked_or_watched(image_dir, image_signature, capsys):
    list(calibration_input_fn(open_source(image_dir, image_signature()), batch_size=2, steps=2)())
    # Asked, but stderr is captured (not a terminal, not Jupyter): logs and CI stay clean.
    list(calibration_input_fn(open_source(image_dir, image_signature()), batch_size=2, steps=2, progress=True)())
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- build_input_fn


@pytest.mark.parametrize("shapes", ["1x32x32x3,8x32x32x3", "1,8", [1, 8], [(1, 32, 32, 3), (8, 32, 32, 3)], ((1,), (8,))])
def test_build_inputs_for_each_shape(image_signature, shapes):
    signature = image_signature()
    build = build_input_fn(signature, shapes)
    runs = list(build())
    assert [tuple(a.shape for a in run) for run in runs] == [((1, 32, 32, 3),), ((8, 32, 32, 3),)]
    assert all(isinstance(run, tuple) and run[0].dtype == np.float32 for run in runs)
    assert build.shapes == ({"images": (1, 32, 32, 3)}, {"images": (8, 32, 32, 3)})


def test_build_inputs_for_a_multi_input_model(mixed_signature):
    runs = list(build_input_fn(mixed_signature, "2,4")())
    assert len(runs) == 2
    _assert_tuples_in_signature_order(runs[:1], mixed_signature, 2)
    _assert_tuples_in_signature_order(runs[1:], mixed_signature, 4)


def test_one_full_shape_fits_every_input_of_a_sequence_model(signature):
    bert = signature(("input_ids", (None, None), "int32"), ("input_mask", (None, None), "int32"))
    runs = list(build_input_fn(bert, "1x128,8x384")())
    assert [tuple(a.shape for a in run) for run in runs] == [((1, 128), (1, 128)), ((8, 384), (8, 384))]
    assert all(a.dtype == np.int32 for run in runs for a in run)


def test_build_batch_sizes_with_dynamic_dims_need_input_shape(signature):
    dynamic = signature(("images", (None, None, None, 3), "float32"))
    with pytest.raises(DataError, match="--input_shape=HxW"):
        build_input_fn(dynamic, "1,8")
    runs = list(build_input_fn(dynamic, "1,8", input_shape="64x64")())
    assert [run[0].shape for run in runs] == [(1, 64, 64, 3), (8, 64, 64, 3)]


def test_build_shape_that_does_not_fit_an_input(image_signature, mixed_signature):
    with pytest.raises(DataError, match=r"build shape 1x224x224x3 does not fit input 'images' of shape \?x32x32x3"):
        build_input_fn(image_signature(), "1x224x224x3")
    with pytest.raises(DataError, match="does not fit input 'attention_mask'"):
        build_input_fn(mixed_signature, "1x8x8x3")


def test_build_batch_size_against_a_fixed_batch(image_signature):
    with pytest.raises(DataError, match="build batch size 8 does not fit input 'images', which takes batches of exactly 1"):
        build_input_fn(image_signature(batch=1), "1,8")


@pytest.mark.parametrize("bad", ["", "1,,x", "8x0x3", "224 by 224", [], [0]])
def test_malformed_build_shapes(image_signature, bad):
    with pytest.raises(DataError, match="build"):
        build_input_fn(image_signature(), bad)


def test_parse_build_shapes():
    assert parse_build_shapes("1, 8 16") == (1, 8, 16)
    assert parse_build_shapes("1x224x224x3,4") == ((1, 224, 224, 3), 4)


def test_build_inputs_are_the_same_on_every_call(mixed_signature):
    build = build_input_fn(mixed_signature, "2")
    first, second = next(build()), next(build())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_build_refuses_string_inputs(signature):
    with pytest.raises(DataError, match="takes strings"):
        build_input_fn(signature(("text", (None,), "string")), "1")


# --------------------------------------------------------------------------- the TensorFlow side of the contract


def test_importing_the_data_package_does_not_import_tensorflow():
    code = "import sys, tftrt_toolkit.data; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_tf_trt_turns_each_yielded_tuple_into_positional_tensors_of_the_signature(tmp_path, mixed_npz, mixed_signature):
    """Feed our tuples through TF-TRT's own _convert_to_tensor into a function with the signature's flat inputs."""
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.compiler.tensorrt import trt_convert

    specs = [tf.TensorSpec(info.shape, tf.as_dtype(info.dtype), name=info.name) for info in mixed_signature.inputs]
    seen = []

    @tf.function(input_signature=specs)
    def converted_func(attention_mask, image, input_ids):
        return tf.reduce_sum(tf.cast(attention_mask, tf.float32)) + tf.reduce_sum(image) + tf.reduce_sum(tf.cast(input_ids, tf.float32))

    for fn in (
        calibration_input_fn(open_source(mixed_npz, mixed_signature), batch_size=2, steps=2),
        build_input_fn(mixed_signature, "1,4"),
    ):
        for inp in fn():  # exactly what TrtGraphConverterV2._execute_calibration / build() do
            args, kwargs = trt_convert._convert_to_tensor(inp)
            args = list(args)
            assert kwargs == {}
            seen.append([(tuple(a.shape), a.dtype.name) for a in args])
            converted_func(*args)
    assert seen[0] == [((2, 16), "int32"), ((2, 8, 8, 3), "float32"), ((2, 16), "int64")]
    assert seen[3] == [((4, 16), "int32"), ((4, 8, 8, 3), "float32"), ((4, 16), "int64")]


def test_batches_run_through_a_real_saved_model(tiny_saved_model, image_dir, image_signature):
    """A predict-style loop: the tiny CNN's serving signature accepts our batches as keyword tensors."""
    tf = pytest.importorskip("tensorflow")
    loaded = tf.saved_model.load(str(tiny_saved_model))
    serving = loaded.signatures["serving_default"]
    (name, spec), = serving.structured_input_signature[1].items()
    signature = image_signature(name=name)
    assert tuple(spec.shape) == (None, 32, 32, 3)
    rows = 0
    for batch in open_source(image_dir, signature, preprocess="tf").batches(2):
        outputs = serving(**{key: tf.constant(value) for key, value in batch.inputs.items()})
        (probabilities,) = outputs.values()
        assert probabilities.shape == (len(batch), 10)
        rows += len(batch)
    assert rows == 5
