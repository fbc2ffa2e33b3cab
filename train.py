"""Train a BundleNet: ``python train.py [data=torus] [model=bundlenet] [key=value ...]``.

The job itself lives in :mod:`bundlenet.cli.train` (also installed as ``bundlenet-train``).
"""

from bundlenet.cli.train import main

if __name__ == "__main__":
    main()
