"""Patch caches: the four patch files of every observation, in a store read by row.

Decoding 6.66 million small JPEG/TIFF files per epoch starves a GPU; a cache keeps them
in a few large files that a Dataset reads a batch at a time. Two stores (``patches.store``,
see geolifeclef.patches.store): ``decoded`` keeps pixels at the configured size,
``encoded`` the files' bytes, decoded when read. A cache folder
(``results/patches/{split}/``) holds:

=================  ==============================================================
file               content
=================  ==============================================================
``<i>-of-<n>/``    one folder per shard (rows of the split, in order): the store's
                   files (geolifeclef.patches.decoded, geolifeclef.patches.encoded),
                   ``filled.npy`` and ``shard.json``
``index.parquet``  n rows: ``row``, ``observation_id``, ``latitude``, ``longitude``,
                   ``species_id`` (null for test), ``filled`` and
                   ``filled_<modality>``: True where a file was missing or
                   unreadable and its patch is zeros (``on_bad_file: fill``);
                   a survey table's ``species_ids`` (the species of each survey)
``meta.json``      store, size, mode, source size, modalities, shards, counts
=================  ==============================================================

A build runs per shard (``build_shard``: one Snakemake job each, ``patches.shards``),
in worker processes a chunk of rows at a time (bounded memory), into a build folder
``.<shard>.build`` beside the shard with a journal of the chunks done and the size and
time of each file a chunk was built from (``sources.npy``): a killed build resumes where
it stopped, and the shard folder appears (by a rename) only once complete, with hard
links to the build's files. The build folder stays: when patch files change after a
build (a file that ``on_bad_file: fill`` zero-filled, restored; a file replaced in
place), the next build of the shard, which Snakemake runs because the split's
fingerprint changed (settings.archive.patch_files_fingerprint), rebuilds only the
chunks whose files changed (in the encoded store, which appends in row order, from the
first of them on), into copies of the files it rewrites: the cache built before, which
links the same files, is never changed under its readers. ``gather_shards`` then writes
the index and links the shards' files into the cache folder (hard links: no copy, no
extra disk), which also appears by a rename.
"""

import json
import logging
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError, listed, writing_to
from geolifeclef.layout import DatasetLayout
from geolifeclef.patches.decoded import DecodedStore, DecodedWriter
from geolifeclef.patches.encoded import EncodedStore, EncodedWriter
from geolifeclef.patches.files import PatchFileError, read_patch
from geolifeclef.patches.store import (
    BAD_FILE_POLICIES,
    CACHE_VERSION,
    FILLED_FILE,
    INDEX_FILE,
    META_FILE,
    SHARD_FILE,
    STORES,
    BadFile,
    CacheReport,
    CacheSpec,
    PatchStore,
    ShardWriter,
    create_npy,
    ids_digest,
    npy_data_offset,
    shard_name,
    shard_rows,
    write_at,
)
from geolifeclef.settings.archive import patch_file_states
from geolifeclef.settings.validation import check_geometry
from geolifeclef.survey_layout import SurveyPatchFiles

__all__ = [
    "BAD_FILE_POLICIES",
    "STORES",
    "CacheReport",
    "CacheSpec",
    "PatchStore",
    "build_patch_cache",
    "build_shard",
    "gather_shards",
    "open_patch_cache",
    "shard_folders",
]

log = logging.getLogger(__name__)

WRITERS: dict[str, type[ShardWriter]] = {"decoded": DecodedWriter, "encoded": EncodedWriter}
READERS: dict[str, type[PatchStore]] = {"decoded": DecodedStore, "encoded": EncodedStore}
PROBE_OBSERVATIONS = 50
"""Observations tried to find the side length of the source patches."""
BAD_FILES_LISTED = 20
"""Bad files an error message names (the log lists them all)."""
MANIFEST_FILE = "manifest.json"
JOURNAL_FILE = "journal.txt"
"""A line per chunk done, after its rows are written; it starts with the chunk's index."""
SOURCES_FILE = "sources.npy"
"""(rows, modalities, 2) int64: the size and modification time of the file each journaled
chunk was built from (settings.archive.patch_file_states)."""
BUILD_ONLY_FILES = (MANIFEST_FILE, JOURNAL_FILE, SOURCES_FILE)
"""Files of a build folder that its shard folder does not link."""


