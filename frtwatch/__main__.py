"""The `frtwatch` command's entry point (pyproject's scripts; `python -m frtwatch`)."""

from frtwatch import compiled


def main() -> None:
    # First, before the commands import a module it serves: the judge compiled, if built from
    # these sources (frtwatch/compiled.py). frtwatch.cli imports contracts as it loads.
    compiled.install()
    from frtwatch.cli import main as run

    run()


if __name__ == "__main__":
    main()
