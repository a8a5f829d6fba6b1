"""``python -m ferroptim``: the lecture's experiments (see ``ferroptim.experiments``)."""

from .experiments.cli import main

if __name__ == "__main__":
    main()
