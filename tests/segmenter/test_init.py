import pytest

from jaxseg.segmenter import make_backend
from jaxseg.segmenter.cache import CachingBackend
from jaxseg.segmenter.classical import ClassicalBackend
from jaxseg.segmenter.interface import InvalidRequestError, MaskBackend
from jaxseg.segmenter.oracle import OracleBackend
from jaxseg.segmenter.sidecar import SidecarClient


def test_factory_builds_exactly_what_is_named():
    classical = make_backend("classical")
    assert isinstance(classical, CachingBackend) and isinstance(classical.inner, ClassicalBackend)
    assert classical.name == "classical" and isinstance(classical, MaskBackend)
    assert isinstance(make_backend("classical", cache_entries=0), ClassicalBackend)
    assert isinstance(make_backend("oracle", {"match": "obj_id"}), OracleBackend)
    sam2 = make_backend("sam2", {"model": "tiny", "sidecar": {"timeout_s": 5}})
    assert isinstance(sam2.inner, SidecarClient) and sam2.name == "sam2"  # not started yet
    assert sam2.inner.pid is None and sam2.inner.config.timeout_s == 5
    sam2.close()
    with pytest.raises(InvalidRequestError, match="segmenter.backend"):
        make_backend("sam3")
