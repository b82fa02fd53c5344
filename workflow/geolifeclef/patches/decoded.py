"""The decoded store: every patch decoded once, cropped or resized, in NumPy arrays.

A shard folder holds one array per modality, ``{modality}.npy`` (rows, C, S, S) in the
modality's array dtype (uint8; int16 little-endian for altitude), channels first as
torch wants them. A build decodes a chunk of rows per worker process, each writing its
rows straight into the arrays (fixed row size: any order), so the journal lists the
chunks done in any order. Reading is by memory mapping, one sorted fancy-indexing read
per shard. The dtypes are the files', so a ``crop`` store is bit-exact with the files.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geolifeclef.errors import size_text
from geolifeclef.layout import ALL_PATCH_MODALITIES
from geolifeclef.patches.files import PatchFileError, read_patch
from geolifeclef.patches.geometry import transform_patch
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
    patch_shape,
    write_at,
)

CHUNK_BYTES = 32 * 2**20
"""Decoded bytes per work unit of a build (per worker process)."""


@dataclass(frozen=True)
class _ChunkTask:
    layout: object
    """Where the files are: ``patch(observation_id, modality)`` (ShardWriter.task)."""
    work: Path
    index: int
    start: int
    observation_ids: np.ndarray
    spec: CacheSpec
    source_size: int
    offsets: dict[str, int]
    """Modality -> byte offset of the data in its .npy file (after the header)."""


class DecodedWriter(ShardWriter):
    """Workers decode, transform and write their rows into preallocated arrays."""

    @staticmethod
    def default_chunk_rows(spec: CacheSpec) -> int:
        row_bytes = sum(
            ALL_PATCH_MODALITIES[m].array_dtype.itemsize
            * ALL_PATCH_MODALITIES[m].channels
            * spec.size**2
            for m in spec.modalities
        )
        return int(np.clip(CHUNK_BYTES // row_bytes, 1, 512))

    def create(self) -> None:
        for modality in self.spec.modalities:
            create_npy(
                self.work / f"{modality}.npy",
                ALL_PATCH_MODALITIES[modality].array_dtype,
                patch_shape(self.n, modality, self.spec.size),
            )

    def resume(self, lines: list[str]) -> set[int]:
        return {int(line) for line in lines if line.strip().isdigit()}

    def task(self, layout, index: int, observation_ids: np.ndarray) -> _ChunkTask:
        if not hasattr(self, "_offsets"):
            self._offsets = {
                m: npy_data_offset(self.work / f"{m}.npy") for m in self.spec.modalities
            }
        start = index * self.chunk_rows
        return _ChunkTask(
            layout,
            self.work,
            index,
            start,
            observation_ids,
            self.spec,
            self.source_size,
            self._offsets,
        )

    @staticmethod
    def worker(task: _ChunkTask) -> ChunkResult:
        """Decode one chunk of observations and write its rows into the scratch arrays."""
        layout, spec = task.layout, task.spec
        n = len(task.observation_ids)
        flags = np.zeros((n, len(spec.modalities)), dtype=bool)
        bad: list[BadFile] = []
        for j, modality in enumerate(spec.modalities):
            block = np.zeros(
                patch_shape(n, modality, spec.size), ALL_PATCH_MODALITIES[modality].array_dtype
            )
            for i, observation_id in enumerate(task.observation_ids):
                path = layout.patch(int(observation_id), modality)
                try:
                    array = read_patch(path, modality, size=task.source_size)
                except PatchFileError as error:
                    flags[i, j] = True  # the row stays zero, flagged in the index
                    bad.append(BadFile(int(observation_id), modality, str(path), error.problem))
                    continue
                block[i] = transform_patch(array, modality, spec.size, spec.mode)
            offset = task.offsets[modality] + task.start * block[:1].nbytes
            write_at(task.work / f"{modality}.npy", block, offset)
        return ChunkResult(task.index, flags, bad)

    def commit(self, result: ChunkResult, keep: bool) -> str | None:
        return str(result.index) if keep else None  # its rows are on disk already

    @staticmethod
    def full_disk_alternative(spec: CacheSpec, n: int) -> str:
        size = spec.size
        needed = sum(
            ALL_PATCH_MODALITIES[m].array_dtype.itemsize * int(np.prod(patch_shape(n, m, size)))
            for m in spec.modalities
        )
        return (
            f"store fewer bytes: this shard's decoded patches take {size_text(needed)} at "
            f"patches.size {size}; a smaller size takes less, and patches.store: encoded "
            "about the size of the patch files"
        )

    def finish(self) -> dict:
        files = {}
        for modality in self.spec.modalities:
            fsync_file(self.work / f"{modality}.npy")
            files[modality] = {
                "file": f"{modality}.npy",
                "dtype": ALL_PATCH_MODALITIES[modality].array_dtype.str,
                "shape": patch_shape(self.n, modality, self.spec.size),
            }
        return files


class DecodedStore(PatchStore):
    """Reads rows of a decoded store from its shards' arrays (``NpyRows``)."""

    kind = "decoded"

    def _open_shard(self, folder: Path) -> dict[str, NpyRows]:
        return {m: NpyRows(folder / f"{m}.npy") for m in self.modalities}

    def _read(self, modality: str, rows: np.ndarray) -> np.ndarray:
        out = np.empty(
            patch_shape(len(rows), modality, self.size), ALL_PATCH_MODALITIES[modality].array_dtype
        )
        shards = self.shards()
        for shard, positions, local in self.by_shard(rows):
            out[positions] = shards[shard][modality].take(local)
        return out
