"""A BERT-style text classifier, built and exported the way a Keras 3 user does it (issue 25).

    python benchmarks/models/transformer.py --size=issue25 --output=/tmp/transformer-4x256
    python benchmarks/models/transformer.py --size=bert_base --output=/tmp/bert-base-shaped

Token ids ``int32 [?, seq]`` → Embedding → ``layers`` encoder blocks (MultiHeadAttention +
residual + LayerNormalization, Dense(ffn, gelu) + Dense(d) + residual + LayerNormalization) →
mean over tokens → Dense(2, softmax); random weights (seeded), saved with ``model.export``.
The sizes:

  issue25     4 blocks, d=256, 4 heads, ffn 1024, seq 128, vocab 8000: 5.2 M parameters, the model of issue 25
  bert_base   12 blocks, d=768, 12 heads, ffn 3072, seq 128, vocab 30522: BERT-base's shape (~110 M parameters)
  tiny        1 block, d=16, 2 heads, ffn 16, seq 64, vocab 128: the tests' model. Attention's own two
              Einsums (scores and weighted sum, which int8 leaves in fp32) hold 57% of its multiply-adds,
              so its int8 conversion, which quantizes the projections and Dense layers, covers 43%: under
              half, refused unless allowed.

Benchmarks load this file by path (``benchmarks/peers.py --model=transformer:issue25``); the
tests load it the same way (``tests/conftest.py``). Synthetic token ids are in [0, 100): every
vocabulary here is larger.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Dict

PREFIX = "transformer:"


@dataclasses.dataclass(frozen=True)
class TransformerSize:
    layers: int
    d_model: int
    heads: int
    ffn: int
    seq_len: int
    vocab: int


SIZES: Dict[str, TransformerSize] = {
    "issue25": TransformerSize(layers=4, d_model=256, heads=4, ffn=1024, seq_len=128, vocab=8000),
    "bert_base": TransformerSize(layers=12, d_model=768, heads=12, ffn=3072, seq_len=128, vocab=30522),
    "tiny": TransformerSize(layers=1, d_model=16, heads=2, ffn=16, seq_len=64, vocab=128),
}


def build_transformer(size: TransformerSize, seed: int = 0):
    """The Keras 3 model of ``size``: inputs ``token_ids`` int32 [?, seq_len], output ``probabilities`` [?, 2]."""
    import keras

    keras.utils.set_random_seed(seed)
    token_ids = keras.Input(shape=(size.seq_len,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(size.vocab, size.d_model)(token_ids)
    for _ in range(size.layers):
        attention = keras.layers.MultiHeadAttention(num_heads=size.heads, key_dim=size.d_model // size.heads)(x, x)
        x = keras.layers.LayerNormalization()(x + attention)
        hidden = keras.layers.Dense(size.ffn, activation="gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(size.d_model)(hidden))
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    probabilities = keras.layers.Dense(2, activation="softmax", name="probabilities")(pooled)
    return keras.Model(token_ids, probabilities, name="transformer")


def export_transformer(size_name: str, output_dir: str, seed: int = 0) -> str:
    """Build the model ``size_name`` names (a key of SIZES) and ``model.export`` it to ``output_dir``; returns the dir."""
    if size_name not in SIZES:
        from tftrt_toolkit.errors import ConfigError

        raise ConfigError(f"unknown transformer size {size_name!r}; use one of: {', '.join(SIZES)}")
    build_transformer(SIZES[size_name], seed=seed).export(output_dir, verbose=False)
    return output_dir


def saved_model_for(model: str, work_dir: str) -> str:
    """``model`` itself, or for ``transformer:SIZE`` the SavedModel of that size exported under ``work_dir``."""
    if not model.startswith(PREFIX):
        return model
    size_name = model[len(PREFIX):]
    path = os.path.join(work_dir, f"transformer-{size_name}")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        export_transformer(size_name, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/models/transformer.py", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="issue25", choices=list(SIZES))
    parser.add_argument("--output", required=True, help="the SavedModel directory to write (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.path.exists(args.output):
        print(f"error: {args.output} exists; pass a new directory", file=sys.stderr)
        return 7
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    export_transformer(args.size, args.output, seed=args.seed)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
