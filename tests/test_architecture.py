"""The package's shape, checked: no import circles, and no module outside the task and network registries asks
which model family a run is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gankit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """gankit modules that ``path`` imports anywhere (function bodies too: a late import is still a dependency),
    except under ``if TYPE_CHECKING:``; importing a.b.c also runs a and a.b."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    skip = {
        id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            if not t.startswith("gankit"):
                continue
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                cand = ".".join(parts[:i])
                # The importing module's own parent packages have run before it: not a dependency.
                if cand in modules and cand != name and not name.startswith(cand + "."):
                    found.add(cand)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None."""
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


def test_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"gankit.a": {"gankit.b"}, "gankit.b": {"gankit.c"}, "gankit.c": {"gankit.a"}}) == [
        "gankit.a",
        "gankit.b",
        "gankit.c",
        "gankit.a",
    ]
    assert find_cycle({"gankit.a": {"gankit.b"}, "gankit.b": set()}) is None


def test_config_schema_and_core_are_leaves() -> None:
    graph = import_graph()
    for leaf in (
        "gankit.config.schema",
        "gankit.core.errors",
        "gankit.core.io",
        "gankit.core.registry",
        "gankit.core.yamlio",
    ):
        outside = {m for m in graph[leaf] if not m.startswith("gankit.core")}
        assert not outside, f"{leaf} imports {outside}"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in ROOT.rglob("*.py") if p.parent.name not in ("tasks", "nets")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_model_family_branches_outside_the_registries(path: Path) -> None:
    """``if kind == "pix2pix"``-style tests belong to gankit/tasks (and nets); everything else asks the task."""
    from gankit.nets import MODELS
    from gankit.tasks import TASKS

    names = set(TASKS.names()) | set(MODELS.names())
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            hit = [c for c in consts if isinstance(c, str) and c in names]
            assert not hit, f"{path.relative_to(ROOT)}:{node.lineno} compares with the family/model name {hit[0]!r}"


# Files outside gankit/tasks and gankit/nets that may name a family, and why.
NAMES_A_FAMILY = {
    # the paired data sets suggest the model that trains on pairs (model.name, beneath the user's layers)
    "data/paired/readers.py": {"pix2pix"},
    "data/unpaired.py": {"cyclegan"},  # likewise: the unpaired sets suggest the model that trains on two domains
}


def _family_tests(tree: ast.AST, families: set[str], models: set[str], shape: bool = True) -> list[tuple[int, str]]:
    """(line, what) for each place that names a model family or tells families apart: a family's name as a string
    (not a docstring), a family or model name in a comparison or membership test, or a test of the data's shape
    (``data.targets is None``: paired or not) that stands for a family test (with ``shape``: not in gankit/data,
    whose containers carry targets or not)."""
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in families
            and id(node) not in docstrings
        ):
            found.append((node.lineno, f"names the family {node.value!r}"))
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            consts = [
                c
                for s in sides
                for c in (
                    [s]
                    if isinstance(s, ast.Constant)
                    else s.elts
                    if isinstance(s, (ast.Tuple, ast.List, ast.Set))
                    else []
                )
            ]
            hit = [
                c.value
                for c in consts
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in families | models
            ]
            if hit:
                found.append((node.lineno, f"compares with the family/model name {hit[0]!r}"))
            if (
                shape
                and any(isinstance(s, ast.Attribute) and s.attr == "targets" for s in sides)
                and any(isinstance(s, ast.Constant) and s.value is None for s in sides)
            ):
                found.append((node.lineno, "tells families apart by the data's shape (targets is None)"))
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for p in ROOT.rglob("*.py") if p.parent.name not in ("tasks", "nets")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_file_outside_the_families_names_a_family(path: Path) -> None:
    """A family lives in gankit/tasks/<family>.py and its networks in gankit/nets/: everything else asks the family
    (its TaskSpec, its task) and never names one, nor decides by the data's shape which one it is."""
    from gankit.nets import MODELS
    from gankit.tasks import TASKS

    rel = str(path.relative_to(ROOT))
    families, models = set(TASKS.names()), set(MODELS.names())
    tree = ast.parse(path.read_text())
    found = [
        (line, what)
        for line, what in _family_tests(tree, families, models, shape=not rel.startswith("data/"))
        if not any(f"'{name}'" in what for name in NAMES_A_FAMILY.get(rel, ()))
    ]
    assert not found, f"{rel}:{found[0][0]} {found[0][1]}"


def test_the_family_check_finds_family_tests() -> None:
    """The check above is not vacuous: each kind of family test it looks for is found."""
    fams, models = {"gan", "pix2pix"}, {"dcgan", "pix2pix"}
    for src in (
        'meta = {"recipe": "gan"}',
        'ok = name in ("dcgan", "mlp")',
        'if cfg.model.name == "pix2pix": pass',
        "shape = data.shape if data.targets is None else data.targets.shape[1:]",
    ):
        assert _family_tests(ast.parse(src), fams, models), src
    for src in ('"""A docstring that says gan."""', "x = cfg.model.name", "ok = data.labels is None"):
        assert not _family_tests(ast.parse(src), fams, models), src


# What a family's step leaves to FamilyTask (gankit/tasks/base.py): this process's share of the data and of what is
# drawn for the whole batch, the gradient all-reduce, loss scaling and the optimizer step. A family calls
# self.batch / self.gather / self.rows / self.whole / self.backward / self.update instead.
PLUMBING = {"next_shard", "shard", "unshard", "share", "sync_grads"}  # of gankit.training.distributed
PRECISION_STEPS = {"backward", "step", "backward_step"}  # of the task's Precision (self.prec)


def _plumbing(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each place a family module does the base class's plumbing itself."""
    aliases: set[str] = set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod == "torch.distributed" or mod.endswith("training.distributed"):
                found += [(node.lineno, f"imports {a.name} from {mod}") for a in node.names if a.name in PLUMBING]
            if mod == "torch" or mod.endswith("training"):
                aliases |= {a.asname or a.name for a in node.names if a.name == "distributed"}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.endswith("distributed"):
                    found.append((node.lineno, f"imports {a.name}"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if node.attr in PLUMBING and isinstance(v, ast.Name) and v.id in aliases:
            found.append((node.lineno, f"calls the distributed helper {node.attr}"))
        if node.attr in PRECISION_STEPS and isinstance(v, ast.Attribute) and v.attr == "prec":
            found.append((node.lineno, f"calls prec.{node.attr} (use self.backward / self.update)"))
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "tasks").glob("*.py") if p.name not in ("base.py", "__init__.py")),
    ids=lambda p: p.name,
)
def test_a_family_step_is_plain_pytorch(path: Path) -> None:
    """Sharding, gradient sync and precision are the base class's: a family (and the template new ones copy) runs
    the same step on one process or many without calling them."""
    found = _plumbing(ast.parse(path.read_text()))
    assert not found, f"tasks/{path.name}:{found[0][0]} {found[0][1]}"


def test_the_plumbing_check_finds_plumbing() -> None:
    for src in (
        "from ..training import distributed as ddp\nx = ddp.shard(z)",
        "from ..training.distributed import sync_grads",
        "import torch.distributed as dist",
        "self.prec.backward_step(loss, 'g', opt)",
        "self.prec.step('d', opt)",
    ):
        assert _plumbing(ast.parse(src)), src
    for src in (
        "from ..training import distributed as ddp\nn = ddp.world_size()",
        "self.update('g', loss)\nwith self.prec.autocast(): pass",
        "x = self.rows(z)",
    ):
        assert not _plumbing(ast.parse(src)), src
