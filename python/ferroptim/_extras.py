"""How to install an optional extra of ferroptim, for the error messages that need one."""


def install_hint(extra: str) -> str:
    """The pip commands that install ferroptim with ``extra``: from a clone, from a wheel that
    ``make wheel`` built, and from a package index once ferroptim is published on one."""
    return (
        f"pip install '.[{extra}]' in a clone of ferroptim, "
        f"or pip install 'dist/ferroptim-<version>-<tags>.whl[{extra}]' for a wheel built by `make wheel` "
        f"(once ferroptim is on PyPI: pip install 'ferroptim[{extra}]')"
    )
