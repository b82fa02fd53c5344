"""The package reads as a design: sub-packages by stage, no import circle, and the
Snakefile's imports free of torch. Read from the code's own import statements."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "geolifeclef"

SNAKEFILE_PACKAGES = ("settings",)
"""Sub-packages the Snakefile may import, with the torch-free top-level modules below."""
TOP_LEVEL = ("atomic", "errors", "layout", "survey_layout", "rule_logging", "plotting")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_nodes(tree: ast.AST, deferred_too: bool):
    """The import statements of ``tree``; without ``deferred_too``, not those inside functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif deferred_too or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from import_nodes(node, deferred_too)


def imported_modules(tree: ast.AST, known: set[str], deferred_too: bool) -> set[str]:
    """The package's modules that ``tree`` imports."""
    found = set()
    for node in import_nodes(tree, deferred_too):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        )
        found.update(name for name in names if name in known)
    return found


def import_graph(deferred_too: bool) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text())
        graph[name] = imported_modules(tree, known, deferred_too) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_even_through_deferred_imports():
    cycle = find_cycle(import_graph(deferred_too=True))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_workflow_imports_nothing_from_the_demo_generator():
    """The demo is a data source like the archive: only its own rules' scripts read it."""
    graph = import_graph(deferred_too=True)
    for name, imports in graph.items():
        if name.startswith("geolifeclef.demo"):
            continue
        assert not [m for m in imports if m.startswith("geolifeclef.demo")], name


def test_settings_import_only_settings_and_torch_free_top_level_modules():
    graph = import_graph(deferred_too=True)
    allowed = {f"geolifeclef.{name}" for name in TOP_LEVEL} | {"geolifeclef"}
    for name, imports in graph.items():
        if not name.startswith(tuple(f"geolifeclef.{p}" for p in SNAKEFILE_PACKAGES)):
            continue
        outside = {
            other
            for other in imports
            if other not in allowed
            and not other.startswith(tuple(f"geolifeclef.{p}" for p in SNAKEFILE_PACKAGES))
        }
        assert not outside, f"{name} imports {sorted(outside)}: the Snakefile imports it"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_a_deferred_import_says_why(path):
    """An import inside a function is there to keep a heavy module (torch, mlflow,
    sklearn) out of the Snakefile's parse or a light command: it says so on its line or
    the line above."""
    lines = path.read_text().splitlines()
    tree = ast.parse(path.read_text())
    unexplained = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom):
                line = lines[node.lineno - 1]
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if "#" not in line and not above.startswith("#"):
                    unexplained.append(f"{path.name}:{node.lineno}: {line.strip()}")
    assert not unexplained, "deferred imports without a reason:\n" + "\n".join(unexplained)


SCRIPTS = PACKAGE.parents[0] / "scripts"
TORCH_FREE_SCRIPTS = (
    "ingest_observations",
    "extract_env",
    "extract_env_patches",
    "cache_patch_shard",
    "cache_patches",
    "compute_patch_stats",
    "compute_normalization_stats",
    "describe_map_model",
    "map_demo_truth",
    "map_mess",
    "summarize_maps",
    "map_model",
    "importance_model",
    "respond_model",
    "predict_baseline",
    "evaluate_model",
)
"""Rule scripts that need no network (or load one only for a network's maps): loading
torch costs a job ~2-3 CPU seconds, more than the tiny demo's whole extraction work."""
HEAVY_ONLY_WHERE_USED = {
    # timm backbones only (the torch-free scripts cannot load it: the test above)
    "timm": ("train_model", "predict_model"),
    "sklearn": ("map_model", "importance_model", "respond_model", "predict_baseline"),
    "matplotlib": ("predict_baseline", "fit_blend", "analyze_class_frequency", "respond_model"),
    # the loader reads the patch statistics from the module that computes them
    "numba": ("train_model", "predict_model"),
}
"""Libraries that rule scripts load only where they use them, with the scripts that load
them only on demand: timm (+ torchvision, torch._dynamo, ~3 CPU s) for timm backbones,
scikit-learn (~2 CPU s) to fit a forest or query a kNN, matplotlib (~0.5 CPU s) to draw,
numba (~1 CPU s with its compiled loops) to compute patch statistics."""


def _loaded_by(scripts, modules: set[str]) -> str:
    """Which of ``modules`` the top-level imports of ``scripts`` load, as a sorted list."""
    imports = []
    for name in scripts:
        tree = ast.parse((SCRIPTS / f"{name}.py").read_text())
        imports += [
            ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        ]
    code = "\n".join(
        [
            *imports,
            "import sys",
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(modules)!r})))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_the_scripts_that_need_no_network_never_load_torch():
    loaded = _loaded_by(TORCH_FREE_SCRIPTS, {"torch", "torchvision"})
    assert loaded == "[]", f"one of {TORCH_FREE_SCRIPTS} loads {loaded}"


@pytest.mark.parametrize("library", sorted(HEAVY_ONLY_WHERE_USED))
def test_heavy_libraries_load_only_in_the_jobs_that_use_them(library):
    scripts = HEAVY_ONLY_WHERE_USED[library]
    loaded = _loaded_by(scripts, {library, "torchvision"} if library == "timm" else {library})
    assert loaded == "[]", f"one of {scripts} loads {loaded} at import"


def test_the_modules_run_first_exist():
    """conftest.SLOWEST_FIRST names test modules by file: a renamed one would silently fall
    back to the end of the run."""
    from conftest import SLOWEST_FIRST

    tests = Path(__file__).parent
    assert [name for name in SLOWEST_FIRST if not (tests / name).is_file()] == []
