"""``python -m bundlenet.sample``: Sample fibers from a checkpoint (the command lives in :mod:`bundlenet.cli.sample`)."""

from bundlenet.cli.sample import main

if __name__ == "__main__":
    main()
