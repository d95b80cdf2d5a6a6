"""OpenAI's pretrained GPT-2 weights, loaded into chapter 4's ``GPTModel`` (chapter 5).

The weights come in the Hugging Face layout: a folder with ``config.json`` and
``model.safetensors``, as on https://huggingface.co/openai-community/gpt2 (and
``-medium``, ``-large``, ``-xl``) or as ``transformers``' ``save_pretrained`` writes it.

Loading is two steps, so that each is easy to check:

1. ``gpt2_state_dict_to_ours`` renames every tensor to our parameter names (and
   transposes the ``Conv1D`` weights, which Hugging Face stores as (in, out));
2. ``model.load_state_dict(..., strict=True)``, so that a tensor the model lacks, or one
   the model needs and the file lacks, or a wrong shape, is an error that names it.

    model = load_gpt2("gpt2")            # downloads once into the course cache
    model = load_gpt2("path/to/folder")  # a folder holding config.json + model.safetensors
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .download import OFFLINE_ENV, DataFileError, cache_dir
from .model import GPTConfig, GPTModel, preset_key

HUB_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
HUB_ORGANISATION = "openai-community"
FILES = ("config.json", "model.safetensors")

# The GPTConfig preset of each checkpoint, so "gpt2-small (124M)" or "124M" work too.
_PRESET_TO_HUB = {
    "gpt2-small (124M)": "gpt2",
    "gpt2-medium (355M)": "gpt2-medium",
    "gpt2-large (774M)": "gpt2-large",
    "gpt2-xl (1558M)": "gpt2-xl",
}

# Per block: Hugging Face name -> (our name, is a Conv1D weight to transpose).
_BLOCK_TENSORS = {
    "ln_1.weight": ("norm1.scale", False),
    "ln_1.bias": ("norm1.shift", False),
    # c_attn's output columns are already query;key;value stacked, as our qkv's rows are.
    "attn.c_attn.weight": ("att.qkv.weight", True),
    "attn.c_attn.bias": ("att.qkv.bias", False),
    "attn.c_proj.weight": ("att.out_proj.weight", True),
    "attn.c_proj.bias": ("att.out_proj.bias", False),
    "ln_2.weight": ("norm2.scale", False),
    "ln_2.bias": ("norm2.shift", False),
    "mlp.c_fc.weight": ("ff.layers.0.weight", True),
    "mlp.c_fc.bias": ("ff.layers.0.bias", False),
    "mlp.c_proj.weight": ("ff.layers.2.weight", True),
    "mlp.c_proj.bias": ("ff.layers.2.bias", False),
}

# Old checkpoints (the hub's gpt2 files among them) also store each layer's causal mask as
# a buffer, h.<i>.attn.bias / attn.masked_bias: constants, not weights, so they are dropped.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")

_TRUE = {"1", "true", "yes"}  # the values of an environment variable that mean "on"


# config.json: the sizes, which become the GPTConfig ...
_SIZES = {"vocab_size", "n_positions", "n_embd", "n_head", "n_layer"}
# ... options that change the computation, each with the value(s) GPTModel reproduces ...
_REPRODUCED = {
    "model_type": (lambda v, c: v == "gpt2", "a GPT-2 (model_type 'gpt2')"),
    "activation_function": (lambda v, c: v in ("gelu_new", "gelu_pytorch_tanh"), "GELU's tanh form (gelu_new)"),
    "layer_norm_epsilon": (lambda v, c: v == 1e-5, "LayerNorm with eps=1e-5"),
    "n_inner": (lambda v, c: v is None or v == 4 * c["n_embd"], "a feed-forward of width 4 * n_embd"),
    "scale_attn_weights": (lambda v, c: v is True, "attention scores scaled by 1/sqrt(head_dim)"),
    "scale_attn_by_inverse_layer_idx": (lambda v, c: v is False, "no extra 1/(layer+1) scaling of the scores"),
    # Computes the same scores in float32 in another order: equal up to rounding.
    "reorder_and_upcast_attn": (lambda v, c: isinstance(v, bool), "the same scores (its order only changes rounding)"),
    "add_cross_attention": (lambda v, c: v is False, "no cross-attention (a decoder only)"),
    "is_encoder_decoder": (lambda v, c: v is False, "a decoder only"),
    "tie_word_embeddings": (lambda v, c: v is True, "an output head tied to the token embedding, as GPT-2's"),
    "pruned_heads": (lambda v, c: not v, "every attention head (none pruned)"),
}
# ... and options that do not change what the loaded network computes: training settings
# (dropout, initialisation), token ids, generation defaults, bookkeeping of transformers.
_NOT_COMPUTATION = {
    "_name_or_path",
    "_commit_hash",
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "attn_pdrop",
    "embd_pdrop",
    "resid_pdrop",
    "summary_first_dropout",
    "initializer_range",
    "summary_activation",
    "summary_proj_to_labels",
    "summary_type",
    "summary_use_proj",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "n_ctx",
    "n_special",
    "predict_special_tokens",
    "task_specific_params",
    "use_cache",
    "output_past",
    "return_dict",
    "output_attentions",
    "output_hidden_states",
    "torchscript",
    "use_bfloat16",
    "id2label",
    "label2id",
    "problem_type",
    "finetuning_task",
    "tokenizer_class",
    "prefix",
    "gradient_checkpointing",
    "_attn_implementation",
    "attn_implementation",
    "tf_legacy_loss",
    "max_length",
    "min_length",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "num_return_sequences",
    "output_scores",
    "return_dict_in_generate",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "diversity_penalty",
    "chunk_size_feed_forward",
    "is_decoder",
    "cross_attention_hidden_size",
    "tie_encoder_decoder",
}


def load_gpt2(
    name_or_folder: str | os.PathLike, *, drop_rate: float = 0.0, context_length: int | None = None
) -> GPTModel:
    """A ``GPTModel`` holding OpenAI's GPT-2 weights, in eval mode.

    ``name_or_folder``: "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" (or a preset name
    such as "gpt2-small (124M)"), fetched from the Hugging Face hub into the course cache;
    or a local folder holding ``config.json`` and ``model.safetensors``.
    ``context_length``: use only the first positions of the position embedding (default:
    all of them, 1024 for GPT-2). ``drop_rate``: the dropout for fine-tuning (0: none).
    """
    folder = _local_folder(name_or_folder)
    cfg = config_from_hf(json.loads((folder / "config.json").read_text(encoding="utf-8")), drop_rate=drop_rate)
    if context_length is not None:
        if not 1 <= context_length <= cfg.context_length:
            raise ValueError(
                f"context_length must be between 1 and {cfg.context_length} (the positions the "
                f"checkpoint was trained for), got {context_length}"
            )
        cfg = cfg.replace(context_length=context_length)

    from safetensors.torch import load_file

    state_dict = gpt2_state_dict_to_ours(load_file(folder / "model.safetensors"), cfg.n_layers)
    # A shorter context keeps the first positions of the position embedding.
    state_dict["pos_emb.weight"] = state_dict["pos_emb.weight"][: cfg.context_length]
    model = GPTModel(cfg)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def config_from_hf(hf_config: dict, drop_rate: float = 0.0) -> GPTConfig:
    """Our ``GPTConfig`` for a Hugging Face GPT-2 ``config.json`` (read into a dict).

    Every option of the file is checked, not only the known ones: an option that changes what
    the network computes must have the value ``GPTModel`` reproduces, and an option this
    function does not know is refused too, naming it, rather than giving a model that loads
    cleanly but computes something else.
    """
    missing = [key for key in ("vocab_size", "n_positions", "n_embd", "n_head", "n_layer") if key not in hf_config]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}: is it a GPT-2 configuration?")
    for key, value in hf_config.items():
        if key in _SIZES or key in _NOT_COMPUTATION:
            continue
        if key not in _REPRODUCED:
            raise ValueError(
                f"config.json has the option {key}={value!r}, which GPTModel does not implement, so it cannot "
                "promise to compute what this checkpoint computes (is it a GPT-2 checkpoint?)"
            )
        accepted, what = _REPRODUCED[key]
        if not accepted(value, hf_config):
            raise ValueError(
                f"config.json has {key}={value!r}; GPTModel computes {what}, so it refuses this checkpoint"
            )
    return GPTConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["n_positions"],
        emb_dim=hf_config["n_embd"],
        n_heads=hf_config["n_head"],
        n_layers=hf_config["n_layer"],
        drop_rate=drop_rate,
        qkv_bias=True,  # GPT-2 has query/key/value biases
        tie_embeddings=True,  # and reuses the token embedding as the output head
    )


def gpt2_state_dict_to_ours(hf_state_dict: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face GPT-2 state dict to ``GPTModel``'s names (a new dict).

    Accepts ``GPT2LMHeadModel``'s keys (``transformer.h.0...``, maybe ``lm_head.weight``)
    and ``GPT2Model``'s (``h.0...``). Tensors it does not know are passed on under their
    own names, so that ``load_state_dict(strict=True)`` reports them.
    """
    hf = {_strip_prefix(key): tensor for key, tensor in hf_state_dict.items()}
    hf = {key: tensor for key, tensor in hf.items() if not _MASK_BUFFER.fullmatch(key)}
    ours = {}

    def take(hf_key: str, our_key: str, transpose: bool = False) -> None:
        if hf_key not in hf:
            raise ValueError(
                f"the checkpoint has no tensor {hf_key!r} (needed for {our_key!r} of a {n_layers}-layer model)"
            )
        tensor = hf.pop(hf_key)
        # Hugging Face's Conv1D computes x @ W with W of shape (in, out); nn.Linear holds (out, in).
        ours[our_key] = tensor.T if transpose else tensor

    take("wte.weight", "tok_emb.weight")
    take("wpe.weight", "pos_emb.weight")
    for i in range(n_layers):
        for hf_name, (our_name, transpose) in _BLOCK_TENSORS.items():
            take(f"h.{i}.{hf_name}", f"trf_blocks.{i}.{our_name}", transpose)
    take("ln_f.weight", "final_norm.scale")
    take("ln_f.bias", "final_norm.shift")

    # GPT-2 ties the output head to the token embedding; some files store the copy as well.
    head = hf.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, ours["tok_emb.weight"]):
        raise ValueError("lm_head.weight differs from wte.weight: GPT-2's output head is tied to its token embedding")
    ours["out_head.weight"] = ours["tok_emb.weight"]

    ours.update(hf)  # leftovers (e.g. the blocks of a deeper model): load_state_dict names them
    return ours


