"""Checks the wheel that ``make wheel`` builds, as ``make wheel`` and ``make wheel-test`` run it.

``python tests/wheel/check_wheel.py WHEEL`` checks the file: one abi3 wheel for CPython
>= 3.9, which ``auditwheel show`` finds consistent with manylinux2014 (glibc 2.17), with
the LICENSE inside. ``--install`` then installs it, with NumPy from PyPI, into a fresh
virtual environment of every CPython from 3.9 to 3.13 this machine has (pyenv's
versions, then ``python3.X`` on ``PATH``), and in each runs the README's quickstart
(its output compared with the one the README shows) and ``smoke.py`` (SGD and Adam
against NumPy). A missing version is reported and skipped; a failure anywhere fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"
MINORS = range(9, 14)
# manylinux2014 is manylinux_2_17 (PEP 600).
PLATFORM = re.compile(r"manylinux_2_17_|manylinux2014_")


def audit(wheel: Path) -> None:
    """The wheel's name, auditwheel's platform verdict and the LICENSE inside."""
    if "-cp39-abi3-" not in wheel.name:
        sys.exit(f"{wheel.name}: not an abi3 wheel for CPython >= 3.9")
    show = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True
    )
    found = re.search(r'following platform tag:\s*"([^"]+)"', " ".join(show.stdout.split()))
    if show.returncode or not found or not PLATFORM.match(found.group(1)):
        sys.exit(f"auditwheel show {wheel.name}: not manylinux2014 (glibc 2.17)\n{show.stdout}{show.stderr}")
    names = zipfile.ZipFile(wheel).namelist()
    if not any(re.fullmatch(r"ferroptim-[^/]+\.dist-info/(licenses/)?LICENSE", n) for n in names):
        sys.exit(f"{wheel.name} has no LICENSE in its .dist-info: {names}")
    if "ferroptim/_core.abi3.so" not in names:
        sys.exit(f"{wheel.name} has no ferroptim/_core.abi3.so: {names}")
    print(f"{wheel.name}: abi3 (CPython >= 3.9), auditwheel: {found.group(1)}, LICENSE inside")


def _pyenv_roots() -> list[Path]:
    roots = [os.environ.get("PYENV_ROOT", "")]
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        roots.append(out.stdout.strip())
    roots.append(str(Path.home() / ".pyenv"))
    return [Path(r) for r in dict.fromkeys(roots) if r and Path(r, "versions").is_dir()]


def _is_cpython(exe: Path | str, minor: int) -> bool:
    probe = "import sys, venv; print(sys.implementation.name, *sys.version_info[:2])"
    try:
        out = subprocess.run([str(exe), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.split() == ["cpython", "3", str(minor)]


def find_python(minor: int) -> Path | None:
    """A CPython 3.``minor`` (not a free-threaded build, which abi3 does not serve): the
    newest of pyenv's, else ``python3.minor`` on ``PATH`` outside pyenv's shims."""
    for root in _pyenv_roots():
        found = [
            d for d in (root / "versions").glob(f"3.{minor}.*") if re.fullmatch(rf"3\.{minor}\.\d+", d.name)
        ]
        for d in sorted(found, key=lambda d: int(d.name.split(".")[2]), reverse=True):
            exe = d / "bin" / f"python3.{minor}"
            if _is_cpython(exe, minor):
                return exe
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if "shims" not in Path(p).parts
    )
    exe = shutil.which(f"python3.{minor}", path=path)
    return Path(exe) if exe and _is_cpython(exe, minor) else None


def quickstart() -> tuple[str, str]:
    """The README's quickstart: its first Python block and the output shown after it."""
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    code = next(body for lang, body in blocks if lang == "python")
    shown = next(body for lang, body in blocks if lang == "")
    return code, shown


def install_and_run(python: Path, wheel: Path, work: Path) -> None:
    """A fresh venv of ``python`` with the wheel (NumPy from PyPI), then the quickstart and smoke.py."""
    venv = work / "venv"
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    # This environment's pip installs into the new one, which saves setting up a pip there;
    # a pip too new for an old interpreter refuses, and then the venv gets its own pip.
    args = ["install", "-q", "--no-compile", "--disable-pip-version-check", str(wheel)]
    outer = [sys.executable, "-m", "pip", "--python", str(vpy), *args]
    if subprocess.run(outer, cwd=work, capture_output=True, text=True).returncode:
        subprocess.run([str(vpy), "-m", "ensurepip"], check=True, cwd=work, capture_output=True)
        subprocess.run([str(vpy), "-m", "pip", *args], check=True, cwd=work)
    code, shown = quickstart()
    out = subprocess.run([str(vpy), "-c", code], capture_output=True, text=True, cwd=work, check=True)
    if out.stdout.split() != shown.split():
        raise AssertionError(f"the README's quickstart printed\n{out.stdout}instead of\n{shown}")
    print("  README quickstart: prints what the README shows")
    subprocess.run([str(vpy), str(HERE / "smoke.py")], check=True, cwd=work)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("--install", action="store_true", help="install it into a venv of every CPython 3.9-3.13")
    args = ap.parse_args(argv)
    wheel = args.wheel.resolve()
    audit(wheel)
    if not args.install:
        return
    failed, tested = [], []
    for minor in MINORS:
        python = find_python(minor)
        if python is None:
            print(
                f"CPython 3.{minor}: not on this machine (pyenv versions, python3.{minor} on PATH): skipped"
            )
            continue
        print(f"CPython 3.{minor}: {python}", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"ferroptim-wheel-3.{minor}-") as work:
            try:
                install_and_run(python, wheel, Path(work))
            except (subprocess.CalledProcessError, AssertionError) as err:
                print(f"  FAILED: {err}", file=sys.stderr)
                if isinstance(err, subprocess.CalledProcessError) and err.stderr:
                    print(err.stderr, file=sys.stderr)
                failed.append(f"3.{minor}")
                continue
        tested.append(f"3.{minor}")
        print(f"  ok in {time.perf_counter() - start:.1f} s", flush=True)
    print(
        f"the wheel passed on CPython {', '.join(tested) or 'none'}"
        + (f"; FAILED on {', '.join(failed)}" if failed else "")
    )
    if failed or not tested:
        sys.exit(1)


if __name__ == "__main__":
    main()
