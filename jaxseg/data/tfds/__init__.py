"""tensorflow-datasets builders (array_record, manual_dir) for ReVOS and MeViS, and a grain
source over them. Needs the `tfds` extra (tensorflow-datasets, array-record); TensorFlow
itself is not needed."""

from jaxseg.data.tfds.builders import BUILDERS, Mevis, Revos, prepare
from jaxseg.data.tfds.source import TfdsExpressionSource

__all__ = ["BUILDERS", "Mevis", "Revos", "TfdsExpressionSource", "prepare"]
