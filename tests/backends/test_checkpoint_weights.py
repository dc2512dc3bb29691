"""Weights the conversion does not change go from the source checkpoint to the output file, never loaded.

What a user would see break: a weight written with other bytes than the source's, a weight a
fold changed written with its old value, a checkpoint in several shards (or with a sliced
variable) misread, a fingerprint TensorFlow disagrees with.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.every_cpu import environment_offering_bf16, run_serving_default
from tests.extras import needs_streaming
from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends.cpu import farmhash, savedmodel_stream
from tftrt_toolkit.backends.frozen import held_weights
from tftrt_toolkit.backends.frozen.checkpoint_bundle import CheckpointBundle, CheckpointSlice, read_index
from tftrt_toolkit.backends.frozen.freeze import freeze_signature
from tftrt_toolkit.errors import ModelLoadError


def _saved_constants(saved_model_dir):
    """Every Const of the saved functions with its tensor_content bytes, by shape."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    found = {}
    for function in saved_model.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "Const" and node.attr["value"].tensor.tensor_content:
                shape = tuple(d.size for d in node.attr["value"].tensor.tensor_shape.dim)
                found.setdefault(shape, []).append(node.attr["value"].tensor.tensor_content)
    return found


def _fingerprints(saved_model_dir):
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    with open(os.path.join(saved_model_dir, "fingerprint.pb"), "rb") as handle:
        stored = fingerprint_pb2.FingerprintDef.FromString(handle.read())
    return stored, fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(saved_model_dir))


