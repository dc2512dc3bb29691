"""TensorFlow's ``Fingerprint64`` (farmhash) of bytes: of one buffer, or of a stream whose length is known.

``fingerprint.pb``'s ``saved_model_checksum`` is ``Fingerprint64`` of the whole
``saved_model.pb``. TensorFlow only hashes a buffer holding all of it, which for a model with
its weights as graph constants means the model's size in memory once more. ``Fingerprint64``
is farmhash's ``farmhashna::Hash64`` (tensorflow/tsl/platform/fingerprint.h → farmhash.cc):
past 64 bytes it walks the input in 64-byte blocks carrying a 56-byte state, and only its
last step depends on the length and the final 64 bytes. So, the length known up front, it can
be computed as the bytes go by: ``StreamingFingerprint64``. The block loop runs as one
XLA-compiled ``while_loop`` per 4 MB (Python alone took ~0.2 s per MB; this ~1 ms), the
few steps around it in Python.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

_MASK = (1 << 64) - 1
_K0, _K1, _K2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
_SEED = 81
_BATCH_BLOCKS = 65536  # 4 MB of 64-byte blocks per compiled loop call


def fingerprint64(data) -> int:
    """TensorFlow's ``Fingerprint64`` (farmhash) of ``data`` (bytes or a scalar string tensor), in one piece.

    TF's Python API has no op returning it whole; ``to_hash_bucket_fast`` returns it modulo
    any bucket count: modulo 2**62 gives the low 62 bits, modulo 5 picks the top two.
    """
    import tensorflow as tf

    low = int(tf.strings.to_hash_bucket_fast(data, 2 ** 62).numpy())
    residue = int(tf.strings.to_hash_bucket_fast(data, 5).numpy())
    return next(candidate for candidate in (low + top * 2 ** 62 for top in range(4)) if candidate % 5 == residue)


def _rotate(value: int, shift: int) -> int:
    return ((value >> shift) | (value << (64 - shift))) & _MASK


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def _hash_len16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & _MASK
    a ^= a >> 47
    b = ((v ^ a) * mul) & _MASK
    b ^= b >> 47
    return (b * mul) & _MASK


def _weak_hash_len32(w, x, y, z, a, b):
    a = (a + w) & _MASK
    b = _rotate((b + a + z) & _MASK, 21)
    c = a
    a = (a + x + y) & _MASK
    b = (b + _rotate(a, 44)) & _MASK
    return (a + z) & _MASK, (b + c) & _MASK


_COMPILED = []


def _block_loop():
    """The compiled loop: (state [x, y, z, v0, v1, w0, w1], blocks [N, 8] uint64, count) → state after ``count`` blocks."""
    if _COMPILED:
        return _COMPILED[0]
    import tensorflow as tf

    uint64 = tf.uint64
    k1 = tf.constant(_K1, uint64)

    def rotate(value, shift):
        return tf.bitwise.bitwise_or(tf.bitwise.right_shift(value, tf.constant(shift, uint64)),
                                     tf.bitwise.left_shift(value, tf.constant(64 - shift, uint64)))

    def weak(w, x, y, z, a, b):
        a = a + w
        b = rotate(b + a + z, 21)
        c = a
        a = a + x + y
        b = b + rotate(a, 44)
        return a + z, b + c

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([7], uint64),
                                                     tf.TensorSpec([_BATCH_BLOCKS, 8], uint64),
                                                     tf.TensorSpec([], tf.int32)])
    def loop(state, blocks, count):
        def body(index, x, y, z, v0, v1, w0, w1):  # farmhashna::Hash64's loop, one 64-byte block
            fetch = blocks[index]
            x = rotate(x + y + v0 + fetch[1], 37) * k1
            y = rotate(y + v1 + fetch[6], 42) * k1
            x = tf.bitwise.bitwise_xor(x, w1)
            y = y + v0 + fetch[5]
            z = rotate(z + w0, 33) * k1
            v0, v1 = weak(fetch[0], fetch[1], fetch[2], fetch[3], v1 * k1, x + w0)
            w0, w1 = weak(fetch[4], fetch[5], fetch[6], fetch[7], z + w1, y + fetch[2])
            return index + 1, z, y, x, v0, v1, w0, w1  # x and z swap

        final = tf.while_loop(lambda index, *_: index < count, body,
                              [tf.constant(0)] + [state[k] for k in range(7)])
        return tf.stack(final[1:])

    _COMPILED.append(loop)
    return loop


def streaming_available() -> bool:
    """Whether this TensorFlow compiles the block loop (XLA's CPU backend: in every standard build).

    Compiles it once on a batch of zeros; False (the caller hashes the whole file instead)
    when TensorFlow refuses.
    """
    import tensorflow as tf

    try:
        _block_loop()(tf.zeros([7], tf.uint64), tf.zeros([_BATCH_BLOCKS, 8], tf.uint64), tf.constant(1))
    except (tf.errors.OpError, NotImplementedError):
        return False
    return True


class StreamingFingerprint64:
    """``Fingerprint64`` of ``length`` bytes given in pieces of any size (``update``), then ``digest()``.

    Holds at most 4 MB of them at a time. For ``length`` ≤ 64 bytes the pieces are kept and
    hashed at once (farmhash's short-input paths).
    """

    def __init__(self, length: int):
        self.length = length
        self._seen = 0
        self._loop_blocks = (length - 1) // 64 if length > 64 else 0  # blocks the loop takes; the rest is the tail
        self._done_blocks = 0
        self._batch = np.empty(_BATCH_BLOCKS * 64, dtype=np.uint8)
        self._filled = 0
        self._state: Optional[np.ndarray] = None
        self._tail = b""  # the last 64 bytes seen
        self._short: List[bytes] = []

    def update(self, piece) -> None:
        data = memoryview(piece).cast("B")
        if self._seen + len(data) > self.length:
            raise ValueError(f"more than the {self.length} bytes announced")
        self._seen += len(data)
        if self.length <= 64:
            self._short.append(bytes(data))
            return
        self._tail = (self._tail + bytes(data[-64:]))[-64:]
        position = 0
        while position < len(data):
            loop_bytes_left = (self._loop_blocks - self._done_blocks) * 64 - self._filled
            if loop_bytes_left <= 0:
                return  # past the loop: only the tail matters
            take = min(len(data) - position, len(self._batch) - self._filled, loop_bytes_left)
            self._batch[self._filled:self._filled + take] = np.frombuffer(data[position:position + take], np.uint8)
            self._filled += take
            position += take
            if self._filled == len(self._batch) or take == loop_bytes_left:
                self._run_batch()

    def _run_batch(self) -> None:
        import tensorflow as tf

        count = self._filled // 64
        if not count:
            return
        if self._state is None:  # the state before the first block (it reads the first 8 bytes)
            y = (_SEED * _K1 + 113) & _MASK
            z = (_shift_mix((y * _K2 + 113) & _MASK) * _K2) & _MASK
            x = (_SEED * _K2 + int(self._batch[:8].view("<u8")[0])) & _MASK
            self._state = np.array([x, y, z, 0, 0, 0, 0], dtype=np.uint64)
        blocks = self._batch.view("<u8").reshape(_BATCH_BLOCKS, 8)
        self._state = _block_loop()(tf.constant(self._state), tf.constant(blocks), tf.constant(count, tf.int32)).numpy()
        self._done_blocks += count
        self._filled = 0

    def digest(self) -> int:
        if self._seen != self.length:
            raise ValueError(f"{self._seen} of the {self.length} bytes announced were given")
        if self.length <= 64:
            return fingerprint64(b"".join(self._short))
        self._run_batch()
        x, y, z, v0, v1, w0, w1 = (int(value) for value in self._state)
        tail = [int(value) for value in np.frombuffer(self._tail, "<u8")]
        mul = (_K1 + ((z & 0xFF) << 1)) & _MASK
        w0 = (w0 + ((self.length - 1) & 63)) & _MASK
        v0 = (v0 + w0) & _MASK
        w0 = (w0 + v0) & _MASK
        x = (_rotate((x + y + v0 + tail[1]) & _MASK, 37) * mul) & _MASK
        y = (_rotate((y + v1 + tail[6]) & _MASK, 42) * mul) & _MASK
        x ^= (w1 * 9) & _MASK
        y = (y + v0 * 9 + tail[5]) & _MASK
        z = (_rotate((z + w0) & _MASK, 33) * mul) & _MASK
        v0, v1 = _weak_hash_len32(*tail[0:4], (v1 * mul) & _MASK, (x + w0) & _MASK)
        w0, w1 = _weak_hash_len32(*tail[4:8], (z + w1) & _MASK, (y + tail[2]) & _MASK)
        z, x = x, z
        return _hash_len16((_hash_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z) & _MASK,
                           (_hash_len16(v1, w1, mul) + x) & _MASK, mul)