PatchFiles = DatasetLayout | SurveyPatchFiles
"""Where a cache's files are: ``patch(observation_id, modality)`` and ``root`` (the GLC
2022 archive, or one split of a survey edition's Sentinel-2 patches)."""


def probe_source_size(layout: PatchFiles, observation_ids: np.ndarray, spec: CacheSpec) -> int:
    """Side length of the source patches, from the first readable file."""
    tried = []
    for observation_id in observation_ids[:PROBE_OBSERVATIONS]:
        for modality in spec.modalities:
            path = layout.patch(int(observation_id), modality)
            try:
                return int(read_patch(path, modality).shape[0])
            except PatchFileError as error:
                tried.append(error)
    first = tried[0] if tried else None
    raise InputDataError(
        first.path if first else layout.root,
        f"none of the patch files of the first {PROBE_OBSERVATIONS} observations can be read"
        + (f" (first: {first.problem})" if first else ""),
        "check data.root: it must hold patches-fr/ and patches-us/ as in the archive"
        if isinstance(layout, DatasetLayout)
        else "check data.root: it must hold the archive's patch folders "
        + ", ".join(str(folder) for folder in layout.folders.values()),
    )


# --------------------------------------------------------------------------------------
# Building one shard
# --------------------------------------------------------------------------------------


def _prepare_build(
    work: Path, manifest: dict, writer: ShardWriter, sources: np.ndarray
) -> tuple[set[int], np.ndarray]:
    """Reuse the build folder if it was started for the same build; else start afresh.

    Returns the chunks done (``_resume``) and the (row, modality) of each file changed
    since a journaled chunk read it (``sources``: the files' states now).
    """
    manifest_path = work / MANIFEST_FILE
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = None
        if previous == manifest:
            return _resume(work, writer, sources)
    if work.exists():
        log.info("discarding the build folder %s (started for another build)", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    writer.create()
    create_npy(work / FILLED_FILE, np.dtype(bool), (writer.n, len(writer.spec.modalities)))
    create_npy(work / SOURCES_FILE, np.dtype(np.int64), sources.shape)
    (work / JOURNAL_FILE).touch()
    # Written last: a folder without it is never resumed.
    with atomic_path(manifest_path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))
    return set(), np.zeros((0, 2), dtype=np.int64)


def _resume(work: Path, writer: ShardWriter, sources: np.ndarray) -> tuple[set[int], np.ndarray]:
    """The chunks of a build folder done from the files as they are now: those of the
    journal whose files kept their size and time (``sources``), as the writer resumes
    them; and the (row, modality) of the files that changed. The files that the chunks
    still to build rewrite are first copied where another folder links them."""
    journal = work / JOURNAL_FILE
    # A line is only complete with its newline (a kill or a full disk can cut the last
    # one); a cut one is cut off, or the next line would be appended to it.
    text = journal.read_text() if journal.exists() else ""
    if not text.endswith("\n") and journal.exists():
        os.truncate(journal, len(text[: text.rfind("\n") + 1].encode()))
    lines = text.split("\n")[:-1]
    built = np.load(work / SOURCES_FILE, mmap_mode="r")
    kept, changed = [], []
    for line in lines:
        index = line.split(" ", 1)[0]
        if not index.isdigit():
            continue
        rows = slice(int(index) * writer.chunk_rows, (int(index) + 1) * writer.chunk_rows)
        same = (built[rows] == sources[rows]).all(axis=2)
        if same.all():
            kept.append(line)
        else:
            changed.extend(np.argwhere(~same) + [rows.start, 0])
    changed = np.array(changed, dtype=np.int64).reshape(-1, 2)
    if len(kept) == len(lines) and (work / SHARD_FILE).exists():
        return set(range(len(range(0, writer.n, writer.chunk_rows)))), changed
    if len(kept) < len(lines):
        _own_files(work)  # before the writer truncates or rewrites any of them
        (work / SHARD_FILE).unlink(missing_ok=True)
    done = writer.resume(kept)
    kept = [line for line in kept if int(line.split(" ", 1)[0]) in done]
    if len(kept) < len(lines):
        with atomic_path(journal) as temporary:
            temporary.write_text("".join(line + "\n" for line in kept))
    return done, changed


