"""The manual: README.md is the front page, docs/ the site (mkdocs.yml); links hold."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_docs_site_builds_with_every_link_and_anchor_holding(tmp_path):
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = set(_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]))
    on_disk = {str(path.relative_to(REPO / "docs")) for path in (REPO / "docs").rglob("*.md")}
    assert listed == on_disk  # no page left out of the site's menu
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


def _pages(nav) -> list[str]:
    found = []
    for entry in nav:
        for value in entry.values():
            found += _pages(value) if isinstance(value, list) else [value]
    return found


def test_every_module_of_the_package_has_an_api_section():
    package = REPO / "workflow" / "geolifeclef"
    modules = {
        ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
    }
    documented = set()
    for page in (REPO / "docs" / "api").glob("*.md"):
        text = page.read_text()
        for block in text.split("::: ")[1:]:
            name = block.splitlines()[0].strip()
            if "show_submodules: true" in block.split("\n\n")[0]:  # a whole sub-package
                documented |= {m for m in modules if m.startswith(f"{name}.")}
            else:
                documented.add(name)
    assert modules == documented, sorted(modules ^ documented)


def test_the_front_pages_links_lead_to_files():
    for page in [REPO / "README.md", *REPO.glob("*/README.md")]:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: {target}"
