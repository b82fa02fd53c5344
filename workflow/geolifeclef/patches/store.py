"""What the two patch stores share: their settings, shards, bad files, and reading by row.

A patch cache of a split (``results/patches/{split}/``) is one of two stores:

- ``decoded``: the pixels, decoded once and cropped or resized to ``size``, in one
  memory-mappable array per modality (geolifeclef.patches.decoded). Fast to read, but 7 x
  S x S bytes per observation: 760 GB at 256 px for the archive.
- ``encoded``: the files' own bytes (JPEG and TIFF as in the archive) concatenated into
  one uint8 array per modality with int64 offsets (geolifeclef.patches.encoded); decoded,
  then cropped or resized, a batch at a time when read. About the archive's size on disk
  at every ``size``.

Either is built in ``shards`` (contiguous row ranges of the split, one job each) that a
gather step (geolifeclef.patches.cache) links into the cache folder with the index. This
module holds what both kinds share, so that neither imports the other.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.errors import writing_to
from geolifeclef.layout import ALL_PATCH_MODALITIES, MODALITIES
from geolifeclef.patches.geometry import MODES

STORES = ("decoded", "encoded")
BAD_FILE_POLICIES = ("fail", "fill")
CACHE_VERSION = 2
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"
SHARD_FILE = "shard.json"
FILLED_FILE = "filled.npy"
"""(rows, modalities) bool: True where a file was bad and its patch left empty (zeros)."""


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds (modalities, at which size), how it is stored and built."""

    size: int = 64
    mode: str = "resize"
    modalities: tuple[str, ...] = MODALITIES
    on_bad_file: str = "fail"
    store: str = "decoded"
    shards: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        unknown = [m for m in self.modalities if m not in ALL_PATCH_MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(
                f"patches.modalities {list(self.modalities)}: "
                f"choose from {tuple(ALL_PATCH_MODALITIES)}"
            )
        if self.mode not in MODES:
            raise ValueError(f"patches.mode {self.mode!r}: choose from {MODES}")
        if self.on_bad_file not in BAD_FILE_POLICIES:
            raise ValueError(f"patches.on_bad_file {self.on_bad_file!r}: {BAD_FILE_POLICIES}")
        if self.store not in STORES:
            raise ValueError(f"patches.store {self.store!r}: choose from {STORES}")
        if self.size < 1 or self.shards < 1:
            raise ValueError(f"patches.size {self.size} and shards {self.shards} must be >= 1")

    def shard_settings(self) -> dict:
        """The settings a shard's content depends on: the encoded store keeps the files'
        bytes whatever the size and mode (applied when it is read), the decoded store
        keeps pixels at that size and mode."""
        settings = asdict(self)
        del settings["shards"]
        if self.store == "encoded":
            del settings["size"], settings["mode"]
        return json.loads(json.dumps(settings))  # tuples -> lists, as read back from JSON


# --------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------


def shard_name(index: int, count: int) -> str:
    """``"2-of-4"``: the 1-based name Snakemake's scatter/gather gives a shard."""
    return f"{index}-of-{count}"


def parse_shard(name: str) -> tuple[int, int]:
    """``"2-of-4"`` -> (2, 4)."""
    try:
        index, count = (int(part) for part in name.split("-of-"))
    except ValueError:
        raise ValueError(f"shard {name!r} is not of the form '<i>-of-<n>'") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {name!r}: i must be between 1 and n")
    return index, count


def shard_rows(n: int, index: int, count: int) -> tuple[int, int]:
    """Row range [start, stop) of shard ``index`` of ``count`` over ``n`` rows (sizes
    differ by at most one row)."""
    return (index - 1) * n // count, index * n // count


def ids_digest(observation_ids: np.ndarray) -> str:
    """Fingerprint of an id sequence: a shard is only resumed or gathered for its rows."""
    return hashlib.sha256(np.ascontiguousarray(observation_ids, np.int64)).hexdigest()


# --------------------------------------------------------------------------------------
# Bad files and build reports
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadFile:
    """A patch file that could not be used: missing, unreadable, wrong shape or dtype."""

    observation_id: int
    modality: str
    path: str
    problem: str


@dataclass
class CacheReport:
    """What a build did."""

    n: int = 0
    source_size: int = 0
    resumed_chunks: int = 0
    built_chunks: int = 0
    bad_files: list[BadFile] = field(default_factory=list)

    def add(self, other: "CacheReport") -> None:
        self.n += other.n
        self.source_size = other.source_size or self.source_size
        self.resumed_chunks += other.resumed_chunks
        self.built_chunks += other.built_chunks
        self.bad_files.extend(other.bad_files)


@dataclass(frozen=True)
class ChunkResult:
    """What a worker hands back for one chunk of rows: its flags, bad files and, for the
    encoded store, the bytes to append (the decoded store wrote its rows itself)."""

    index: int
    flags: np.ndarray
    bad: list[BadFile]
    blobs: dict[str, list[bytes]] | None = None


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


class NpyRows:
    """The rows of an ``.npy`` file, read with ``os.preadv`` into this process's own memory
    rather than through a memory map.

    A memory map's pages count in the resident memory of every process that touched them: a
    statistics or loader worker shows the pages of the store it has read (up to all of it,
    once per worker), which Snakemake's and SLURM's accounting sum over a job's processes,
    and may kill the job for. Read, a row costs a copy (kilobytes) and a process's memory is
    what it holds. The file is opened once per process (the descriptor is not pickled).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = header(handle)
            self.data_offset = handle.tell()
        if fortran_order and len(shape) > 1:
            raise ValueError(f"{self.path}: a Fortran-ordered array, not rows")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _read_into(self, buffer: memoryview, offset: int) -> None:
        while len(buffer):
            done = os.preadv(self._descriptor(), [buffer], self.data_offset + offset)
            if done == 0:
                raise OSError(f"{self.path}: ends before byte {self.data_offset + offset}")
            buffer, offset = buffer[done:], offset + done

    def take(self, rows: np.ndarray) -> np.ndarray:
        """``array[rows]`` for rows in any order: one read per run of consecutive rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"rows outside 0..{len(self) - 1} of {self.path}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        into = np.empty_like(out) if not np.array_equal(order, np.arange(len(rows))) else out
        flat = into.reshape(len(rows), -1).view(np.uint8)
        # A run: rows that follow each other (a repeated row starts a run of its own).
        runs = np.flatnonzero(np.diff(ordered) != 1) + 1
        for start, stop in zip([0, *runs], [*runs, len(rows)], strict=True):
            self._read_into(memoryview(flat[start:stop]).cast("B"), ordered[start] * self.row_bytes)
        if into is not out:
            out[order] = into
        return out

    def byte_ranges(self, starts: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
        """The bytes ``[start, end)`` of a 1-d uint8 file, one array a range (views of one
        buffer); ranges that follow each other are read at once."""
        starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        positions = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=positions[1:])
        buffer = np.empty(int(positions[-1]), dtype=np.uint8)
        view = memoryview(buffer)
        # A run ends where the next range does not start at this one's end.
        breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
        for first, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), len(starts)], strict=True):
            self._read_into(view[positions[first] : positions[stop]], int(starts[first]))
        return [buffer[positions[k] : positions[k + 1]] for k in range(len(starts))]