def _own_files(folder: Path) -> None:
    """Give each file of ``folder`` that another folder links (hard links) a copy of its
    own, so that rewriting it leaves the other folder's file as it was."""
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_nlink > 1:
            with atomic_path(path) as temporary:
                shutil.copyfile(path, temporary)


def _link_shard(work: Path, shard_dir: Path) -> None:
    """The shard folder: hard links to the finished build's files (not its manifest,
    journal and sources), appearing by a rename."""
    with atomic_path(shard_dir) as temporary:
        _link_tree(work, temporary, leave_out=BUILD_ONLY_FILES)


def build_shard(
    layout: PatchFiles,
    observations: pd.DataFrame,
    shard_dir: Path,
    spec: CacheSpec,
    shard: tuple[int, int] = (1, 1),
    workers: int = 1,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Build shard ``shard`` of the split's ``observations`` (``_build_shard`` says how);
    a full disk or a folder one may not write is named, with the free space and the fixes
    (the file being written, else the shard): the scratch folder keeps its journal, and
    the build resumes from its last chunk once there is room."""
    start, stop = shard_rows(len(observations), *shard)
    alternative = WRITERS[spec.store].full_disk_alternative(spec, stop - start)
    with writing_to(shard_dir, alternative):
        return _build_shard(
            layout, observations, shard_dir, spec, shard, workers, chunk_rows, progress
        )


def _build_shard(
    layout: PatchFiles,
    observations: pd.DataFrame,
    shard_dir: Path,
    spec: CacheSpec,
    shard: tuple[int, int] = (1, 1),
    workers: int = 1,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Build shard ``shard`` = (i, n) of the split's ``observations`` (a table of
    ``observation_id``, ``latitude``, ``longitude``, ``species_id``, in row order) into
    ``shard_dir``, in ``spec.store``'s layout.

    Bad files (missing, unreadable, wrong shape) follow ``spec.on_bad_file``: ``fail``
    raises a PatchFileError listing them after every other chunk is read (a rerun after
    mending the files redoes only their chunks in the decoded store, from the first of
    them on in the encoded store, which appends in row order); ``fill`` leaves zeros
    (an empty blob) and flags them. A file whose size or time changed since its chunk was
    built (one filled, restored) has its chunk rebuilt the same way; a shard whose files
    are all as they were is kept, or linked again from its build folder.
    """
    shard_dir = Path(shard_dir)
    all_ids = observations["observation_id"].to_numpy(np.int64)
    # Probed on the split, not the shard: every shard agrees (and an empty one too).
    source_size = probe_source_size(layout, all_ids, spec) if len(all_ids) else spec.size
    if spec.store == "decoded":
        check_geometry(source_size, spec.size, spec.mode)
    start, stop = shard_rows(len(all_ids), *shard)
    ids = all_ids[start:stop]
    n = len(ids)
    report = CacheReport(n=n, source_size=source_size)
    writer_class = WRITERS[spec.store]
    chunk_rows = chunk_rows or writer_class.default_chunk_rows(spec)
    work = shard_dir.parent / f".{shard_dir.name}.build"
    writer = writer_class(work, spec, n, source_size, chunk_rows)
    manifest = {
        "version": CACHE_VERSION,
        "root": str(Path(layout.root).resolve()),
        "observation_ids_sha256": ids_digest(ids),
        "n": n,
        "settings": spec.shard_settings(),
        "source_size": source_size,
        "chunk_rows": chunk_rows,
    }
    # Stated before any is read: a file changed while it is read is rebuilt next time.
    sources = patch_file_states(layout, ids, spec.modalities)
    done, changed = _prepare_build(work, manifest, writer, sources)
    starts = range(0, n, chunk_rows)
    if len(changed):
        _log_changed_files(layout, ids, spec.modalities, changed, len(starts) - len(done))
    if len(done) == len(starts) and (work / SHARD_FILE).exists():
        if _shard_file(shard_dir) != _shard_file(work):
            _link_shard(work, shard_dir)
        log.info("shard %s is built already, from the same files", shard_name(*shard))
        report.resumed_chunks = len(starts)
        return report
    # Rows written by write_at, not through memory maps: on a full disk a memory map's
    # write kills the job with SIGBUS, which names neither the file nor the disk.
    flags_at, flags_row = npy_data_offset(work / FILLED_FILE), len(spec.modalities)
    sources_at, sources_row = npy_data_offset(work / SOURCES_FILE), sources[:1].nbytes
    tasks = [
        writer.task(layout, k, ids[s : s + chunk_rows])
        for k, s in enumerate(starts)
        if k not in done
    ]
    report.resumed_chunks = len(starts) - len(tasks)
    if report.resumed_chunks:
        log.info("resuming: %d of %d chunks already built", report.resumed_chunks, len(starts))
    log.info(
        "%s store, shard %s: rows %d-%d (%d observations; %s) of %d px sources, %d workers",
        spec.store,
        shard_name(*shard),
        start,
        stop,
        n,
        ", ".join(spec.modalities),
        source_size,
        workers,
    )
    with (
        open(work / JOURNAL_FILE, "a") as journal,
        tqdm(
            total=n,
            initial=n - sum(len(t.observation_ids) for t in tasks),
            desc=f"patch shard {shard_name(*shard)}",
            unit="obs",
            mininterval=2,
            disable=not progress,
        ) as bar,
    ):
        for result in _run_chunks(tasks, workers, writer.worker, writer.ordered):
            rows = slice(result.index * chunk_rows, result.index * chunk_rows + len(result.flags))
            write_at(work / FILLED_FILE, result.flags, flags_at + rows.start * flags_row, sync=True)
            report.bad_files.extend(result.bad)
            line = writer.commit(result, keep=not (result.bad and spec.on_bad_file == "fail"))
            if line is not None:
                write_at(work / SOURCES_FILE, sources[rows], sources_at + rows.start * sources_row)
                journal.write(line + "\n")  # after its rows are written: never a lie
                journal.flush()
            report.built_chunks += 1
            bar.update(len(result.flags))
    _log_bad_files(report.bad_files, spec.on_bad_file)
    if report.bad_files and spec.on_bad_file == "fail":
        raise BadFilesError(report.bad_files)
    files = writer.finish()
    shard_meta = {
        **manifest,
        "store": spec.store,
        "shard": shard_name(*shard),
        "start": start,
        "stop": stop,
        "files": files,
    }
    (work / SHARD_FILE).write_text(json.dumps(shard_meta, indent=1) + "\n")
    _link_shard(work, shard_dir)
    return report


def _shard_file(folder: Path) -> str | None:
    """The text of a folder's ``shard.json``, None without one."""
    path = folder / SHARD_FILE
    return path.read_text() if path.exists() else None


def _log_changed_files(layout, ids, modalities, changed: np.ndarray, chunks: int) -> None:
    """Name the patch files that changed since the build read them (``changed``: their
    (row, modality)), and the chunks rebuilt for them."""
    paths = [layout.patch(int(ids[row]), modalities[j]) for row, j in changed.tolist()]
    log.warning(
        "%d patch files changed since the shard was built from them: %s; "
        "rebuilding their chunks (%d chunks to build)",
        len(paths),
        listed(paths, BAD_FILES_LISTED),
        chunks,
    )


def _run_chunks(tasks: list, workers: int, worker, ordered: bool):
    """Yield chunk results, in this process or in ``workers`` processes; in task order
    when ``ordered``, else as they finish."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield worker(task)
        return
    pool = ProcessPoolExecutor(workers)
    try:
        if ordered:
            yield from pool.map(worker, tasks)
        else:
            futures: list[Future] = [pool.submit(worker, task) for task in tasks]
            for future in as_completed(futures):
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _log_bad_files(bad: list[BadFile], policy: str) -> None:
    if not bad:
        return
    level = logging.ERROR if policy == "fail" else logging.WARNING
    action = "cannot be used" if policy == "fail" else "were filled with zeros and flagged"
    log.log(level, "%d patch files %s:", len(bad), action)
    for item in sorted(bad, key=lambda b: (b.observation_id, b.modality)):
        log.log(level, "  %s: %s", item.path, item.problem)


class BadFilesError(PatchFileError):
    """Bad files met by a build under ``on_bad_file: fail`` (``bad_files`` lists them)."""

    def __init__(self, bad: list[BadFile]) -> None:
        files = listed((f"{b.path} ({b.problem})" for b in bad), BAD_FILES_LISTED, "; ")
        more = " (all listed in the log)" if len(bad) > BAD_FILES_LISTED else ""
        super().__init__(Path(bad[0].path), f"{len(bad)} patch files cannot be used: {files}{more}")
        self.bad_files = list(bad)


# --------------------------------------------------------------------------------------
# Gathering the shards into the cache folder
# --------------------------------------------------------------------------------------


def _link_tree(source: Path, target: Path, leave_out: tuple[str, ...] = ()) -> None:
    """``target`` with hard links to the files of ``source`` but those named in
    ``leave_out`` (copies where the file system has no hard links)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name in leave_out:
            continue
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def _check_shards(shards: list[dict], ids: np.ndarray, spec: CacheSpec, folders) -> None:
    """Refuse shards that are not this split's rows, in order, built with ``spec``."""
    position = 0
    for meta, folder in zip(shards, folders, strict=True):
        problem = None
        if meta["store"] != spec.store or meta["settings"] != spec.shard_settings():
            problem = f"built with other settings ({meta['settings']}, {meta['store']} store)"
        elif meta["start"] != position:
            problem = f"starts at row {meta['start']}, expected {position}"
        elif meta["observation_ids_sha256"] != ids_digest(ids[meta["start"] : meta["stop"]]):
            problem = "holds other observations than the table's rows"
        elif meta["source_size"] != shards[0]["source_size"]:
            problem = f"{meta['source_size']} px sources, others {shards[0]['source_size']}"
        if problem:
            raise ValueError(
                f"{folder}: shard {problem}; remove it and rebuild it "
                "(snakemake --forcerun cache_patch_shard)"
            )
        position = meta["stop"]
    if position != len(ids):
        raise ValueError(f"the shards cover rows 0-{position}, the table has {len(ids)}")


def gather_shards(
    shard_dirs: list[Path], observations: pd.DataFrame, output_dir: Path, spec: CacheSpec
) -> dict:
    """The cache folder from its shards (``_gather_shards`` says how); a full disk or a
    folder one may not write is named, with the free space and the fixes."""
    with writing_to(output_dir):
        return _gather_shards(shard_dirs, observations, output_dir, spec)


def _gather_shards(
    shard_dirs: list[Path], observations: pd.DataFrame, output_dir: Path, spec: CacheSpec
) -> dict:
    """Write the cache folder ``output_dir`` from its shards (in row order): the index of
    ``observations`` with the shards' flags, the meta, and the shards' files linked in.
    Returns the meta. The shard folders are left as they are."""
    output_dir = Path(output_dir)
    folders = [Path(d) for d in shard_dirs]
    shards = [json.loads((d / SHARD_FILE).read_text()) for d in folders]
    ids = observations["observation_id"].to_numpy(np.int64)
    _check_shards(shards, ids, spec, folders)
    source_size = shards[0]["source_size"]
    check_geometry(source_size, spec.size, spec.mode)
    flags = np.concatenate([np.load(d / FILLED_FILE) for d in folders])
    work = output_dir.parent / f".{output_dir.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    index = _index(observations, flags, spec.modalities)
    pq.write_table(pa.Table.from_pandas(index, preserve_index=False), work / INDEX_FILE)
    for folder, meta in zip(folders, shards, strict=True):
        _link_tree(folder, work / meta["shard"])
    meta = {
        "version": CACHE_VERSION,
        "store": spec.store,
        "n": len(index),
        "size": spec.size,
        "mode": spec.mode,
        "source_size": source_size,
        "modalities": list(spec.modalities),
        "shards": [{"name": s["shard"], "start": s["start"], "stop": s["stop"]} for s in shards],
        "n_filled": int(index["filled"].sum()),
        "on_bad_file": spec.on_bad_file,
    }
    (work / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(work, output_dir)
    return meta


def _index(observations: pd.DataFrame, flags: np.ndarray, modalities) -> pd.DataFrame:
    n = len(observations)
    index = pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.int64),
            "observation_id": observations["observation_id"].to_numpy(np.int64),
            "latitude": observations["latitude"].to_numpy(np.float64),
            "longitude": observations["longitude"].to_numpy(np.float64),
            "species_id": observations["species_id"].astype("Int32").array
            if "species_id" in observations
            else pd.array([pd.NA] * n, dtype="Int32"),
            "filled": flags.any(axis=1) if n else np.zeros(0, bool),
        }
    )
    for j, modality in enumerate(modalities):
        index[f"filled_{modality}"] = flags[:, j]
    if "species_ids" in observations:  # a survey table: the set of species of each row
        index["species_ids"] = observations["species_ids"].to_numpy()
    return index