class _TwoLayers(tf.Module):
    """Two dense layers without biases or BatchNorm: no fold changes a weight."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(7)
        self.first = tf.Variable(rng.standard_normal((96, 256)).astype(np.float32), name="first")
        self.second = tf.Variable(rng.standard_normal((256, 128)).astype(np.float32), name="second")

    @tf.function(input_signature=[tf.TensorSpec([None, 96], tf.float32, name="features")])
    def serve(self, features):
        return {"scores": tf.matmul(tf.nn.relu(tf.matmul(features, self.first)), self.second)}


def _save_in_shards(path, max_shard_size):
    module = _TwoLayers()
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=max_shard_size))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve}, options=options)
    return path


@pytest.fixture(scope="module")
def sharded_saved_model(tmp_path_factory):
    """A SavedModel whose checkpoint is in two data files: the 96 KB weight whole in the first, the
    128 KB one split into slices to fill the shards (what TF's MaxShardSizePolicy does)."""
    return _save_in_shards(str(tmp_path_factory.mktemp("sharded") / "two_layers"), 140 * 1024)


@pytest.fixture(scope="module")
def split_saved_model(tmp_path_factory):
    """The same model with shards of at most 64 KB: each weight is split into slices across files."""
    return _save_in_shards(str(tmp_path_factory.mktemp("split") / "two_layers"), 64 * 1024)


def _check_written_like_the_source(saved_model_dir, output_dir):
    reader = tf.train.load_checkpoint(_checkpoint_prefix(saved_model_dir))
    constants = _saved_constants(output_dir)
    for key, shape in (("first/.ATTRIBUTES/VARIABLE_VALUE", (96, 256)), ("second/.ATTRIBUTES/VARIABLE_VALUE", (256, 128))):
        assert constants[shape] == [reader.get_tensor(key).tobytes()]
    features = np.random.default_rng(0).standard_normal((3, 96)).astype(np.float32)
    source = tf.saved_model.load(saved_model_dir).signatures["serving_default"](features=features)["scores"]
    converted = tf.saved_model.load(output_dir).signatures["serving_default"](features=features)["scores"]
    np.testing.assert_allclose(converted.numpy(), source.numpy(), rtol=1e-5, atol=1e-4)
    stored, recomputed = _fingerprints(output_dir)
    assert stored == recomputed


def _checkpoint_prefix(saved_model_dir):
    return os.path.join(str(saved_model_dir), "variables", "variables")


@needs_streaming
def test_the_index_reader_finds_every_tensor_where_tensorflow_reads_it(tiny_saved_model, sharded_saved_model):
    for model in (tiny_saved_model, sharded_saved_model):
        bundle = CheckpointBundle.of_saved_model(str(model))
        reader = tf.train.load_checkpoint(_checkpoint_prefix(model))
        keys = [key for key in reader.get_variable_to_shape_map() if key != "_CHECKPOINTABLE_OBJECT_GRAPH"]
        assert keys and set(keys) <= set(bundle.entries)
        for key in keys:
            where = bundle.slice(key)
            if where is None:  # only a weight split into slices is not one run of bytes
                assert bundle.entries[key].slices, key
                continue
            expected = reader.get_tensor(key)
            assert where.read().dtype == expected.dtype and np.array_equal(where.read(), expected), key
            assert b"".join(where.chunks(chunk_bytes=1000)) == expected.tobytes(), key
    first = CheckpointBundle.of_saved_model(sharded_saved_model).slice("first/.ATTRIBUTES/VARIABLE_VALUE")
    assert first.path.endswith("variables.data-00000-of-00002")


@needs_streaming
def test_weights_from_a_checkpoint_in_two_shards_are_byte_identical_to_the_source(sharded_saved_model, tmp_path):
    frozen = freeze_signature(sharded_saved_model, "serving_default")
    kinds = sorted((w.shape, type(w).__name__) for w in frozen.held.sources.values())
    assert kinds == [((96, 256), "CheckpointSlice"), ((256, 128), "ndarray")]  # whole: streamed; split: an array
    result = convert(sharded_saved_model, str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    _check_written_like_the_source(sharded_saved_model, result.path)


@needs_streaming
def test_weights_split_into_slices_across_shards_are_held_as_arrays_and_written_correctly(split_saved_model, tmp_path):
    bundle = CheckpointBundle.of_saved_model(split_saved_model)
    assert bundle.entries["first/.ATTRIBUTES/VARIABLE_VALUE"].slices
    assert bundle.slice("first/.ATTRIBUTES/VARIABLE_VALUE") is None
    frozen = freeze_signature(split_saved_model, "serving_default")
    assert len(frozen.held) == 2 and all(isinstance(w, np.ndarray) for w in frozen.held.sources.values())
    result = convert(split_saved_model, str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    _check_written_like_the_source(split_saved_model, result.path)


@needs_streaming
def test_a_weight_a_fold_changed_is_written_with_its_new_value(tiny_saved_model, tmp_path, monkeypatch, random_images):
    # Both convolution kernels are held from the checkpoint at freeze time; BatchNorm folding then
    # rewrites the first one (3x3x3x8, followed by BN); the second (3x3x8x16) is copied unchanged.
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
    frozen = freeze_signature(str(tiny_saved_model), "serving_default")
    kernels = {w.shape: w for w in frozen.held.sources.values() if w.shape in {(3, 3, 3, 8), (3, 3, 8, 16)}}
    assert len(kernels) == 2
    assert all(isinstance(w, CheckpointSlice) for w in kernels.values())
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    assert "fold_batchnorm" in result.metadata["conversion_summary"]["stages_that_changed_the_graph"]
    written = _saved_constants(result.path)
    assert written[(3, 3, 8, 16)] == [kernels[(3, 3, 8, 16)].read().tobytes()]
    assert len(written[(3, 3, 3, 8)]) == 1 and written[(3, 3, 3, 8)][0] != kernels[(3, 3, 3, 8)].read().tobytes()
    source = tf.saved_model.load(str(tiny_saved_model)).signatures["serving_default"]
    converted = tf.saved_model.load(result.path).signatures["serving_default"]
    np.testing.assert_allclose(converted(images=tf.constant(random_images))["probabilities"].numpy(),
                               source(images=tf.constant(random_images))["probabilities"].numpy(), atol=1e-4, rtol=0)


@needs_streaming
def test_a_sliced_variable_is_not_streamed(tmp_path):
    # TF1 partitioned variables are saved as slices of one entry: not one run of bytes to copy.
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("split", shape=[64, 8], partitioner=tf.compat.v1.fixed_size_partitioner(2))
        tf.compat.v1.get_variable("whole", shape=[64, 8])
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "model"))
    bundle = CheckpointBundle(prefix)
    assert bundle.entries["split"].slices and bundle.slice("split") is None
    whole = tf.train.load_checkpoint(prefix).get_tensor("whole")
    assert np.array_equal(bundle.slice("whole").read(), whole)


def test_without_a_readable_index_the_weights_are_restored_and_held_as_arrays(tiny_saved_model, tmp_path,
                                                                             monkeypatch, random_images):
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
    monkeypatch.setattr(CheckpointBundle, "of_saved_model", classmethod(lambda cls, path: None))
    frozen = freeze_signature(str(tiny_saved_model), "serving_default")
    assert frozen.held and all(isinstance(w, np.ndarray) for w in frozen.held.sources.values())
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    source = tf.saved_model.load(str(tiny_saved_model)).signatures["serving_default"]
    converted = tf.saved_model.load(result.path).signatures["serving_default"]
    np.testing.assert_allclose(converted(images=tf.constant(random_images))["probabilities"].numpy(),
                               source(images=tf.constant(random_images))["probabilities"].numpy(), atol=1e-4, rtol=0)


def test_a_file_that_is_not_an_index_is_refused(tmp_path):
    (tmp_path / "bad.index").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="not a tensor bundle index"):
        read_index(str(tmp_path / "bad.index"))


