"""`selm-bench data pull` against a loopback HTTP server: pinned checksums, the cache, one-line
errors for a bad or unreachable source, and the suites finding the data without --data-dir."""

import functools
import hashlib
import socket
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from selm_bench.harness.datapull import ARTEFACTS, Artefact, DataPullError, pull


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(monkeypatch):
    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("SELM_BENCH_DATA_URL", url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        return url

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_pull_the_real_files_against_the_pinned_checksums(serve, tmp_path):
    """Real files served from a mirror pass the pinned SHA-256 and sizes: ../shared/data's MT-Bench and
    AlpacaEval files where present, else the committed copies of FastChat's three MT-Bench files
    (tests/fixtures/README.md), so the check runs on a fresh clone too."""
    from support.fixtures import fastchat_mt_bench_site

    if (SHARED_DATA / "mt_bench" / "question.jsonl").is_file():
        site, suites = SHARED_DATA, ["mt-bench", "alpaca-eval"]  # brainteaser's zip is not in shared/
    else:
        site, suites = fastchat_mt_bench_site(tmp_path / "site"), ["mt-bench"]
    serve(site)
    done = pull(suites, tmp_path / "data")
    real = [a for a in ARTEFACTS if a.suite in suites]
    assert done == {a.dest: "downloaded" for a in real} and len(real) >= 3
    for a in real:
        got = (tmp_path / "data" / a.dest).read_bytes()
        assert got == (site / a.dest).read_bytes() and len(got) == a.size
    assert set(pull(["mt-bench"], tmp_path / "data").values()) == {"cached"}


def test_checksums_cache_and_one_line_errors(serve, tmp_path):
    site = tmp_path / "site"
    (site / "d").mkdir(parents=True)
    body = b'{"question_id": 81}\n'
    (site / "d" / "q.jsonl").write_bytes(body)
    good = Artefact("mt-bench", "d/q.jsonl", "https://example.invalid/q.jsonl", hashlib.sha256(body).hexdigest(), len(body))
    serve(site)
    to = tmp_path / "cache"
    assert pull(["mt-bench"], to, artefacts=(good,)) == {"d/q.jsonl": "downloaded"}
    assert (to / "d" / "q.jsonl").read_bytes() == body and (to / "pulled.json").is_file()
    assert pull(["mt-bench"], to, artefacts=(good,)) == {"d/q.jsonl": "cached"}

    bad = Artefact("mt-bench", "d/q.jsonl", good.url, "0" * 64, len(body))
    with pytest.raises(DataPullError, match=r"^mt-bench: d/q\.jsonl ") as err:
        pull(["mt-bench"], tmp_path / "other", artefacts=(bad,))
    assert "SHA-256" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "other").rglob("q.jsonl*"))  # nothing partial written

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    import os

    os.environ["SELM_BENCH_DATA_URL"] = f"http://127.0.0.1:{closed}"
    with pytest.raises(DataPullError) as err:
        pull(["mt-bench"], tmp_path / "third", artefacts=(good,))
    msg = str(err.value)
    assert msg.startswith("mt-bench: ") and "cannot fetch d/q.jsonl" in msg and "\n" not in msg
    # the mirror URL tried, the upstream URL to fetch it from by hand, and where to put it
    assert f"http://127.0.0.1:{closed}/d/q.jsonl" in msg and "https://example.invalid/q.jsonl" in msg
    assert "--data-dir DIR" in msg and "DIR/d/q.jsonl" in msg
    assert not (tmp_path / "third" / "d" / "q.jsonl").exists()


