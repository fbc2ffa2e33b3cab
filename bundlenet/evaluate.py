"""``python -m bundlenet.evaluate``: Evaluate a checkpoint (the command lives in :mod:`bundlenet.cli.evaluate`)."""

from bundlenet.cli.evaluate import main

if __name__ == "__main__":
    main()
