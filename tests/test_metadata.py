"""The package's metadata: one version, the license in the sdist, the command line's name and
``--version``, and ``dir()`` of an optimizer. The wheel's tag and LICENSE are checked by
``tests/wheel/check_wheel.py`` (``make wheel``)."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo

ROOT = Path(__file__).resolve().parents[1]

# torch.optim.Optimizer's public methods and attributes.
TORCH_API = {
    "add_param_group",
    "defaults",
    "load_state_dict",
    "param_groups",
    "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook",
    "register_state_dict_post_hook",
    "register_state_dict_pre_hook",
    "register_step_post_hook",
    "register_step_pre_hook",
    "state",
    "state_dict",
    "step",
    "zero_grad",
}
OPTIMIZERS = [
    fo.SGD,
    fo.Adagrad,
    fo.RMSprop,
    fo.Adadelta,
    fo.Adam,
    fo.AdamW,
    fo.AdagradNorm,
    fo.NAdam,
    fo.RAdam,
    fo.Adamax,
    fo.Lion,
]


def cargo_version() -> str:
    """``version`` of Cargo.toml's ``[package]`` table."""
    package = (ROOT / "Cargo.toml").read_text().split("[package]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', package, flags=re.M)
    assert found, "Cargo.toml's [package] has no version"
    return found.group(1)


def test_version_has_one_source() -> None:
    assert fo.__version__ == importlib.metadata.version("ferroptim") == cargo_version()
    project = (ROOT / "pyproject.toml").read_text().split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, flags=re.M), (
        "pyproject: version not dynamic"
    )
    assert not re.search(r"^version\s*=", project, flags=re.M), "pyproject.toml writes a version"
    init = (ROOT / "python" / "ferroptim" / "__init__.py").read_text()
    assert not re.search(r"__version__\s*=\s*['\"]", init), "__init__.py writes a version"


def test_metadata_lists_the_supported_pythons_and_license() -> None:
    meta = importlib.metadata.metadata("ferroptim")
    classifiers = set(meta.get_all("Classifier") or [])
    assert meta["Requires-Python"] == ">=3.9"
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "License :: OSI Approved :: MIT License" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Repository", "Changelog", "Issues"} <= set(urls), urls
    assert "Copyright (c)" in (ROOT / "LICENSE").read_text()


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_dir_shows_the_public_api_only(cls: type[fo.Optimizer]) -> None:
    opt = cls([np.zeros(3)], lr=0.1)
    names = dir(opt)
    assert names == sorted(names)
    assert TORCH_API <= set(names), TORCH_API - set(names)
    internal = [n for n in names if n.startswith("_")]
    assert not internal, internal
    spec = {n for n, hint in fo.Optimizer.__annotations__.items() if "ClassVar" in str(hint)}
    assert "convention_knobs" in spec and "state_slots" in spec
    assert not spec & set(names), spec & set(names)
    for name in names:  # each is real
        getattr(opt, name)
    # Hidden from dir(), still there.
    assert opt.state_slots == cls.state_slots


COMPLETE = """
import numpy as np, ferroptim as fo
from IPython.core.completer import provisionalcompleter
from IPython.testing.globalipapp import get_ipython
shell = get_ipython()
assert shell.Completer.use_jedi
shell.user_ns["opt"] = fo.Adam([np.zeros(3)], lr=0.1)
with provisionalcompleter():
    print(*sorted({c.text for c in shell.Completer.completions("opt.", 4)}))
"""


def test_tab_completion_shows_the_public_api_only() -> None:
    """IPython's default completer (jedi's, as in Jupyter) on ``opt.``, in a child process."""
    pytest.importorskip("jedi")
    pytest.importorskip("IPython")
    out = subprocess.run([sys.executable, "-c", COMPLETE], capture_output=True, text=True, check=True)
    shown = set(out.stdout.split())
    assert TORCH_API <= shown, TORCH_API - shown
    assert not shown & {"state_slots", "convention_knobs", "conventions", "required_state", "_step"}, shown


def sdist(tmp_path: Path) -> Path:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which("maturin")
    if maturin is None:
        pytest.skip("maturin is not installed")
    subprocess.run([maturin, "sdist", "--out", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    (archive,) = tmp_path.glob("ferroptim-*.tar.gz")
    return archive


def test_sdist_ships_license_and_changelog(tmp_path: Path) -> None:
    with tarfile.open(sdist(tmp_path)) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "pyproject.toml", "Cargo.toml"} <= names


@pytest.fixture
def cli_extra() -> None:
    for module in ("matplotlib", "sklearn", "tqdm"):
        pytest.importorskip(module, reason="the command line needs the experiments extra")


@pytest.mark.usefixtures("cli_extra")
@pytest.mark.parametrize("how", ["module", "script"])
def test_cli_names_itself_as_invoked_and_tells_its_version(how: str) -> None:
    if how == "module":
        command, prog = [sys.executable, "-m", "ferroptim"], "python -m ferroptim"
    else:
        script = Path(sys.executable).parent / "ferroptim"
        if not script.exists():
            pytest.skip(f"no console script at {script}")
        command, prog = [str(script)], "ferroptim"
    usage = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True).stdout
    assert usage.startswith(f"usage: {prog} [-h] [--version]"), usage
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"ferroptim {importlib.metadata.version('ferroptim')}"


def test_missing_experiments_extra_says_how_to_install_it() -> None:
    """The commands that work today: from a clone and from a built wheel."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # as if the extra were not installed
        "from ferroptim.experiments import cli\n"
        "cli.main(['rates'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert "pip install '.[experiments]'" in out.stderr, out.stderr
    assert "pip install 'dist/ferroptim-<version>-<tags>.whl[experiments]'" in out.stderr, out.stderr
