"""What image bytes a call sends: a file's or the caller's encoded bytes unchanged, pixels as PNG, and a format the
server refuses never sent; checked on the instance a real adapter receives behind a real explainer."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from multishap.adapters.instances import content_key
from multishap.client import ExplainerClient
from multishap.v1 import common_pb2
from servers import RecordingBackend, TEXT, adapters, explainer, free_port

PARAMS = {"family": "mixed", "seed": "1"}


@pytest.fixture()
def service():
    backend = RecordingBackend()
    with adapters(backend) as (a,), explainer({"syn": [a.address]}) as (e, _, _):
        with ExplainerClient(e.address, timeout=60) as client:
            yield backend, client


def encoded(fmt: str, **save) -> bytes:
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)).save(buf, format=fmt, **save)
    return buf.getvalue()


def sent(data: bytes) -> str:
    """The content key of the instance the explainer forwards when ``data`` is the image the caller gave."""
    return content_key(common_pb2.Instance(image=data, text=TEXT, grid=common_pb2.Grid(rows=2, cols=2),
                                           masking=common_pb2.MaskingOptions(), parameters=PARAMS))


def explain(client, image):
    return client.explain(image, TEXT, target="syn", grid=(2, 2), parameters=PARAMS, budget=200)


def test_a_jpeg_files_bytes_reach_the_server_unchanged(service, tmp_path):
    backend, client = service
    jpeg = encoded("JPEG", quality=90)
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg)
    exp = explain(client, path)
    [instance] = backend.seen
    assert instance.key == sent(jpeg)
    assert exp.provenance.image_sha256 == hashlib.sha256(jpeg).hexdigest() and exp.provenance.image_name == "photo.jpg"
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert np.array_equal(instance.image, decoded) and np.array_equal(exp.image, decoded)


def test_encoded_bytes_are_sent_as_given(service):
    backend, client = service
    webp = encoded("WEBP", quality=80)
    exp = explain(client, webp)
    assert [i.key for i in backend.seen] == [sent(webp)] and exp.provenance.image_name is None


def test_pixels_are_sent_as_png(service):
    backend, client = service
    pixels = np.asarray(Image.open(io.BytesIO(encoded("JPEG"))).convert("RGB"))
    exp = explain(client, pixels)
    [instance] = backend.seen
    assert np.array_equal(instance.image, pixels) and np.array_equal(exp.image, pixels)
    assert instance.key == sent(png_of(pixels))


def png_of(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("image", ["file", "bytes"])
def test_a_format_the_server_refuses_is_never_sent(tmp_path, image):
    tiff = encoded("TIFF")
    path = tmp_path / "scan.tiff"
    path.write_bytes(tiff)
    with ExplainerClient(f"127.0.0.1:{free_port()}") as client:  # nobody listens: a sent call would be UNAVAILABLE
        with pytest.raises(ValueError, match=r"is TIFF, which the server does not accept; send PNG, JPEG"):
            explain(client, path if image == "file" else tiff)


def test_a_missing_file_is_refused(tmp_path):
    with ExplainerClient(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(ValueError, match="does not exist"):
            explain(client, tmp_path / "nowhere.png")
