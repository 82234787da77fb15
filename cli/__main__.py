"""``python -m toolgym.cli``: the ``toolgym`` command without its console script."""

from toolgym.cli import main

if __name__ == "__main__":
    main()
