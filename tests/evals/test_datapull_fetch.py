"""The data pull's pieces with a stand-in for the network: where the data lives, SHA-256 of known
vectors, a fetch (temp file, cache, mirror, timeout), its one-line failures, what `pull` records,
and turning the BRAINTEASER authors' numpy files into jsonl."""

import io
import json
import types
import urllib.error

import numpy as np
import pytest

from selm_bench.harness import datapull as D
from support.run_files import write_json

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector for b"abc"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes
URL = "https://example.invalid/q.jsonl"


def one_line_naming_the_way_round(message: str) -> bool:
    """A fetch error is one line that ends with the way round it: the artefact's own URL to download
    by hand and --data-dir with where the file goes under it."""
    return "\n" not in message and URL in message and "--data-dir" in message and "DIR/d/q.jsonl" in message


def test_data_lives_in_selm_bench_data_else_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELM_BENCH_DATA", str(tmp_path / "d"))
    assert D.default_dir() == tmp_path / "d"
    assert D.pulled_dir() is None  # nothing pulled there yet
    write_json(tmp_path / "d" / "pulled.json", {})
    assert D.pulled_dir() == tmp_path / "d"
    monkeypatch.setenv("SELM_BENCH_DATA", "")  # empty: the home cache
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.default_dir() == tmp_path / "home" / ".cache" / "selm-bench" / "data"


