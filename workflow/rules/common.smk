# Shared definitions: where the input data lives and how the rules find it.

from pathlib import Path

from geolifeclef.layout import REGIONS, SPLITS, DatasetLayout

DEMO_ROOT = Path("resources/demo/glc22")
DEMO_TRUTH = Path("resources/demo/truth")
USING_DEMO = not config["data"]["root"]
DATA_ROOT = DEMO_ROOT if USING_DEMO else Path(config["data"]["root"]).expanduser()
LAYOUT = DatasetLayout(DATA_ROOT)
