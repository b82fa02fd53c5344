"""What a user reads when something goes wrong (issue "Faults a user meets", items 5 and 6):
a config error that a dry run can see is refused by it, and each fault's message names the
file, the problem and the fix in the user's words, once."""

import pytest
from conftest import run_snakemake

from geolifeclef.models.backbones import check_backbone

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