@pytest.mark.parametrize("length", [1, 64, 65, 128, 129, 4 * 1024 * 1024 + 1, 9 * 1024 * 1024 + 77])
def test_the_streamed_fingerprint_is_tensorflows_in_any_pieces(length):
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    for cuts in ([], [1, 63, 64, 65], [length // 3, length // 2]):
        checksum = farmhash.StreamingFingerprint64(length)
        start = 0
        for cut in sorted({c for c in cuts if 0 < c < length}) + [length]:
            checksum.update(data[start:cut])
            start = cut
        assert checksum.digest() == farmhash.fingerprint64(data), (length, cuts)


def test_a_model_hashed_as_it_is_written_gets_tensorflows_fingerprint(sharded_saved_model, tmp_path, monkeypatch):
    monkeypatch.setattr(savedmodel_stream, "STREAMED_CHECKSUM_BYTES", 0)
    read_back, whole_hash = [], savedmodel_stream.fingerprint64

    def recording(data):
        if not isinstance(data, bytes):  # the written file, read back as one tensor
            read_back.append(data)
        return whole_hash(data)

    def must_not_parse(saved_model_dir):
        raise AssertionError("recomputed the fingerprint by parsing the whole saved_model.pb")

    monkeypatch.setattr(savedmodel_stream, "fingerprint64", recording)
    monkeypatch.setattr(savedmodel_stream, "_write_fingerprint_by_parsing", must_not_parse)
    result = convert(sharded_saved_model, str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    stored, recomputed = _fingerprints(result.path)
    assert stored == recomputed and stored.saved_model_checksum != 0
    assert not read_back


def test_without_the_compiled_hash_the_written_file_is_hashed_whole(sharded_saved_model, tmp_path, monkeypatch):
    monkeypatch.setattr(savedmodel_stream, "STREAMED_CHECKSUM_BYTES", 0)
    monkeypatch.setattr(farmhash, "streaming_available", lambda: False)
    result = convert(sharded_saved_model, str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    stored, recomputed = _fingerprints(result.path)
    assert stored == recomputed and stored.saved_model_checksum != 0


@needs_streaming
def test_a_weight_cast_from_the_checkpoint_in_chunks_equals_the_cast_of_the_whole(sharded_saved_model, monkeypatch):
    # bf16 conversions cast held weights; from the checkpoint that is done a chunk at a time.
    from tftrt_toolkit.backends.frozen import checkpoint_bundle

    monkeypatch.setattr(checkpoint_bundle, "CHUNK_BYTES", 1000)  # many chunks, not a multiple of the row size
    where = CheckpointBundle.of_saved_model(sharded_saved_model).slice("first/.ATTRIBUTES/VARIABLE_VALUE")
    whole = where.read()
    for dtype in (tf.bfloat16.as_numpy_dtype, np.float16):
        cast = held_weights.cast_to(where, dtype)
        assert cast.shape == whole.shape and cast.tobytes() == whole.astype(dtype).tobytes()


@needs_streaming
def test_bf16_writes_each_weight_from_the_checkpoint_cast_once(tiny_saved_model, tmp_path, monkeypatch, random_images):
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
    # On every CPU: where bf16 is not offered, past the capability check, run in a child as the model needs.
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="bf16"),
                     env=environment_offering_bf16())
    reader = tf.train.load_checkpoint(_checkpoint_prefix(tiny_saved_model))
    kernel = next(reader.get_tensor(key) for key, shape in reader.get_variable_to_shape_map().items()
                  if shape == [3, 3, 8, 16])
    # The unfolded 3x3x8x16 kernel is written as bf16: the checkpoint's values rounded once.
    assert _saved_constants(result.path)[(3, 3, 8, 16)] == [kernel.astype(tf.bfloat16.as_numpy_dtype).tobytes()]
    source = tf.saved_model.load(str(tiny_saved_model)).signatures["serving_default"]
    converted = run_serving_default(result.path, {"images": random_images})["probabilities"]
    np.testing.assert_allclose(converted, source(images=tf.constant(random_images))["probabilities"].numpy(),
                               atol=0.05, rtol=0)


@needs_streaming
def test_a_streamed_weight_with_flipped_bytes_is_refused_and_nothing_is_written(sharded_saved_model, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(sharded_saved_model, model)
    where = CheckpointBundle.of_saved_model(str(model)).slice("first/.ATTRIBUTES/VARIABLE_VALUE")
    raw = bytearray(open(where.path, "rb").read())
    middle = where.offset + where.nbytes // 2
    raw[middle:middle + 16] = bytes(b ^ 0xFF for b in raw[middle:middle + 16])
    open(where.path, "wb").write(bytes(raw))  # same size: only the checksum tells
    with pytest.raises(ModelLoadError, match="are missing, truncated or corrupt .Checksum does not match"):
        convert(str(model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    assert sorted(os.listdir(tmp_path)) == ["model"]
