"""Datasets: the synthetic reasoning-VOS benchmark (`synth`), benchmark readers, input pipelines.

Submodules are imported explicitly (`from jaxseg.data.synth import generate_benchmark`), so
importing this package pulls in nothing heavy.
"""
