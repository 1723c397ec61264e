"""The makemore data: a word list, its character vocabulary, and the (context -> next char) examples.

This follows makemore part 4 exactly, so that losses can be compared with the
seeds' figures: the vocabulary is inferred from the data with '.' as index 0
(the start/end marker), the words are shuffled with ``random.seed(42)`` and
split 80/10/10, and each word yields one example per character plus one for
the terminating '.'. With makemore's names.txt and a block size of 3 that is
182,625 / 22,655 / 22,866 examples.

Importing this module does not import torch (only ``build_dataset`` and
``split`` need it), so the command line can name the error classes below
without paying for torch on every ``symbp derive``.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from symbp.errors import SymbpError
from symbp.fileio import cache_dir

#: makemore's data set: 32,033 names, one per line.
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
#: The environment variable that points the download elsewhere (a mirror, or a local test server).
NAMES_URL_ENV = "SYMBP_NAMES_URL"
DOWNLOAD_TIMEOUT_S = 30
#: names.txt is 228 kB; anything far larger is not the file we asked for.
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024

#: The start/end-of-word marker; it is vocabulary index 0 and so cannot appear inside a word.
TERMINATOR = "."
#: A word longer than this is almost certainly a file that is not one word per line.
MAX_WORD_LENGTH = 64
SHUFFLE_SEED = 42


class TrainError(SymbpError, ValueError):
    """A problem with the training side that the user can fix: bad data, options or checkpoint."""


class DataError(TrainError):
    """A word list that cannot be used: missing, empty, not UTF-8, or not one word per line."""


class Splits(NamedTuple):
    """``(X, Y)`` example tensors for the train, validation and test words."""

    train: tuple
    val: tuple
    test: tuple


def load_words(path) -> list[str]:
    """The words in ``path``, one per line; blank lines are skipped and line ends stripped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"input file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"input {str(path)!r} is a folder, not a file of words") from None
    except OSError as e:
        raise DataError(f"cannot read input file {str(path)!r}: {e.strerror}") from None
    if not raw:
        raise DataError(f"input file {str(path)!r} is empty")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark would otherwise become a character
    except UnicodeDecodeError as e:
        raise DataError(f"input file {str(path)!r} is not UTF-8 (bad byte at offset {e.start})") from None
    words = []
    for lineno, line in enumerate(text.splitlines(), 1):
        word = line.strip()
        if not word:
            continue
        if len(word) > MAX_WORD_LENGTH:
            raise DataError(f"{path.name}:{lineno}: a word of {len(word)} characters (the limit is "
                            f"{MAX_WORD_LENGTH}); the input must have one word per line")
        words.append(word)
    if not words:
        raise DataError(f"input file {str(path)!r} has no words, only blank lines")
    return words


def build_vocab(words) -> tuple[dict, list]:
    """``(stoi, itos)``: the sorted characters of ``words`` from 1 up, and '.' as 0."""
    chars = sorted(set("".join(words)))
    if TERMINATOR in chars:
        word = next(w for w in words if TERMINATOR in w)
        raise DataError(f"the word {word!r} contains {TERMINATOR!r}, which marks the end of a word; "
                        "remove it from the input")
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    stoi[TERMINATOR] = 0
    itos = [TERMINATOR, *chars]
    return stoi, itos


def build_dataset(words, stoi, block_size: int):
    """``(X, Y)``: for every character of every word (and its end), the ``block_size`` before it.

    The context starts as ``block_size`` zeros ('.') and slides by one
    character per example, as in makemore. X is (examples, block_size) and Y
    is (examples,), both int64.
    """
    import torch

    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + TERMINATOR:
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return (torch.tensor(X, dtype=torch.long).view(-1, block_size),
            torch.tensor(Y, dtype=torch.long))


def shuffled(words) -> list[str]:
    """A copy of ``words`` in the order ``random.seed(42); random.shuffle(words)`` gives.

    A private ``random.Random(42)`` draws the same sequence as the seeded
    global generator, without disturbing anyone else's use of ``random``.
    """
    words = list(words)
    random.Random(SHUFFLE_SEED).shuffle(words)
    return words


def split(words, block_size: int, stoi=None) -> Splits:
    """Shuffle, split the words 80/10/10 and build each part's examples.

    The vocabulary is inferred from all of ``words`` unless ``stoi`` is given.
    """
    if stoi is None:
        stoi, _ = build_vocab(words)
    words = shuffled(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    parts = (words[:n1], words[n1:n2], words[n2:])
    if not all(parts):
        raise DataError(f"{len(words)} words are too few to split 80/10/10 (a part would be empty); "
                        "at least 6 are needed")
    return Splits(*(build_dataset(p, stoi, block_size) for p in parts))


def resolve_input(path=None, log=None) -> Path:
    """The word list to train on.

    An explicit ``path`` must exist. Without one, ``names.txt`` in the working
    directory is used if present; otherwise makemore's names.txt is downloaded
    once into the cache folder and checked against its known sha256, so that a
    truncated or substituted file is never trained on. ``log`` (default: print
    to stderr) hears about a download.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"input file {str(path)!r} does not exist" if not path.exists()
                            else f"input {str(path)!r} is not a file")
        return path
    local = Path("names.txt")
    if local.is_file():
        return local
    cached = cache_dir() / "names.txt"
    if cached.is_file() and _sha256(cached.read_bytes()) == NAMES_SHA256:
        return cached
    url = os.environ.get(NAMES_URL_ENV) or NAMES_URL
    (log or _stderr)(f"symbp: downloading {url} to {cached}")
    data = _download(url)
    digest = _sha256(data)
    if digest != NAMES_SHA256:
        raise DataError(f"the file downloaded from {url} has sha256 {digest[:12]}…, not the expected "
                        f"{NAMES_SHA256[:12]}…; nothing was kept; pass -i FILE to train on your own words")
    from symbp.fileio import write_atomic

    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, data.decode("utf-8"))  # verified names.txt is ASCII: the bytes round-trip
    except OSError as e:
        raise DataError(f"cannot store the download in {str(cached.parent)!r}: {e}") from None
    return cached


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            data = resp.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = str(e.reason)
    except Exception as e:  # timeouts, resets, truncated transfers: all mean "no usable file"
        reason = str(e) or type(e).__name__
    else:
        if len(data) <= MAX_DOWNLOAD_BYTES:
            return data
        reason = f"the response is larger than {MAX_DOWNLOAD_BYTES} bytes"
    raise DataError(f"cannot download names.txt from {url} ({reason}); "
                    "pass -i FILE with one word per line to train offline")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
