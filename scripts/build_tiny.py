"""Build the random-weight ``doctune-tiny`` checkpoint: a small Idefics2 that loads like the 8B one.

The checkpoint is a plain Idefics2 folder (``config.json``, ``model.safetensors``, tokenizer,
image processor and chat template), so every code path that loads ``HuggingFaceM4/idefics2-8b``
loads it too. Only the sizes differ. The tokenizer is character level: a tiny model can learn to
copy characters it reads off a page, while a sub-word vocabulary would cost embedding rows and
make every number a different token split.

Usage:
    python scripts/build_tiny.py --output src/doctune/assets/doctune-tiny-init

``scripts/pretrain_tiny.py`` starts from this folder and writes the committed, pre-trained
``src/doctune/assets/doctune-tiny``.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2Processor, PreTrainedTokenizerFast
from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

# The chat template of HuggingFaceM4/idefics2-8b, so prompts render exactly as for the 8B model.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# Printable ASCII, newline and the symbols business documents use beyond ASCII.
CHARACTERS = [chr(i) for i in range(32, 127)] + ["\n", "€", "£", "¥", "°", "§", "é", "è", "ü", "ö", "ä", "ß", "ñ"]


@dataclass(frozen=True)
class Sizes:
    """The sizes a pre-training stage may choose when it builds the model afresh."""

    longest_edge: int = 384
    patch_size: int = 16
    # Visual tokens per image, the perceiver's latents: one per patch of a portrait page (18 columns
    # x 24 rows of 16-px patches at 384 px). Fewer latents each average several patches, and a page's
    # characters no longer reach the language model apart: with 128 latents (8 x 16) a linear probe
    # read 13% of a cell's characters from its latent, against 85% from the encoder's patches.
    image_seq_len: int = 432
    # One perceiver layer whose four heads each have their own keys and values: the latent copies
    # its patch instead of mixing patches over two layers through two shared key/value heads.
    perceiver_depth: int = 1
    perceiver_kv_heads: int = 4


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer that prepends ``<s>`` like Mistral's."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def build_processor(sizes: Sizes = Sizes()) -> Idefics2Processor:
    """Tokenizer + image processor with a small longest edge and no image splitting."""
    image_processor = Idefics2ImageProcessorPil(
        do_image_splitting=False, size={"shortest_edge": 32, "longest_edge": sizes.longest_edge}
    )
    return Idefics2Processor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        image_seq_len=sizes.image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(processor: Idefics2Processor, sizes: Sizes = Sizes()) -> Idefics2Config:
    """Idefics2 sizes chosen for reading on a CPU (~6M parameters), with ``sizes``' patches and latents."""
    tokenizer = processor.tokenizer
    return Idefics2Config(
        image_token_id=processor.image_token_id,
        vision_config=dict(
            hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            image_size=sizes.longest_edge, patch_size=sizes.patch_size,
        ),
        perceiver_config=dict(
            hidden_size=256, resampler_n_latents=sizes.image_seq_len, resampler_depth=sizes.perceiver_depth,
            resampler_n_heads=4, resampler_head_dim=64, num_key_value_heads=sizes.perceiver_kv_heads,
        ),
        text_config=dict(
            model_type="mistral", vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
    )


def build(output: Path, seed: int = 0, sizes: Sizes = Sizes()) -> None:
    """Write a random-weight tiny Idefics2 checkpoint with its processor to ``output``."""
    torch.manual_seed(seed)
    processor = build_processor(sizes)
    model = Idefics2ForConditionalGeneration(build_config(processor, sizes))
    eou_id = processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    # Generation stops at the end of the answer, as for the 8B checkpoint.
    model.generation_config.eos_token_id = [eou_id, processor.tokenizer.eos_token_id]
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(output)
    processor.save_pretrained(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.output, args.seed)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
