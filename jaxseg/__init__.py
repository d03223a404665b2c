"""jaxseg: JAX-native RL training of VLMs for reasoning video object segmentation."""

__version__ = "0.1.0"