def test_brainteaser_from_an_aes_zip_of_object_arrays(serve, tmp_path):
    """A zip like the authors' (AES, published password, numpy object arrays of dicts) becomes
    the suite's jsonl files; a pickle that reaches for anything but numpy is refused."""
    import io
    import json

    import numpy as np
    import pyzipper

    from selm_bench.harness.datapull import BT_MEMBERS, BT_PASSWORD, load_object_npy

    def npy(rows) -> bytes:
        buf = io.BytesIO()
        np.save(buf, np.array(rows, dtype=object), allow_pickle=True)
        return buf.getvalue()

    site = tmp_path / "site" / "brainteaser" / "raw"
    site.mkdir(parents=True)
    train = [{"id": "SP-0", "question": "q?", "label": np.int64(1), "choice_list": ["a", "b", "c", "None of above."]}]
    with pyzipper.AESZipFile(site / "BTDATA.zip", "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as z:
        z.setpassword(BT_PASSWORD)
        for member in BT_MEMBERS:
            z.writestr(member, npy(train))
    (site / "demonstration.npy").write_bytes(npy([{"Question": "d?", "Answer": "x"}]))
    arts = tuple(Artefact("brainteaser", f"brainteaser/raw/{f}", "https://example.invalid/" + f,
                          hashlib.sha256((site / f).read_bytes()).hexdigest(), (site / f).stat().st_size)
                 for f in ("BTDATA.zip", "demonstration.npy"))
    serve(tmp_path / "site")
    pull(["brainteaser"], tmp_path / "data", artefacts=arts)
    rows = [json.loads(line) for line in (tmp_path / "data/brainteaser/SP_train.jsonl").read_text().splitlines()]
    assert rows == [{"id": "SP-0", "question": "q?", "label": 1, "choice_list": ["a", "b", "c", "None of above."]}]
    assert (tmp_path / "data/brainteaser/WP_test.jsonl").is_file()
    assert json.loads((tmp_path / "data/brainteaser/demonstration.jsonl").read_text()) == {"Question": "d?", "Answer": "x"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    with pytest.raises(pickle.UnpicklingError, match=r"refusing .*builtins\.print"):
        load_object_npy(npy([Evil()]))


def test_cli_unknown_suite_is_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "data", "pull", "--suites", "nope",
                          "--to", str(tmp_path / "x")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error: nope: not a suite") and res.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_real_mode_evals_find_pulled_data(tmp_path, monkeypatch):
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run.stages import eval_spec
    from selm_bench.harness.core.specs import Ref

    monkeypatch.setenv("SELM_BENCH_DATA", str(tmp_path))
    cfg = load_config()
    assert eval_spec(cfg, Ref(path="m"), "m", "mt-bench", None, {}).data_dir is None
    (tmp_path / "pulled.json").write_text("{}")
    assert eval_spec(cfg, Ref(path="m"), "m", "mt-bench", None, {}).data_dir == str(tmp_path)
    assert eval_spec(cfg, Ref(path="m"), "m", "mt-bench", Ref(path="world/data"), {}).data_dir is None  # tiny mode


def test_object_arrays_pickled_by_numpy_1_and_numpy_2():
    """The authors' files come from numpy 1 (`numpy.core.multiarray`); numpy 2 writes
    `numpy._core.multiarray`: both module paths of _reconstruct and scalar load, nothing else."""
    import io
    import pickle
    import warnings

    import numpy as np
    from numpy.lib import format as npformat

    from selm_bench.harness.datapull import load_object_npy

    arr = np.array([{"label": np.int64(1), "ids": np.array([1, 2])}], dtype=object)
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, npformat.header_data_from_array_1_0(arr))
    pickle.dump(arr, buf, protocol=3)  # GLOBAL opcodes name the module in plain text
    numpy2 = buf.getvalue()
    assert numpy2.count(b"cnumpy._core.multiarray\n_reconstruct\n") == 1
    assert numpy2.count(b"cnumpy._core.multiarray\nscalar\n") == 1
    numpy1 = numpy2.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert load_object_npy(numpy2) == [{"label": 1, "ids": [1, 2]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's alias of numpy.core
        assert load_object_npy(numpy1) == [{"label": 1, "ids": [1, 2]}]
    with pytest.raises(pickle.UnpicklingError, match=r"refusing .*numpy\.core\.umath"):
        load_object_npy(numpy2.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.umath\nscalar\n"))
