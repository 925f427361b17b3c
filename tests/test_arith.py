"""compiler/arith.py: the pure window arithmetic, checked against hand-worked values and against
the published formulas (PyTorch's Conv2d/MaxPool2d output size, TensorFlow's 'same' padding,
PyTorch's adaptive-pool bins), written out independently here."""

from __future__ import annotations

from fractions import Fraction
import itertools
import math

import pytest

from compiler.arith import Window, output_size, output_sizes, pair, padding_arg, resolve, unread
from compiler import arith

# --------------------------------------------------------------------------------------------
# reference formulas (from the PyTorch and TensorFlow documentation, not from arith.py)


def torch_out(n, k, s, b, e, d=1, ceil_mode=False):
    """PyTorch: floor or ceil((n + pads - d*(k-1) - 1)/s) + 1; in ceil mode a last window that
    starts in the end padding is dropped ((out-1)*s >= n + pad_begin)."""
    q = Fraction(n + b + e - d * (k - 1) - 1, s)
    out = (math.ceil(q) if ceil_mode else math.floor(q)) + 1
    if ceil_mode and (out - 1) * s >= n + b:
        out -= 1
    return out


def torch_bins(n, out):
    """PyTorch adaptive pooling: bin i is [floor(i*n/out), ceil((i+1)*n/out))."""
    return [(math.floor(Fraction(i * n, out)), math.ceil(Fraction((i + 1) * n, out))) for i in range(out)]


# --------------------------------------------------------------------------------------------
# pair, padding_arg


@pytest.mark.parametrize("value, expected", [(3, (3, 3)), ([3, 5], (3, 5)), ((1, 2), (1, 2))])
def test_pair(value, expected):
    assert pair(value) == expected


@pytest.mark.parametrize("value, expected", [
    (0, (0, 0, 0, 0)),
    (2, (2, 2, 2, 2)),
    ([1, 3], (1, 3, 1, 3)),  # [h, w] -> top = bottom = h, left = right = w
    ([1, 2, 3, 4], (1, 2, 3, 4)),  # [top, left, bottom, right] kept in that order
    ("same", "same"),
    ("valid", "valid"),
])
def test_padding_arg(value, expected):
    assert padding_arg(value) == expected


# --------------------------------------------------------------------------------------------
# output_size


@pytest.mark.parametrize("n, k_eff, stride, begin, end, ceil_mode, expected", [
    (227, 11, 4, 0, 0, False, 55),  # AlexNet conv1: (227-11)/4+1
    (55, 3, 2, 0, 0, False, 27),  # AlexNet pool1: (55-3)/2+1
    (224, 7, 2, 3, 3, False, 112),  # ResNet conv1: (224+6-7)//2+1 = 111+1
    (32, 5, 1, 2, 2, False, 32),  # CS231n: (32+4-5)/1+1
    (7, 3, 1, 0, 0, False, 5),
    (7, 3, 2, 0, 0, False, 3),
    (7, 3, 3, 0, 0, False, 2),  # (7-3)/3+1 = 2.33 -> 2
    (7, 3, 3, 1, 1, False, 3),  # (7+2-3)/3+1 = 3
    (32, 5, 1, 0, 0, False, 28),  # a 3x3 at dilation 2 has k_eff 5
    (10, 3, 1, 1, 3, False, 12),  # asymmetric pads 1 + 3
    (112, 3, 2, 0, 0, False, 55),  # (112-3)/2 = 54.5 -> 54, +1
    (112, 3, 2, 0, 0, True, 56),  # ceil_mode: ceil(54.5) + 1; last window starts at 110 < 112
    (56, 3, 2, 0, 0, True, 28),  # GoogLeNet: ceil(26.5) + 1
    (13, 3, 2, 0, 0, True, 6),  # (13-3)/2 = 5 exactly: ceil = floor
    (5, 2, 2, 1, 1, True, 3),  # ceil(5/2)+1 = 4, but (4-1)*2 = 6 >= 5+1: window in the end pad dropped
    (6, 3, 2, 1, 1, True, 4),  # ceil(5/2)+1 = 4 and (4-1)*2 = 6 < 6+1: kept
    (3, 3, 1, 0, 0, False, 1),  # window exactly the input
    (2, 3, 1, 0, 0, False, 0),  # window larger than the input: 0
    (2, 3, 1, 0, 0, True, 0),
])
def test_output_size(n, k_eff, stride, begin, end, ceil_mode, expected):
    assert output_size(n, k_eff, stride, begin, end, ceil_mode) == expected


