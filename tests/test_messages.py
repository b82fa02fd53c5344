"""What a user reads when something goes wrong (issue "Faults a user meets", items 5 and 6):
a config error that a dry run can see is refused by it, and each fault's message names the
file, the problem and the fix in the user's words, once."""

import errno
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake
from PIL import Image

from geolifeclef.errors import OutputWriteError
from geolifeclef.layout import DatasetLayout
from geolifeclef.models.backbones import check_backbone
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import PatchFileError
from geolifeclef.patches.store import STORES, CacheSpec

# --------------------------------------------------------------------------------------
# A timm backbone's name is checked when the workflow is parsed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "close", "family"),
    [
        ("efficientnet-b0", "`efficientnet_b0`", "efficientnet*"),
        ("mobilenetv3_large", "`mobilenetv3_large_100`", "mobilenetv*"),
        ("ResNet50", "`resnet50`", "resnet*"),
    ],
)
def test_an_unknown_backbone_is_answered_with_its_own_family(name, close, family):
    """The closest names are suggested for a typo (a dash, a missing suffix, capitals), and
    the listing command lists the family of the name given, not always ``resnet*``."""
    with pytest.raises(ValueError) as refused:
        check_backbone(name)
    message = str(refused.value)
    assert message.startswith(f"unknown backbone {name!r}: not 'small' nor a timm model.")
    assert f"Did you mean {close}" in message
    assert f"print(timm.list_models('{family}'))" in message


def test_a_dry_run_refuses_unknown_backbones_of_experiments_and_sweeps(tmp_path):
    """Refused before any job, once per place in the config that names it: an experiment's
    entry, and a sweep that varies the backbone (not once per member); a sweep that takes
    its base's backbone is left to the base's line."""
    (tmp_path / "config.yaml").write_text(
        "demo: {scale: tiny, patch_size: 256}\n"
        "experiments:\n"
        "  odd: {model: {kind: cnn, modalities: [rgb], cnn: {backbone: resnet34x}}}\n"
        "  plain: {model: {kind: cnn, modalities: [rgb]}}\n"
        "sweeps:\n"
        "  backbones:\n"
        "    base: plain\n"
        "    grid: {model.cnn.backbone: [small, inception_v4x], train.learning_rate: [0.1, 0.01]}\n"
        "  rates: {base: odd, grid: {train.learning_rate: [0.1, 0.01]}}\n"
    )
    result = run_snakemake(tmp_path, "all", "--dry-run", timeout=300)
    shown = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the config has 2 problem(s)" in shown, shown[-3000:]
    odd = "experiments.odd.model.cnn.backbone: unknown backbone 'resnet34x'"
    sweep = "sweeps.backbones.model.cnn.backbone: unknown backbone 'inception_v4x'"
    assert shown.count(odd) == 1 and shown.count(sweep) == 1, shown[-3000:]
    assert "Did you mean `inception_v4`" in shown and "list_models('inception*')" in shown
    assert "Traceback" not in shown
    assert not (tmp_path / "resources").exists()


# --------------------------------------------------------------------------------------
# A full disk while a patch store is written
# --------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 256 kB (a tmpfs: mounting needs root; skipped without it),
    ``remount(size)`` to give it room."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def remount(size: str, *options: str) -> None:
        command = ["mount", "-t", "tmpfs", "-o", ",".join([*options, f"size={size}"])]
        done = subprocess.run([*command, "tmpfs", str(mount)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"no small file system here (mount: {done.stderr.strip()})")

    remount("256k")
    yield mount, lambda size: remount(size, "remount")
    subprocess.run(["umount", "--lazy", str(mount)], check=False)  # even if a file is open


@pytest.mark.parametrize(("store", "workers"), [("decoded", 2), ("encoded", 1)])
def test_a_full_disk_names_the_store_file_the_free_space_and_the_fix(
    tiny_demo, tables, small_disk, tmp_path, store, workers
):
    """The build stops with the file being written, the free space and the fix (a decoded
    store: also what it takes and the smaller ways to store the patches), where it raised
    a bare ``[Errno 28]`` (from a worker process too); given room, it resumes from its last
    chunk into the same bytes as a build that never ran out."""
    layout, _, _ = tiny_demo
    disk, remount = small_disk
    observations = pd.read_parquet(tables["train"])
    spec = CacheSpec(size=32, mode="resize", store=store)
    out = disk / "patches" / "train"
    with pytest.raises(OutputWriteError) as refused:
        build_patch_cache(layout, observations, out, spec, workers=workers, chunk_rows=16)
    message = str(refused.value)
    assert refused.value.errno == errno.ENOSPC
    scratch = disk / "patches" / "shards" / "train" / ".1-of-1.partial"
    assert f"{scratch}/" in message and "No space left on device, " in message, message
    assert " kB free there. Fix: free space on that disk" in message, message
    assert "snakemake --directory" in message
    assert ("patches.store: encoded" in message) == (store == "decoded"), message
    assert "this shard's decoded patches take 2 MB at patches.size 32" in message or (
        store == "encoded"
    )

    remount("32m")
    report = build_patch_cache(layout, observations, out, spec, workers=workers, chunk_rows=16)
    assert report.resumed_chunks > 0
    build_patch_cache(layout, observations, tmp_path / "clean", spec, chunk_rows=16)
    for path in sorted(out.glob("1-of-1/*")):
        assert path.read_bytes() == (tmp_path / "clean" / "1-of-1" / path.name).read_bytes()


# --------------------------------------------------------------------------------------
# A patch file saved in another image format
# --------------------------------------------------------------------------------------


def _saved_as_png(path: Path) -> None:
    """The file's own pixels, saved in PNG under its name (an export tool's default)."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        pixels = np.asarray(image)
    Image.fromarray(pixels).save(path, format="PNG")


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(("modality", "expected"), [("rgb", "JPEG"), ("landcover", "TIFF")])
def test_a_png_under_a_patch_name_is_refused_in_the_same_words_by_both_stores(
    tiny_demo, tables, tmp_path, store, modality, expected
):
    """Where the decoded store took a PNG ``.jpg`` (PIL opens any image) and the encoded
    one refused it in libjpeg's words (``tjDecompressHeader3(): Could not determine
    subsampling level``), both refuse it, saying what it is and what it must be."""
    layout, _, _ = tiny_demo
    copy = DatasetLayout(tmp_path / "glc22")
    for region in ("fr", "us"):
        shutil.copytree(layout.patch_folder(region), copy.patch_folder(region))
    observations = pd.read_parquet(tables["val"])
    path = copy.patch(int(observations["observation_id"].iloc[3]), modality)
    _saved_as_png(path)
    spec = CacheSpec(64, "crop", store=store)
    with pytest.raises(PatchFileError) as refused:
        build_patch_cache(copy, observations, tmp_path / "patches" / "val", spec, progress=False)
    problem = (
        f"{path} (a PNG image, not a {expected}: {modality} patches are {expected} files, "
        "as in the archive)"
    )
    assert problem in str(refused.value), str(refused.value)
    assert "Fix: restore the file from the archive" in str(refused.value)