# --------------------------------------------------------------------------------------
# A whole cache in one call, and reading one
# --------------------------------------------------------------------------------------


def shard_folders(output_dir: Path, shards: int) -> list[Path]:
    """Where the shards of the cache ``results/patches/{split}`` are built:
    ``results/patches/shards/{split}/<i>-of-<n>`` (what the workflow's rules use)."""
    output_dir = Path(output_dir)
    base = output_dir.parent / "shards" / output_dir.name
    return [base / shard_name(i, shards) for i in range(1, shards + 1)]


def build_patch_cache(
    layout: PatchFiles,
    observations: pd.DataFrame,
    output_dir: Path,
    spec: CacheSpec,
    workers: int = 1,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Build every shard of ``spec.shards`` one after the other, then gather them into
    ``output_dir`` and remove the shard folders: the workflow's jobs in one call (for
    scripts, notebooks and benchmarks). Bad files under ``fail`` are raised together
    after every shard was tried; a call after mending them resumes each shard."""
    report, bad = CacheReport(), []
    folders = shard_folders(output_dir, spec.shards)
    for i, folder in enumerate(folders, start=1):
        try:
            shard = (i, spec.shards)
            report.add(
                build_shard(
                    layout, observations, folder, spec, shard, workers, chunk_rows, progress
                )
            )
        except BadFilesError as error:
            bad.extend(error.bad_files)
    if bad:
        raise BadFilesError(bad)
    gather_shards(folders, observations, output_dir, spec)
    shutil.rmtree(folders[0].parent)
    if not any(folders[0].parent.parent.iterdir()):
        folders[0].parent.parent.rmdir()
    return report


def open_patch_cache(directory: str | Path, index: bool = True) -> PatchStore:
    """Open a cache folder written by ``gather_shards`` (checks that it is complete);
    ``index=False`` leaves its index unread (``None``), for readers that have it."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{directory} is not a finished patch cache (no {META_FILE}); "
            "build it with: snakemake cache_patches"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{directory}: cache version {meta.get('version')}, expected {CACHE_VERSION}; "
            "rebuild it with: snakemake cache_patches --forcerun cache_patch_shard"
        )
    table = pq.read_table(directory / INDEX_FILE).to_pandas() if index else None
    return READERS[meta["store"]](directory, meta, table)