def test_sha256_of_known_vectors(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert (D._sha256(tmp_path / "abc"), D._sha256(tmp_path / "empty")) == (ABC_SHA256, EMPTY_SHA256)


@pytest.fixture
def urlopen(monkeypatch):
    """A stand-in for the network: records (url, timeout), serves b"abc" or raises what it is told."""
    monkeypatch.delenv("SELM_BENCH_DATA_URL", raising=False)
    state = types.SimpleNamespace(calls=[], error=None, watch=None, seen=None)

    def fake(url, timeout):
        state.calls.append((url, timeout))
        if state.watch:  # what the destination folder holds while the download runs
            state.seen = sorted(p.name for p in state.watch.iterdir())
        if state.error:
            raise state.error
        return io.BytesIO(b"abc")

    monkeypatch.setattr(D.urllib.request, "urlopen", fake)
    return state


def test_fetch_downloads_through_a_temp_file_caches_and_uses_a_mirror(tmp_path, monkeypatch, urlopen):
    good = D.Artefact("mt-bench", "d/q.jsonl", URL, ABC_SHA256, 3)
    urlopen.watch = tmp_path / "one" / "d"
    assert D.fetch(good, tmp_path / "one") == "downloaded"
    # meanwhile only a hidden temp file: .<name>.<random>.tmp
    assert len(urlopen.seen) == 1 and urlopen.seen[0].startswith(".q.jsonl.") and urlopen.seen[0].endswith(".tmp")
    urlopen.watch = None
    assert (tmp_path / "one" / "d" / "q.jsonl").read_bytes() == b"abc"
    assert sorted(p.name for p in (tmp_path / "one" / "d").iterdir()) == ["q.jsonl"]  # no temp file left
    assert D.fetch(good, tmp_path / "one") == "cached"
    assert urlopen.calls == [(URL, 30.0)]  # the cached copy asked nothing
    monkeypatch.setenv("SELM_BENCH_DATA_URL", "http://mirror/X/")
    assert D.fetch(good, tmp_path / "two", timeout=2.5) == "downloaded"
    assert urlopen.calls[-1] == ("http://mirror/X/d/q.jsonl", 2.5)
    bad = D.Artefact("mt-bench", "d/q.jsonl", good.url, "0" * 64, 3)
    with pytest.raises(D.DataPullError) as err:
        D.fetch(bad, tmp_path / "three")
    message = str(err.value)
    assert message.startswith("mt-bench: d/q.jsonl") and "http://mirror/X/d/q.jsonl" in message  # where it came from
    assert all(t in message for t in ("SHA-256", "got ba7816bf8f01", "expected 000000000000"))  # 12 hex digits each
    assert one_line_naming_the_way_round(message)
    assert list((tmp_path / "three" / "d").iterdir()) == []  # nothing kept


@pytest.mark.parametrize("error,reason", [(urllib.error.URLError("connection refused"), "connection refused"),
                                          (OSError("disk full"), "disk full"), (TimeoutError("timed out"), "timed out")])
def test_a_failed_fetch_is_one_line_with_the_reason_and_leaves_nothing(tmp_path, urlopen, error, reason):
    urlopen.error = error
    good = D.Artefact("mt-bench", "d/q.jsonl", URL, ABC_SHA256, 3)
    with pytest.raises(D.DataPullError) as err:
        D.fetch(good, tmp_path)
    message = str(err.value)
    assert message.startswith("mt-bench:") and "cannot fetch d/q.jsonl" in message and f"({reason})" in message
    assert one_line_naming_the_way_round(message)
    assert list((tmp_path / "d").iterdir()) == []


def test_pull_fetches_only_the_named_suites_and_records_them(tmp_path, monkeypatch, urlopen):
    monkeypatch.setenv("SELM_BENCH_DATA", str(tmp_path / "home-data"))
    mt = D.Artefact("mt-bench", "d/q.jsonl", URL, ABC_SHA256, 3)
    ae = D.Artefact("alpaca-eval", "ae/o.json", "https://example.invalid/o.json", ABC_SHA256, 3)
    assert D.pull(["mt-bench"], artefacts=(mt, ae)) == {"d/q.jsonl": "downloaded"}  # to: the default folder
    assert urlopen.calls == [(URL, 30.0)]
    assert json.loads((tmp_path / "home-data" / "pulled.json").read_text()) == {
        "d/q.jsonl": {"url": URL, "sha256": ABC_SHA256}}
    # brainteaser named, but none of its artefacts given: nothing to convert
    assert D.pull(["brainteaser"], tmp_path / "bt", artefacts=(mt,)) == {}
    assert json.loads((tmp_path / "bt" / "pulled.json").read_text()) == {}
    with pytest.raises(D.DataPullError) as err:
        D.pull(["mt-bench", "nope"], tmp_path / "x")
    assert str(err.value).startswith("nope:")
    assert str(err.value).rsplit("pullable: ", 1)[1].rstrip(")").split(", ") == ["mt-bench", "alpaca-eval", "brainteaser"]
    assert not (tmp_path / "x").exists()  # an unknown suite fetches nothing


def test_load_plain_arrays_and_version_2_headers():
    from numpy.lib import format as npformat

    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert D.load_object_npy(buf.getvalue()) == [[1, 2], [3, 4]]
    arr = np.array([0.5, 1.5])
    v2 = io.BytesIO()
    npformat.write_array_header_2_0(v2, npformat.header_data_from_array_1_0(arr))
    v2.write(arr.tobytes())
    assert v2.getvalue()[6:8] == b"\x02\x00"  # the format version bytes after b"\x93NUMPY"
    assert D.load_object_npy(v2.getvalue()) == [0.5, 1.5]


def test_numpy_values_and_tuples_become_json_values():
    assert D._plain({1: (np.int64(2), [np.float64(0.5)]), "a": np.array([True])}) == {"1": [2, [0.5]], "a": [True]}
    assert json.dumps(D._plain((np.int32(3),))) == "[3]"


def _npy(rows) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array(rows, dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_convert_brainteaser_writes_each_member_whole_keeping_non_ascii(tmp_path):
    import pyzipper

    raw = tmp_path / "bt" / "raw"
    raw.mkdir(parents=True)
    with pyzipper.AESZipFile(raw / "BTDATA.zip", "w", encryption=pyzipper.WZ_AES) as z:
        z.setpassword(b"brainteaser")  # the authors' published password
        for member in ("SP_train.npy", "WP_train.npy", "SP_test.npy", "WP_test.npy"):
            z.writestr(member, _npy([{"from": member, "q": "café?"}, {"from": member, "n": np.int64(2)}]))
        z.writestr("SP_test_answer.npy", _npy([{"key": 1}]))  # an answer key: not extracted
    (raw / "demonstration.npy").write_bytes(_npy([{"Question": "¿qué?"}, {"Answer": "x"}]))
    D.convert_brainteaser(tmp_path / "bt")
    assert sorted(p.name for p in (tmp_path / "bt").iterdir()) == [
        "SP_test.jsonl", "SP_train.jsonl", "WP_test.jsonl", "WP_train.jsonl", "demonstration.jsonl", "raw"]
    for name in ("SP_train", "WP_train", "SP_test", "WP_test"):
        text = (tmp_path / "bt" / f"{name}.jsonl").read_text(encoding="utf-8")
        assert text.endswith("\n") and [json.loads(line) for line in text.splitlines()] == [
            {"from": f"{name}.npy", "q": "café?"}, {"from": f"{name}.npy", "n": 2}]
        assert "café?" in text  # non-ASCII kept as is, not \u-escaped
    text = (tmp_path / "bt" / "demonstration.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line) for line in text.splitlines()] == [{"Question": "¿qué?"}, {"Answer": "x"}]
    assert "¿qué?" in text


def test_a_brainteaser_pull_keeps_the_authors_files_under_brainteaser_raw_and_converts_them(tmp_path, monkeypatch):
    """`data pull --suites brainteaser` fetches the authors' data/BTDATA.zip and Prompting/demonstration.npy
    (docs/suites.md) into brainteaser/raw/ of the data folder, where the suite's conversion reads them,
    and writes the jsonl files the suite reads next to raw/. The registered sources are used as they are,
    only their checksums swapped for those of our stand-in files."""
    import dataclasses
    import hashlib

    import pyzipper

    from selm_bench.evals import brainteaser as B

    zip_path = tmp_path / "BTDATA.zip"
    with pyzipper.AESZipFile(zip_path, "w", encryption=pyzipper.WZ_AES) as z:
        z.setpassword(b"brainteaser")  # the authors' published password
        for member in ("SP_train.npy", "WP_train.npy", "SP_test.npy", "WP_test.npy"):
            z.writestr(member, _npy([{"from": member}]))
    served = {"data/BTDATA.zip": zip_path.read_bytes(), "Prompting/demonstration.npy": _npy([{"Question": "d?"}])}

    def urlopen(url, timeout):  # the authors' repository, by path
        (body,) = [b for tail, b in served.items() if url.endswith("/" + tail)]
        return io.BytesIO(body)

    monkeypatch.delenv("SELM_BENCH_DATA_URL", raising=False)
    monkeypatch.setattr(D.urllib.request, "urlopen", urlopen)
    arts = []
    for a in B.DATA_SOURCES:
        (body,) = [b for tail, b in served.items() if a.url.endswith("/" + tail)]
        arts.append(dataclasses.replace(a, sha256=hashlib.sha256(body).hexdigest(), size=len(body)))
    done = D.pull(["brainteaser"], tmp_path / "data", artefacts=tuple(arts))
    assert done == {"brainteaser/raw/BTDATA.zip": "downloaded", "brainteaser/raw/demonstration.npy": "downloaded"}
    bt = tmp_path / "data" / "brainteaser"
    assert (bt / "raw" / "BTDATA.zip").read_bytes() == served["data/BTDATA.zip"]
    assert sorted(p.name for p in bt.iterdir()) == [
        "SP_test.jsonl", "SP_train.jsonl", "WP_test.jsonl", "WP_train.jsonl", "demonstration.jsonl", "raw"]
    assert json.loads((bt / "WP_train.jsonl").read_text()) == {"from": "WP_train.npy"}
