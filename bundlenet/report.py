"""``python -m bundlenet.report``: Tables of a sweep's runs (the command lives in :mod:`bundlenet.cli.report`)."""

from bundlenet.cli.report import main

if __name__ == "__main__":
    main()
