"""``python -m bundlenet.benchmark``: Speed and memory figures (the command lives in :mod:`bundlenet.cli.benchmark`)."""

from bundlenet.cli.benchmark import main

if __name__ == "__main__":
    main()
