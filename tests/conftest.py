import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests run against the checkout, installed or not


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """`compiled(name, seed=0)`: the path of a bundled spec compiled once per test run with seeded
    weights, through `convspec compile`'s own code. For the models that many tests share; the
    largest ones are compiled by the one test that needs them, in its own folder."""
    from cli import main

    folder = tmp_path_factory.mktemp("compiled")
    done = {}

    def get(name: str, seed: int = 0) -> Path:
        if (name, seed) not in done:
            out = folder / f"{name}-seed{seed}.onnx"
            assert main(["compile", name, "-o", str(out), "--seed", str(seed)]) == 0, name
            done[name, seed] = out
        return done[name, seed]

    return get
