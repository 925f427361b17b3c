"""The benchmark suite (bench/suite.py) in its quick mode, in-process: the report's structure.
Its figures are never asserted: they are a shared machine's, and noisy."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_suite():
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "bench" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tables(text: str) -> dict:
    """{section title: (header cells, [row cells])} of the Markdown report."""
    found, section = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("|") and section:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if section not in found:
                found[section] = (cells, [])
            elif not set("".join(cells)) <= set("-:"):  # not the alignment rule
                found[section][1].append(cells)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("with_torch", [False, True], ids=["convspec-only", "torch"])
def test_quick_report_structure(tmp_path, capsys, with_torch):
    if with_torch:
        pytest.importorskip("torch", reason="torch is not installed: the torch engines are skipped")
    out = tmp_path / "bench.md"
    argv = ["--quick", "--models", "googlenet", "-o", str(out)] + ([] if with_torch else ["--no-torch"])
    assert load_suite().main(argv) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    assert re.search(r"^- CPU: .+AVX2 (yes|no).+AMX (yes|no)", text, re.M)
    assert re.search(r"^- peak: \d+\.\d GFLOP/s", text, re.M)
    assert re.search(r"^- load average \(1 min\): [\d.]+ before, [\d.]+ after$", text, re.M)
    assert "Pending (not bundled yet): mobilenet_v2, efficientnet_b0." in text

    found = tables(text)
    assert list(found) == ["Inference", "Compile"]
    header, rows = found["Inference"]
    assert header == ["model", "batch", "engine", "runs", "median ms", "samples/s", "GFLOP/s", "% of peak",
                      "time / convspec"]
    engines = ["convspec", "torch.onnx", "eager"] if with_torch else ["convspec"]
    assert [row[:3] for row in rows] == [["googlenet", "1", e] for e in engines]
    for row in rows:
        assert len(row) == len(header)
        assert int(row[3]) >= 2  # the quick plan's runs
        for cell in row[4:]:
            float(cell)
    assert rows[0][-1] == "1.00"  # convspec against itself

    header, rows = found["Compile"]
    assert header == ["what", "wall s", "in-process s", "peak RSS MB", "output MB", "peak / output"]
    assert re.fullmatch(r"`convspec summary` x \d+ bundled specs, in-process, one fresh process", rows[0][0])
    assert rows[1][0] == "`convspec compile googlenet`"
    assert all(len(row) == len(header) for row in rows)
    for cell in rows[0][1:4] + rows[1][1:2] + rows[1][3:]:
        float(cell)