def _strip_prefix(key: str) -> str:
    return key.removeprefix("transformer.")


def _local_folder(name_or_folder: str | os.PathLike) -> Path:
    """The folder holding the checkpoint's files: the one given, or the cache's copy of a hub model."""
    folder = Path(name_or_folder).expanduser()
    if not folder.is_dir():
        hub_name = _hub_name(name_or_folder) if isinstance(name_or_folder, str) else None
        if hub_name is not None:
            return _fetch_from_hub(hub_name)
        if isinstance(name_or_folder, str) and "/" not in name_or_folder and os.sep not in name_or_folder:
            raise ValueError(
                f"unknown GPT-2 checkpoint {name_or_folder!r} (and no folder of that name); known names: "
                f"{', '.join(HUB_NAMES)} (or {', '.join(_PRESET_TO_HUB)}), "
                f"or give a folder holding {' and '.join(FILES)}"
            )
        raise DataFileError(f"checkpoint folder {folder} does not exist; it should hold {' and '.join(FILES)}")
    for filename in FILES:
        if not (folder / filename).is_file():
            raise DataFileError(
                f"{filename} is missing from {folder}: a GPT-2 checkpoint folder holds {' and '.join(FILES)} "
                "(as transformers' save_pretrained or `hf download` write them)"
            )
    return folder


