"""Megatron-LM's indexed dataset (MMIDIDX), byte for byte, so existing preprocessed corpora load.

`.idx` (little-endian): b"MMIDIDX\\x00\\x00", <Q version 1, <B dtype code, <Q sequence count, <Q document
count, int32 sequence lengths, int64 byte pointers into `.bin`, int64 document indices (sequence offsets
of each document boundary, starting with 0). `.bin`: the token arrays back to back, read by memmap.
For BERT data each sequence is one sentence.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from megabio.io.atomic import StagedFile, atomic_file

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES: dict[int, type] = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
                           7: np.float32, 8: np.uint16}
_CODES = {np.dtype(t): code for code, t in DTYPES.items()}
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count


class IndexedDatasetError(ValueError):
    """A malformed or inconsistent .idx / .bin pair; the message names the file and the problem."""


def optimal_dtype(vocab_size: int) -> type:
    """uint16 when every id fits (vocab under 65,500, Megatron's rule), else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


class IndexedDatasetWriter:
    """Streams sequences to `<prefix>.bin` and writes `<prefix>.idx` on `finalize()`.

    Both files are written under temporary names and renamed at the end, so an interrupted run leaves no
    half-written dataset. Use as a context manager: leaving it with an exception removes the partial files.
    """

    def __init__(self, prefix: str | os.PathLike, dtype: type = np.uint16) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _CODES:
            raise IndexedDatasetError(f"dtype {self.dtype} has no MMIDIDX code; use one of "
                                      f"{sorted(str(np.dtype(t)) for t in DTYPES.values())}")
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._bin_file = StagedFile(f"{self.prefix}.bin")
        self._bin = open(self._bin_file.staging, "wb")  # closed by finalize() or abort()
        self._sizes: list[int] = []
        self._doc_index: list[int] = [0]

    def add_document(self, sequences: list[np.ndarray] | list[list[int]]) -> None:
        """Append one document made of `sequences` (e.g. its sentences' token ids)."""
        for sequence in sequences:
            array = np.asarray(sequence, dtype=self.dtype)
            self._bin.write(array.tobytes(order="C"))
            self._sizes.append(len(array))
        self._doc_index.append(len(self._sizes))

    def merge(self, other_prefix: str | os.PathLike) -> None:
        """Append a whole dataset written by another writer (e.g. one worker's shard)."""
        other = IndexedDataset(other_prefix)
        if other.dtype != self.dtype:
            raise IndexedDatasetError(f"{other_prefix}: dtype {other.dtype} differs from {self.dtype}")
        offset = len(self._sizes)
        with open(f"{other_prefix}.bin", "rb") as source:
            for block in iter(lambda: source.read(1 << 24), b""):
                self._bin.write(block)
        self._sizes.extend(other.sizes.tolist())
        self._doc_index.extend((other.document_index[1:] + offset).tolist())

    def finalize(self) -> None:
        self._bin.close()
        sizes = np.asarray(self._sizes, dtype=np.int32)
        pointers = np.zeros(len(sizes), dtype=np.int64)
        if len(sizes) > 1:
            np.cumsum(sizes[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
        self._bin_file.commit()
        with atomic_file(f"{self.prefix}.idx") as tmp, open(tmp, "wb") as idx:  # last: it marks a complete dataset
            idx.write(_HEADER.pack(MAGIC, VERSION, _CODES[self.dtype], len(sizes), len(self._doc_index)))
            idx.write(sizes.tobytes(order="C"))
            idx.write(pointers.tobytes(order="C"))
            idx.write(np.asarray(self._doc_index, dtype=np.int64).tobytes(order="C"))

    def abort(self) -> None:
        self._bin.close()
        self._bin_file.discard()

    def __enter__(self) -> IndexedDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


class IndexedDataset:
    """Read-only view of `<prefix>.idx` / `<prefix>.bin`; `dataset[i]` is sequence i as a numpy array."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = Path(prefix)
        idx_path, bin_path = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
        for path in (idx_path, bin_path):
            if not path.is_file():
                raise IndexedDatasetError(f"{path}: not found (a dataset is named by its prefix, without .bin/.idx)")
        raw = idx_path.read_bytes()
        if len(raw) < _HEADER.size:
            raise IndexedDatasetError(f"{idx_path}: truncated header ({len(raw)} bytes)")
        magic, version, code, count, doc_count = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise IndexedDatasetError(f"{idx_path}: not an MMIDIDX index (magic {magic!r})")
        if version != VERSION:
            raise IndexedDatasetError(f"{idx_path}: unsupported index version {version} (expected {VERSION})")
        if code not in DTYPES:
            raise IndexedDatasetError(f"{idx_path}: unknown dtype code {code}")
        self.dtype = np.dtype(DTYPES[code])
        needed = _HEADER.size + count * 4 + count * 8 + doc_count * 8
        if len(raw) < needed:
            raise IndexedDatasetError(f"{idx_path}: truncated ({len(raw)} bytes, the header promises {needed})")
        offset = _HEADER.size
        self.sizes = np.frombuffer(raw, dtype=np.int32, count=count, offset=offset)
        self.pointers = np.frombuffer(raw, dtype=np.int64, count=count, offset=offset + count * 4)
        self.document_index = np.frombuffer(raw, dtype=np.int64, count=doc_count, offset=offset + count * 12)
        bin_size = bin_path.stat().st_size
        if count:
            end = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize
            if end > bin_size:
                raise IndexedDatasetError(f"{bin_path}: {bin_size} bytes, but the index points to byte {end} "
                                          f"(truncated .bin, or .idx from another dataset)")
        if doc_count and (self.document_index[0] != 0 or self.document_index[-1] != count
                          or np.any(np.diff(self.document_index) < 0)):
            raise IndexedDatasetError(f"{idx_path}: document indices are not a 0..{count} prefix")
        self._bin = np.memmap(bin_path, dtype=np.uint8, mode="r") if bin_size else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.pointers[i])
        return self._bin[start: start + int(self.sizes[i]) * self.dtype.itemsize].view(self.dtype)

    @property
    def num_documents(self) -> int:
        return len(self.document_index) - 1

    def document(self, d: int) -> list[np.ndarray]:
        """The sequences of document d."""
        return [self[i] for i in range(int(self.document_index[d]), int(self.document_index[d + 1]))]
