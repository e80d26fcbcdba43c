"""``python -m bidsfusion``: the same command line as ``bidsfusion``."""

from bidsfusion.cli import main

if __name__ == "__main__":
    main()
