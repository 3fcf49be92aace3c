"""The project's shape, checked: the engine never imports the dashboard or its libraries (at any depth of
sub-packages), no module imports a module that imports it back, and the pins of pyproject.toml equal
requirements*.txt."""
import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "mmn_core"
UI_LIBS = {"streamlit", "plotly", "app"}


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names this file imports; relative `from .x import y` resolved inside mmn_core."""
    out = set()
    pkg = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out |= {mod} if node.module else {f"{mod}.{a.name}" for a in node.names}
            else:
                out.add(node.module or "")
    return out


def _engine_modules() -> dict[str, Path]:
    files = sorted(ENGINE.rglob("*.py"))
    return {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f for f in files}


def test_engine_never_imports_the_dashboard_or_its_libraries():
    mods = _engine_modules()
    assert len(mods) >= 12
    for name, f in mods.items():
        bad = {i for i in _imports(f) if i.split(".")[0] in UI_LIBS}
        assert not bad, f"{name} imports {bad}"


def test_the_layering_check_can_fail(tmp_path):
    f = tmp_path / "mmn_core" / "sub" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text("import os\n\ndef late():\n    from app import figures\n    from ..spec import x\n")
    found = _imports(f, tmp_path)
    assert {"os", "app", "mmn_core.spec"} <= found and any(i.split(".")[0] in UI_LIBS for i in found)


def test_no_import_cycles_between_engine_modules():
    """Module-level and function-level imports alike: a cycle means two modules that cannot be read apart."""
    mods = _engine_modules()
    graph = {}
    for name, f in mods.items():
        deps = set()
        for i in _imports(f):
            while i and i not in mods:
                i = i.rpartition(".")[0]          # `mmn_core.data.load` -> module mmn_core.data
            if i and i != name and i != "mmn_core":
                deps.add(i)
        graph[name] = deps
    state, cycles = {}, []

    def visit(n, path):
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])
    assert not cycles, cycles


def test_pyproject_dependencies_equal_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(project["dependencies"]) == sorted(p for p in pins if p)
    assert "torch==2.13.0" in project["dependencies"]
    dev = [ln.split("#")[0].strip() for ln in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    assert sorted(project["optional-dependencies"]["dev"]) == sorted(p for p in dev if p and not p.startswith("-r"))


def test_torch_threads_are_set_in_one_place(monkeypatch):
    import torch

    from mmn_core.threads import use_threads
    callers = [f for f in sorted((ROOT / "mmn_core").rglob("*.py")) + sorted((ROOT / "app").rglob("*.py"))
               if "set_num_threads" in f.read_text()]
    assert [f.name for f in callers] == ["threads.py"]
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("MMN_THREADS", "2")
        assert use_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("MMN_THREADS", "lots")
        assert use_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_one_vocabulary_of_model_kinds():
    """kinds.KINDS is the one list of model kinds: the checkpoint registry, the CLI's --model choices and the
    app's labels all follow it."""
    from app import figures as F
    from app import resources as R
    from mmn_core.checkpoint import MODEL_KINDS
    from mmn_core.cli import build_parser
    from mmn_core.kinds import KINDS, MODEL_NAMES
    assert tuple(MODEL_KINDS) == KINDS == tuple(MODEL_NAMES)
    assert R.KINDS is KINDS and R.MODEL_NAMES is MODEL_NAMES and F.MODEL_NAMES is MODEL_NAMES
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "model")
    assert tuple(train.choices) == KINDS
