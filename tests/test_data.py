"""symbp.makemore.data: word lists, vocabulary, makemore's examples and split, and the names.txt download."""

import hashlib
import http.server
import random
import socket
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NAMES_TXT
from symbp.makemore import data
from symbp.makemore.data import (
    DataError,
    TrainError,
    build_dataset,
    build_vocab,
    load_words,
    resolve_input,
    split,
)


def write(tmp_path, content, name="words.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# --- load_words -----------------------------------------------------------------------------------


def test_load_words_skips_blank_lines_and_strips_line_ends(tmp_path):
    path = write(tmp_path, "emma\r\n\n  olivia \t\n\nava\n   \n")
    assert load_words(path) == ["emma", "olivia", "ava"]


def test_load_words_keeps_spaces_and_hyphens_inside_words(tmp_path):
    path = write(tmp_path, "San José\nVillafranca del Bierzo\nCastilla-La Mancha\n")
    words = load_words(path)
    assert words == ["San José", "Villafranca del Bierzo", "Castilla-La Mancha"]
    stoi, itos = build_vocab(words)
    assert " " in stoi and "-" in stoi and "é" in stoi
    assert itos == [".", *sorted(set("".join(words)))]


def test_load_words_ignores_a_byte_order_mark(tmp_path):
    assert load_words(write(tmp_path, b"\xef\xbb\xbfanna\nbob\n")) == ["anna", "bob"]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\n  \n\t\n", "no words"),
    (b"anna\n\xff\xfebob\n", "not UTF-8"),
    (("x" * 65 + "\n").encode(), "a word of 65 characters"),
])
def test_load_words_rejects_unusable_files(tmp_path, content, message):
    with pytest.raises(DataError, match=message) as e:
        load_words(write(tmp_path, content))
    assert "\n" not in str(e.value)


def test_load_words_accepts_a_word_at_the_length_limit(tmp_path):
    assert load_words(write(tmp_path, "y" * data.MAX_WORD_LENGTH)) == ["y" * data.MAX_WORD_LENGTH]


def test_missing_file_and_folder_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_words(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="folder"):
        load_words(tmp_path)


def test_errors_are_value_errors_under_one_base():
    assert issubclass(DataError, TrainError) and issubclass(TrainError, ValueError)


# --- vocabulary and examples ----------------------------------------------------------------------


def test_vocab_puts_the_terminator_first_and_sorts_the_rest():
    stoi, itos = build_vocab(["bca", "ab"])
    assert stoi == {".": 0, "a": 1, "b": 2, "c": 3}
    assert itos == [".", "a", "b", "c"]


def test_a_terminator_inside_a_word_is_refused():
    with pytest.raises(DataError, match="St. Louis"):
        build_vocab(["anna", "St. Louis"])


def test_build_dataset_slides_a_zero_padded_context():
    stoi, _ = build_vocab(["ab", "c"])  # a=1 b=2 c=3
    X, Y = build_dataset(["ab", "c"], stoi, 3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 0, 0], [0, 0, 3]]
    assert Y.tolist() == [1, 2, 0, 3, 0]
    assert X.dtype == Y.dtype == torch.long


def test_build_dataset_of_nothing_has_the_right_shape():
    X, Y = build_dataset([], {".": 0}, 4)
    assert X.shape == (0, 4) and Y.shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc -", min_size=1, max_size=8), min_size=1, max_size=12),
       st.integers(1, 5))
def test_each_word_can_be_read_back_from_its_examples(words, block_size):
    stoi, itos = build_vocab(words)
    X, Y = build_dataset(words, stoi, block_size)
    assert len(Y) == sum(len(w) + 1 for w in words)
    # a word ends where the target is '.', and the next one starts from an all-'.' context
    rebuilt, current = [], ""
    for x, y in zip(X.tolist(), Y.tolist()):
        if not current:
            assert x == [0] * block_size
        else:
            expect = [0] * block_size + [stoi[ch] for ch in current]
            assert x == expect[-block_size:]
        if y == 0:
            rebuilt.append(current)
            current = ""
        else:
            current += itos[y]
    assert rebuilt == words


def test_split_shuffles_like_the_seeded_global_random_and_leaves_the_input_alone():
    words = [f"w{i:03d}" for i in range(100)]
    original = list(words)
    state = random.getstate()
    try:
        expected = list(words)
        random.seed(42)
        random.shuffle(expected)
    finally:
        random.setstate(state)
    assert data.shuffled(words) == expected
    assert words == original
    stoi, _ = build_vocab(words)
    parts = split(words, 2, stoi)
    for (X, Y), chunk in zip(parts, (expected[:80], expected[80:90], expected[90:])):
        rX, rY = build_dataset(chunk, stoi, 2)
        assert torch.equal(X, rX) and torch.equal(Y, rY)


