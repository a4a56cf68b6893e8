"""MMIDIDX: bytes built by hand (Megatron's layout) read correctly; round trips; clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from megabio.data.indexed_dataset import IndexedDataset, IndexedDatasetError, IndexedDatasetWriter, optimal_dtype


def write_megatron_layout(prefix, documents, dtype=np.uint16, code=8):
    """The .idx / .bin pair exactly as Megatron-LM's writer lays it out, built byte by byte."""
    sequences = [np.asarray(s, dtype=dtype) for doc in documents for s in doc]
    sizes = [len(s) for s in sequences]
    pointers, position = [], 0
    for size in sizes:
        pointers.append(position)
        position += size * np.dtype(dtype).itemsize
    doc_index = [0]
    for doc in documents:
        doc_index.append(doc_index[-1] + len(doc))
    header = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code)
    header += struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_index))
    body = struct.pack(f"<{len(sizes)}i", *sizes) + struct.pack(f"<{len(pointers)}q", *pointers)
    body += struct.pack(f"<{len(doc_index)}q", *doc_index)
    (prefix.parent / f"{prefix.name}.idx").write_bytes(header + body)
    (prefix.parent / f"{prefix.name}.bin").write_bytes(b"".join(s.tobytes() for s in sequences))


DOCS = [[[101, 7, 8, 102], [5]], [[9, 10, 11]], [[65000, 1, 2], [3, 4], [6]]]


def test_reads_hand_built_megatron_files(tmp_path):
    write_megatron_layout(tmp_path / "corpus", DOCS)
    dataset = IndexedDataset(tmp_path / "corpus")
    assert dataset.dtype == np.uint16 and len(dataset) == 6 and dataset.num_documents == 3
    assert [s.tolist() for s in dataset.document(2)] == DOCS[2]
    assert dataset[1].tolist() == [5]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_writer_round_trip_is_byte_identical_to_megatron_layout(tmp_path, dtype):
    write_megatron_layout(tmp_path / "expected", DOCS, dtype, code=8 if dtype == np.uint16 else 4)
    with IndexedDatasetWriter(tmp_path / "ours", dtype) as writer:
        for doc in DOCS:
            writer.add_document(doc)
    for suffix in (".idx", ".bin"):
        assert (tmp_path / f"ours{suffix}").read_bytes() == (tmp_path / f"expected{suffix}").read_bytes()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_merge_and_optimal_dtype(tmp_path):
    for name, docs in (("a", DOCS[:1]), ("b", DOCS[1:])):
        with IndexedDatasetWriter(tmp_path / name) as writer:
            for doc in docs:
                writer.add_document(doc)
    with IndexedDatasetWriter(tmp_path / "merged") as writer:
        writer.merge(tmp_path / "a")
        writer.merge(tmp_path / "b")
    merged = IndexedDataset(tmp_path / "merged")
    assert [[s.tolist() for s in merged.document(d)] for d in range(3)] == DOCS
    assert optimal_dtype(30522) == np.uint16 and optimal_dtype(65500) == np.int32


def test_interrupted_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), IndexedDatasetWriter(tmp_path / "partial") as writer:
        writer.add_document([[1, 2, 3]])
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage, message", [
    (lambda idx, bin_: (idx.write_bytes(b"NOTMAGIC!" + idx.read_bytes()[9:]), None), "not an MMIDIDX index"),
    (lambda idx, bin_: idx.write_bytes(idx.read_bytes()[:9] + struct.pack("<Q", 2) + idx.read_bytes()[17:]),
     "unsupported index version 2"),
    (lambda idx, bin_: idx.write_bytes(idx.read_bytes()[:17] + b"\x63" + idx.read_bytes()[18:]),
     "unknown dtype code 99"),
    (lambda idx, bin_: idx.write_bytes(idx.read_bytes()[:40]), "truncated"),
    (lambda idx, bin_: bin_.write_bytes(bin_.read_bytes()[:10]), "points to byte"),
])
def test_damaged_files_are_named(tmp_path, damage, message):
    write_megatron_layout(tmp_path / "corpus", DOCS)
    damage(tmp_path / "corpus.idx", tmp_path / "corpus.bin")
    with pytest.raises(IndexedDatasetError, match=message):
        IndexedDataset(tmp_path / "corpus")


def test_missing_files(tmp_path):
    with pytest.raises(IndexedDatasetError, match="not found"):
        IndexedDataset(tmp_path / "absent")