def test_output_size_matches_pytorch_formula_on_a_grid():
    # every window that fits in the padded input, pads <= half the kernel (PyTorch's pooling rule)
    checked = 0
    for n, k, s, d in itertools.product(range(1, 14), range(1, 6), range(1, 5), (1, 2)):
        e_k = d * (k - 1) + 1
        for b, e in itertools.product(range(0, k // 2 + 1), repeat=2):
            if e_k > n + b + e:
                continue
            for ceil_mode in (False, True):
                assert output_size(n, e_k, s, b, e, ceil_mode) == torch_out(n, k, s, b, e, d, ceil_mode), \
                    (n, k, s, d, b, e, ceil_mode)
                checked += 1
    assert checked > 1000


def test_output_size_floor_counts_window_positions():
    # brute force: starts 0, s, 2s, ... while the window ends inside the padded input
    for n, k, s, b, e in itertools.product(range(1, 12), range(1, 5), range(1, 4), range(3), range(3)):
        positions = len(range(0, n + b + e - k + 1, s))
        assert output_size(n, k, s, b, e) == positions, (n, k, s, b, e)


def test_output_sizes_uses_each_axis():
    win = Window(kernel=(3, 5), stride=(1, 2), dilation=(1, 1), begin=(0, 0), end=(0, 0))
    assert output_sizes((32, 48), win) == (30, 22)  # 32-3+1; (48-5)//2+1
    win = Window(kernel=(3, 3), stride=(1, 1), dilation=(2, 1), begin=(1, 2), end=(3, 4))
    assert win.effective_kernel == (5, 3)
    assert output_sizes((10, 10), win) == (10, 14)  # 10+4-5+1; 10+6-3+1


# --------------------------------------------------------------------------------------------
# resolve


def test_resolve_valid():
    w = resolve("valid", (7, 9), (3, 3), (2, 2), (1, 1))
    assert (w.begin, w.end) == ((0, 0), (0, 0))
    assert (w.kernel, w.stride, w.dilation, w.ceil_mode) == ((3, 3), (2, 2), (1, 1), False)


def test_resolve_explicit_tlbr():
    w = resolve((1, 2, 3, 4), (10, 10), (3, 3), (1, 1), (1, 1), ceil_mode=True)
    assert w.begin == (1, 2)  # top, left
    assert w.end == (3, 4)  # bottom, right
    assert w.pads == (1, 2, 3, 4)  # ONNX order: begins, then ends
    assert w.ceil_mode is True


@pytest.mark.parametrize("n, k, s, d, begin, end", [
    (32, 3, 1, 1, 1, 1),  # stride 1, odd kernel: (k-1)/2 each side
    (32, 4, 1, 1, 1, 2),  # even kernel: total 3, the extra one at the end
    (32, 3, 1, 2, 2, 2),  # dilation 2: k_eff 5, total 4
    (224, 3, 2, 1, 0, 1),  # out 112, total (112-1)*2 + 3 - 224 = 1 -> all at the end
    (225, 3, 2, 1, 1, 1),  # out 113, total 112*2 + 3 - 225 = 2
    (224, 7, 2, 1, 2, 3),  # TF ResNet stem: total 111*2 + 7 - 224 = 5 -> 2 before, 3 after
    (28, 5, 2, 1, 1, 2),  # out 14, total 13*2 + 5 - 28 = 3
    (224, 1, 2, 1, 0, 0),  # 1x1 s2: (112-1)*2 + 1 - 224 = -1 -> clamped to 0
    (7, 3, 3, 1, 1, 1),  # out ceil(7/3) = 3, total 2*3 + 3 - 7 = 2
])
def test_resolve_same_tensorflow_rule(n, k, s, d, begin, end):
    w = resolve("same", (n, n), (k, k), (s, s), (d, d))
    assert w.begin == (begin, begin)
    assert w.end == (end, end)
    assert output_sizes((n, n), w) == (math.ceil(n / s),) * 2


def test_resolve_same_per_axis():
    # height 224 s2 k3: pads (0, 1); width 10 s1 k5: pads (2, 2)
    w = resolve("same", (224, 10), (3, 5), (2, 1), (1, 1))
    assert (w.begin, w.end) == ((0, 2), (1, 2))
    assert output_sizes((224, 10), w) == (112, 10)


def test_resolve_same_gives_ceil_n_over_s_everywhere():
    for n, k, s, d in itertools.product(range(1, 20), range(1, 6), range(1, 4), (1, 2)):
        w = resolve("same", (n,), (k,), (s,), (d,))
        total = w.begin[0] + w.end[0]
        assert w.end[0] - w.begin[0] in (0, 1), (n, k, s, d)  # the odd one at the end
        assert total == max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0), (n, k, s, d)
        assert output_sizes((n,), w) == (math.ceil(n / s),), (n, k, s, d)


# --------------------------------------------------------------------------------------------
# unread


@pytest.mark.parametrize("n, k_eff, stride, begin, end, out, expected", [
    (7, 3, 3, 0, 0, 2, [6]),  # the slide's (7-3)/3+1 = 2.33: windows 0-2, 3-5; 6 unread
    (7, 3, 1, 0, 0, 5, []),
    (7, 3, 2, 0, 0, 3, []),
    (10, 3, 3, 0, 0, 3, [9]),
    (11, 3, 3, 0, 0, 3, [9, 10]),
    (7, 2, 2, 0, 0, 3, [6]),  # l2pool_channels size 2 over 7 channels
    (8, 3, 3, 1, 1, 3, []),  # padded 10, windows cover 0-8 padded = input -1..7: only the end pad unread
    (9, 3, 3, 1, 1, 3, [8]),  # padded 11, covered 9 padded = input up to 7
    (48, 5, 2, 0, 0, 22, [47]),  # (48-5)//2+1 = 22 windows cover 0-46
    (5, 1, 2, 0, 0, 3, []),
])
def test_unread(n, k_eff, stride, begin, end, out, expected):
    assert list(unread(n, k_eff, stride, begin, end, out)) == expected


def test_unread_is_the_complement_of_what_windows_read():
    # stride <= kernel (no gaps between windows): unread = input indices no window touches
    for n, k, s, b, e in itertools.product(range(1, 14), range(1, 6), range(1, 6), range(3), range(3)):
        if s > k or k > n + b + e:
            continue
        out = output_size(n, k, s, b, e)
        read = set()
        for o in range(out):
            read.update(range(o * s - b, o * s - b + k))
        expected = sorted(set(range(n)) - read)
        assert list(unread(n, k, s, b, e, out)) == expected, (n, k, s, b, e)


# --------------------------------------------------------------------------------------------
# pooled_bins: adaptive pooling's bins listed, the reference for the closed forms convspec uses


def pooled_bins(n: int, out: int) -> list[tuple[int, int]]:
    """Bins [start, stop) as PyTorch computes them: floor(i*n/out) .. ceil((i+1)*n/out)."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


@pytest.mark.parametrize("n, out, expected", [
    (10, 3, [(0, 4), (3, 7), (6, 10)]),  # floor(10/3)=3, ceil(10/3)=4; floor(20/3)=6, ceil(20/3)=7
    (5, 3, [(0, 2), (1, 4), (3, 5)]),
    (14, 7, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)]),
    (7, 7, [(i, i + 1) for i in range(7)]),
    (7, 1, [(0, 7)]),
    (3, 5, [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]),  # more bins than inputs: they overlap
    (13, 6, [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]),
])
def test_pooled_bins(n, out, expected):
    assert pooled_bins(n, out) == expected


def test_pooled_bins_match_pytorch_rule_on_a_grid():
    for n, out in itertools.product(range(1, 40), range(1, 40)):
        bins = pooled_bins(n, out)
        assert bins == torch_bins(n, out), (n, out)
        assert bins[0][0] == 0 and bins[-1][1] == n
        assert all(a < b for a, b in bins)  # never empty
        covered = set()
        for a, b in bins:
            covered.update(range(a, b))
        assert covered == set(range(n))


def test_adaptive_pooling_closed_forms_match_the_bins():
    """pooled_cover and pooled_widest (used for FLOPs and receptive fields, so a huge output size
    costs no time) against the bins themselves."""
    for n in range(1, 48):
        for out in range(1, 48):
            widths = [b - a for a, b in pooled_bins(n, out)]
            assert (arith.pooled_cover(n, out), arith.pooled_widest(n, out)) == (sum(widths), max(widths)), (n, out)
