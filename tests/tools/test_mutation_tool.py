"""The sampled mutation tool's own pieces (tools/mutation/mutation_sample.py): which lines run at import
time, and the Wilson interval, against hand-worked values."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "mutation_sample", Path(__file__).resolve().parents[2] / "tools" / "mutation" / "mutation_sample.py")
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)


def test_import_time_lines(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("X = 1\n"                      # 1 module level
                 "@dec(2)\n"                     # 2 decorator
                 "def f(a=3,\n"                  # 3 def line with a default
                 "      b=4):\n"                 # 4
                 "    y = 5\n"                   # 5 body
                 "    return (y +\n"             # 6 body
                 "            6)\n"              # 7 body, continued
                 "class C:\n"                    # 8 class
                 "    z: int = 9\n"              # 9 class body
                 "    def g(self):\n"            # 10 def line
                 "        return 11\n"           # 11 body
                 "G = lambda: 12\n")             # 12 a lambda's body runs when called
    assert [n for n in range(1, 13) if ms.import_time(f, n)] == [1, 2, 3, 4, 8, 9, 10]


def test_wilson_interval_by_hand():
    # k = 171, n = 217, z = 1.96: p = 0.78802; centre (p + z^2/2n) / (1 + z^2/n) = 0.78301,
    # half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 0.05414
    lo, hi = ms.wilson(171, 217)
    assert (lo, hi) == pytest.approx((0.72887, 0.83715), abs=1e-4)
    assert ms.wilson(0, 0) == (0.0, 1.0)
