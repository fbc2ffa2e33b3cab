"""Evaluation: fiber-wise metrics, the protocol with noise floors, reports and figures."""
