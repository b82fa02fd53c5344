"""The encoded store: the patch files' own bytes, decoded when read (geolifeclef.patches.decode).

A shard folder holds, per modality, ``{modality}.npy``: a 1-d uint8 array, the bytes of
the files of its rows end to end (JPEG and TIFF as in the archive), and
``{modality}.offsets.npy``: int64 (rows + 1), where each row's bytes start (row i is
``data[offsets[i]:offsets[i + 1]]``; empty for a filled bad file). Disk use is the
files' bytes, without the file system's per-file overhead; the size and mode of the
patches are applied when they are read, so one store serves every input size.

A build reads and checks every file with the loader's decoders in worker processes; the
parent appends each chunk's bytes in row order, so the journal is a prefix of the chunks
(with the data lengths at its end): a resumed build cuts the data files back to the last
journaled chunk and goes on from there. The data file's .npy header is reserved when it
is created and written when the shard is complete.
"""

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geolifeclef.patches.decode import check_patch_bytes, decode_rows
from geolifeclef.patches.files import PatchFileError
from geolifeclef.patches.store import (
    BadFile,
    CacheSpec,
    ChunkResult,
    NpyRows,
    PatchStore,
    ShardWriter,
    create_npy,
    fsync_file,
    npy_data_offset,
    write_at,
)

CHUNK_ROWS = 256
"""Observations per work unit of a build (~8 MB of file bytes at 256 px)."""
HEADER_BYTES = 128
"""Room for the .npy header of a data file, written once its length is known."""


def npy_header(length: int) -> bytes:
    """The .npy (version 1.0) header of a 1-d uint8 array of ``length`` bytes, padded to
    HEADER_BYTES (numpy reads any header that ends with a newline)."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({length},), }}"
    room = HEADER_BYTES - 10  # magic (6), version (2), header length (2)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + text.ljust(room - 1).encode() + b"\n"


@dataclass(frozen=True)
class _ChunkTask:
    layout: object
    """Where the files are: ``patch(observation_id, modality)`` (ShardWriter.task)."""
    index: int
    observation_ids: np.ndarray
    modalities: tuple[str, ...]
    source_size: int


class EncodedWriter(ShardWriter):
    """Workers read and check the files; the parent appends their bytes in row order."""

    ordered = True

    @staticmethod
    def default_chunk_rows(spec: CacheSpec) -> int:
        return CHUNK_ROWS

    def _data(self, modality: str) -> Path:
        return self.work / f"{modality}.npy"

    def _offsets(self, modality: str) -> Path:
        return self.work / f"{modality}.offsets.npy"

    def create(self) -> None:
        for modality in self.spec.modalities:
            self._data(modality).write_bytes(npy_header(0))
            create_npy(self._offsets(modality), np.dtype(np.int64), (self.n + 1,))
        self.ends = dict.fromkeys(self.spec.modalities, 0)
        self.halted = False

    def resume(self, lines: list[str]) -> set[int]:
        ends, done = dict.fromkeys(self.spec.modalities, 0), 0
        for line in lines:
            fields = line.split()
            if len(fields) != 1 + len(self.spec.modalities) or fields[0] != str(done):
                break
            ends = dict(zip(self.spec.modalities, map(int, fields[1:]), strict=True))
            done += 1
        for modality, end in ends.items():  # bytes of a chunk appended but not journaled
            os.truncate(self._data(modality), HEADER_BYTES + end)
        self.ends, self.halted = ends, False
        return set(range(done))

    def task(self, layout, index: int, observation_ids: np.ndarray) -> _ChunkTask:
        return _ChunkTask(layout, index, observation_ids, self.spec.modalities, self.source_size)

    @staticmethod
    def worker(task: _ChunkTask) -> ChunkResult:
        """Read and check one chunk's files; their bytes (empty for a bad file)."""
        layout = task.layout
        flags = np.zeros((len(task.observation_ids), len(task.modalities)), dtype=bool)
        bad: list[BadFile] = []
        blobs: dict[str, list[bytes]] = {}
        for j, modality in enumerate(task.modalities):
            blobs[modality] = []
            for i, observation_id in enumerate(task.observation_ids):
                path = layout.patch(int(observation_id), modality)
                try:
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:
                        raise PatchFileError(path, "file is missing") from None
                    except OSError as error:
                        raise PatchFileError(path, f"unreadable ({error})") from None
                    check_patch_bytes(path, data, modality, task.source_size)
                except PatchFileError as error:
                    flags[i, j] = True
                    bad.append(BadFile(int(observation_id), modality, str(path), error.problem))
                    data = b""
                blobs[modality].append(data)
        return ChunkResult(task.index, flags, bad, blobs)

    def commit(self, result: ChunkResult, keep: bool) -> str | None:
        # Appending is in row order: nothing after a chunk that is not kept can be.
        self.halted = self.halted or not keep
        if self.halted:
            return None
        start = result.index * self.chunk_rows
        for modality, blobs in result.blobs.items():
            lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
            offsets = self.ends[modality] + np.cumsum(lengths)  # of rows start + 1, ...
            at = npy_data_offset(self._offsets(modality)) + (start + 1) * offsets.itemsize
            write_at(self._offsets(modality), offsets, at, sync=True)
            write_at(self._data(modality), b"".join(blobs), HEADER_BYTES + self.ends[modality])
            self.ends[modality] += int(lengths.sum())
        return " ".join([str(result.index), *(str(self.ends[m]) for m in self.spec.modalities)])

    def finish(self) -> dict:
        files = {}
        for modality in self.spec.modalities:
            with open(self._data(modality), "r+b") as handle:
                handle.write(npy_header(self.ends[modality]))
                handle.truncate(HEADER_BYTES + self.ends[modality])
            fsync_file(self._data(modality))
            fsync_file(self._offsets(modality))
            files[modality] = {
                "data": self._data(modality).name,
                "offsets": self._offsets(modality).name,
                "bytes": self.ends[modality],
            }
        return files


class EncodedStore(PatchStore):
    """Reads rows of an encoded store: their bytes, decoded and cropped or resized."""

    kind = "encoded"

    def _open_shard(self, folder: Path) -> dict[str, tuple[NpyRows, np.ndarray]]:
        # The offsets in memory (8 B a row); the bytes read when asked (``NpyRows``).
        return {
            m: (NpyRows(folder / f"{m}.npy"), np.load(folder / f"{m}.offsets.npy"))
            for m in self.modalities
        }

    def blobs(self, modality: str, rows: np.ndarray) -> list[np.ndarray]:
        """The stored bytes of ``rows``, in that order."""
        self.check_modality(modality)
        out: list = [None] * len(rows)
        shards = self.shards()
        for shard, positions, local in self.by_shard(rows):
            data, offsets = shards[shard][modality]
            found = data.byte_ranges(offsets[local], offsets[local + 1])
            for position, blob in zip(positions, found, strict=True):
                out[position] = blob
        return out

    def _read(self, modality: str, rows: np.ndarray) -> np.ndarray:
        return decode_rows(
            self.blobs(modality, rows), modality, self.source_size, self.size, self.mode
        )