def test_split_needs_enough_words_for_every_part():
    with pytest.raises(DataError, match="too few"):
        split(["abc"] * 5, 3)  # 4 / 0 / 1 words
    assert [len(Y) for _, Y in split(["abc"] * 6, 3)] == [16, 4, 4]  # 4 / 1 / 1 words


@pytest.mark.skipif(not NAMES_TXT.is_file(),
                    reason=f"no shared/ folder with makemore's names.txt beside this clone ({NAMES_TXT})")
def test_names_txt_gives_the_seeds_example_counts():
    words = load_words(NAMES_TXT)
    assert len(words) == 32_033
    stoi, itos = build_vocab(words)
    assert len(itos) == 27 and stoi["."] == 0 and stoi["a"] == 1 and stoi["z"] == 26
    parts = split(words, 3, stoi)
    assert [len(Y) for _, Y in parts] == [182_625, 22_655, 22_866]
    assert [X.shape[1] for X, _ in parts] == [3, 3, 3]


# --- resolve_input and the download ---------------------------------------------------------------


def test_an_explicit_input_must_exist(tmp_path):
    path = write(tmp_path, "anna\n")
    assert resolve_input(path) == path
    with pytest.raises(DataError, match="does not exist"):
        resolve_input(tmp_path / "missing.txt")


def test_names_txt_in_the_working_directory_is_preferred(tmp_path, monkeypatch):
    write(tmp_path, "anna\n", "names.txt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.NAMES_URL_ENV, "http://127.0.0.1:9/never-asked")
    assert resolve_input(None) == Path("names.txt")


@pytest.fixture
def server(tmp_path):
    """A local HTTP server in a thread, serving the files of a folder; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def no_local_names(tmp_path, monkeypatch):
    """An empty working directory and a private cache, so resolve_input must download."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "symbp"


def test_download_is_verified_cached_and_reused(server, no_local_names, monkeypatch):
    root, base = server
    content = b"emma\nolivia\nava\n"
    (root / "names.txt").write_bytes(content)
    monkeypatch.setattr(data, "NAMES_SHA256", hashlib.sha256(content).hexdigest())
    monkeypatch.setenv(data.NAMES_URL_ENV, f"{base}/names.txt")
    notes = []
    path = resolve_input(None, log=notes.append)
    assert path == no_local_names / "names.txt"
    assert path.read_bytes() == content
    assert load_words(path) == ["emma", "olivia", "ava"]
    assert len(notes) == 1 and base in notes[0]
    assert [p.name for p in no_local_names.iterdir()] == ["names.txt"]  # no temp files left
    (root / "names.txt").unlink()  # the second call must not need the server
    assert resolve_input(None, log=notes.append) == path
    assert len(notes) == 1


def test_a_corrupted_cache_is_downloaded_again(server, no_local_names, monkeypatch):
    root, base = server
    content = b"emma\n"
    (root / "names.txt").write_bytes(content)
    monkeypatch.setattr(data, "NAMES_SHA256", hashlib.sha256(content).hexdigest())
    monkeypatch.setenv(data.NAMES_URL_ENV, f"{base}/names.txt")
    no_local_names.mkdir(parents=True)
    (no_local_names / "names.txt").write_bytes(b"emm")
    assert resolve_input(None, log=lambda m: None).read_bytes() == content


def test_a_sha256_mismatch_keeps_nothing(server, no_local_names, monkeypatch):
    root, base = server
    (root / "names.txt").write_bytes(b"not the names\n")
    monkeypatch.setenv(data.NAMES_URL_ENV, f"{base}/names.txt")
    with pytest.raises(DataError, match="sha256.*nothing was kept.*-i FILE"):
        resolve_input(None, log=lambda m: None)
    assert not (no_local_names / "names.txt").exists()
    assert not no_local_names.exists() or not any(no_local_names.iterdir())


def test_http_errors_say_to_pass_a_file(server, no_local_names, monkeypatch):
    _, base = server
    monkeypatch.setenv(data.NAMES_URL_ENV, f"{base}/missing.txt")
    with pytest.raises(DataError, match="HTTP 404.*-i FILE"):
        resolve_input(None, log=lambda m: None)


def test_connection_refused_says_to_pass_a_file(no_local_names, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(data.NAMES_URL_ENV, f"http://127.0.0.1:{port}/names.txt")
    with pytest.raises(DataError, match="cannot download.*-i FILE") as e:
        resolve_input(None, log=lambda m: None)
    assert "\n" not in str(e.value)
    assert not (no_local_names / "names.txt").exists()
