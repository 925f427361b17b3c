"""What a spec may cost before convspec refuses it: specs are shared, so every input is untrusted.

Each bound is checked before the work it protects: the file's size before it is read, the
nesting depth from the parser's events before the composer recurses, the number of layers while
expanding, the input's size before expanding, and each output's size and the total parameters
while inferring, so nothing allocates the weights of a runaway spec. The CLI raises most bounds
with a flag (`--max-params` and friends).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    spec_bytes: int = 2_000_000  # a spec file; the largest bundled one is about 5 KB
    depth: int = 64  # nesting of YAML mappings and lists
    layers: int = 50_000  # layers after blocks and repeats are expanded
    params: int = 2_000_000_000  # 8 GB of float32 weights; the largest bundled spec has 144 M
    # `extends:` and `labels:` may name files only in the spec's own folder (or below it) and
    # in the bundled library, unless this is set: a shared spec cannot read /etc/passwd.
    outside_paths: bool = False

    @property
    def expanded_items(self) -> int:
        """Items expanded, skipped ones included: they cost time but make no layer."""
        return 4 * self.layers


DEFAULT = Limits()
MAX_ELEMENTS = 2**34  # one sample's tensor, the input's and every layer's output: 64 GiB of float32
MAX_DEPTH = 100  # so the recursive passes (jsonschema's: 3 frames a level; expansion's: 5) fit Python's stack
# `run --input` (runtime/inputs.py): the input as the float32 the model is fed, known from the
# file's header before it is read, so a 300 KB .npz cannot claim a batch of 70,000. 256 MiB is
# 65,536 LeNet samples (--batch's cap), or 445 images of 3x224x224; `--max-input-bytes` raises it.
INPUT_BYTES = 2**28
