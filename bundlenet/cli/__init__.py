"""The command lines: train, sample, evaluate, report, benchmark (each also a console script)."""