class PatchStore:
    """A finished cache folder: meta, index, and its patches by row, whatever the store.

    ``read(modality, rows)`` gives the (len(rows), C, size, size) patches of those rows
    in that order, in the modality's array dtype; zeros for a filled (bad) file; ``None``
    for every row. The
    shards' files are opened on first use in each process, so a store (and a Dataset
    holding one) pickles small and works in DataLoader workers.
    """

    kind = ""

    def __init__(self, directory: Path, meta: dict, index: pd.DataFrame | None) -> None:
        self.directory, self.meta, self.index = Path(directory), meta, index
        self.starts = np.array([s["start"] for s in meta["shards"]], dtype=np.int64)
        self._opened: list | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.meta["modalities"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def source_size(self) -> int:
        return int(self.meta["source_size"])

    def __len__(self) -> int:
        return int(self.meta["n"])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_opened": None}  # each process opens its own files

    def check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise KeyError(
                f"{self.directory} holds {list(self.modalities)}, not {modality!r}; "
                "add it to patches.modalities and rebuild"
            )

    def shards(self) -> list:
        """Each shard's opened files (``_open_shard``), once per process."""
        if self._opened is None:
            self._opened = [
                self._open_shard(self.directory / s["name"]) for s in self.meta["shards"]
            ]
        return self._opened

    def by_shard(self, rows: np.ndarray):
        """Yield (shard position, positions in ``rows``, rows local to the shard), the
        local rows ascending (sequential page reads)."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        if len(rows) and (sorted_rows[0] < 0 or sorted_rows[-1] >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1} of {self.directory}")
        owner = np.searchsorted(self.starts, sorted_rows, side="right") - 1
        for shard in np.unique(owner):
            where = owner == shard
            yield int(shard), order[where], sorted_rows[where] - self.starts[shard]

    def read(self, modality: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The patches of ``rows`` (every row when None: mind the memory)."""
        self.check_modality(modality)
        return self._read(modality, np.arange(len(self)) if rows is None else np.asarray(rows))

    def _read(self, modality: str, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _open_shard(self, folder: Path):
        raise NotImplementedError


def patch_shape(n: int, modality: str, size: int) -> tuple[int, int, int, int]:
    """Shape of ``n`` patches of a modality: (n, channels, size, size)."""
    return (n, ALL_PATCH_MODALITIES[modality].channels, size, size)


# --------------------------------------------------------------------------------------
# Writing a shard
# --------------------------------------------------------------------------------------


def write_at(path: Path, data, offset: int, sync: bool = False) -> None:
    """Write all of ``data`` (bytes-like, an array) at byte ``offset`` of the existing file
    ``path``; with ``sync``, on disk before it returns. A full disk or a closed folder is
    raised naming the file (``OutputWriteError``). A store's rows are written here, never
    through a memory map: a memory map's write on a full disk kills the process with
    SIGBUS ("Bus error"), which says nothing of the file or the disk."""
    with writing_to(path):
        fd = os.open(path, os.O_WRONLY)
        try:
            data, done = memoryview(data).cast("B"), 0
            while done < len(data):  # os.pwrite may write less
                done += os.pwrite(fd, data[done:], offset + done)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)


def npy_data_offset(path: Path) -> int:
    """Byte offset of the array data in an .npy file (after its header)."""
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        if major == 1:
            np.lib.format.read_array_header_1_0(handle)
        else:
            np.lib.format.read_array_header_2_0(handle)
        return handle.tell()


def create_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """An .npy file of the given shape, zero-filled (sparse on disk until written)."""
    if int(np.prod(shape)) == 0:
        np.save(path, np.zeros(shape, dtype=dtype))
        return
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    del array


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """How a store kind lays out the rows of one shard in its scratch folder.

    The build driver (``patches.cache.build_shard``) runs ``worker(task)`` for each chunk
    of rows (in worker processes), then ``commit`` in the parent process, whose journal
    line (None: not done) is what a resumed build trusts. ``ordered`` writers get the
    chunks in row order (they append); the others in any order.
    """

    ordered = False

    def __init__(self, work: Path, spec: CacheSpec, n: int, source_size: int, chunk_rows: int):
        self.work, self.spec, self.n = work, spec, n
        self.source_size, self.chunk_rows = source_size, chunk_rows

    @staticmethod
    def default_chunk_rows(spec: CacheSpec) -> int:
        raise NotImplementedError

    def create(self) -> None:
        """Allocate the files of a fresh scratch folder."""
        raise NotImplementedError

    def resume(self, lines: list[str]) -> set[int]:
        """The chunks done, from the journal's complete lines (cutting what is not)."""
        raise NotImplementedError

    def task(self, layout, index: int, observation_ids: np.ndarray):
        """A picklable work unit for ``worker`` (``layout.patch(id, modality)`` gives the
        files: a ``DatasetLayout`` or a ``SurveyPatchFiles``)."""
        raise NotImplementedError

    @staticmethod
    def worker(task) -> ChunkResult:
        raise NotImplementedError

    def commit(self, result: ChunkResult, keep: bool) -> str | None:
        """Write what the parent writes for a chunk; its journal line, or None when it is
        not to be kept (a bad file under ``on_bad_file: fail``)."""
        raise NotImplementedError

    def finish(self) -> dict:
        """Make the files complete and durable; what ``shard.json`` says of each modality."""
        raise NotImplementedError

    @staticmethod
    def full_disk_alternative(spec: CacheSpec, n: int) -> str:
        """Another fix of a full disk than freeing space, for its message (``writing_to``),
        for a shard of ``n`` rows."""
        return ""