def _hub_name(name: str) -> str | None:
    wanted = name.strip().lower()
    if wanted in HUB_NAMES:
        return wanted
    preset = preset_key(name)
    return _PRESET_TO_HUB.get(preset) if preset else None


def _fetch_from_hub(name: str) -> Path:
    """``cache_dir()/huggingface/<name>``, holding the checkpoint's files (downloaded if missing)."""
    folder = cache_dir() / "huggingface" / name
    missing = [filename for filename in FILES if not (folder / filename).is_file()]
    if not missing:
        return folder  # already there: no network needed, a read-only cache works
    offline = [var for var in (OFFLINE_ENV, "HF_HUB_OFFLINE") if os.environ.get(var, "").lower() in _TRUE]
    if offline:
        why = f"{' and '.join(offline)} {'is' if len(offline) == 1 else 'are'} set: no downloads"
        raise DataFileError(_missing_message(name, folder, missing, why))
    from huggingface_hub import hf_hub_download

    for filename in missing:
        try:
            hf_hub_download(repo_id=f"{HUB_ORGANISATION}/{name}", filename=filename, local_dir=folder)
        except Exception as err:  # no network, hub errors, a read-only cache: all mean "not here"
            raise DataFileError(_missing_message(name, folder, [filename], f"the download failed: {err}")) from err
    return folder


def _missing_message(name: str, folder: Path, missing: list[str], why: str) -> str:
    repo = f"{HUB_ORGANISATION}/{name}"
    return (
        f"GPT-2 checkpoint {name!r}: {' and '.join(missing)} not found in {folder} and cannot be downloaded ({why}).\n"
        f"On a machine with internet, fetch the files from https://huggingface.co/{repo}:\n"
        f"    hf download {repo} {' '.join(FILES)} --local-dir {folder}\n"
        "(with huggingface_hub older than 1.0: `huggingface-cli download` and the same arguments). Copy them to "
        f"{folder} on this machine and load_gpt2({name!r}) finds them, or put them in any folder and call "
        'load_gpt2("<folder>").'
    )
