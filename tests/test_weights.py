"""load_gpt2 reads Hugging Face GPT-2 checkpoints into GPTModel, exactly.

No pretrained weights exist offline, so the tests make their own: small random
``GPT2LMHeadModel``s (every tensor randomised, so that a swapped LayerNorm or a
missing transpose shows), saved with ``save_pretrained``, must give the same logits
and the same greedy tokens once loaded into our model.
"""

import json

import pytest
import torch

from reference_impl.download import DataFileError
from reference_impl.generate import generate
from reference_impl.model import GPTConfig, GPTModel
from reference_impl.weights import config_from_hf, gpt2_state_dict_to_ours, load_gpt2

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

# (n_layer, n_head, n_embd, n_positions, vocab_size)
SHAPES = [(2, 2, 32, 16, 101), (3, 4, 64, 32, 257), (1, 1, 8, 8, 50)]


def make_hf_model(n_layer, n_head, n_embd, n_positions, vocab_size, seed=0):
    config = transformers.GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=n_positions,
        vocab_size=vocab_size,
        bos_token_id=None,
        eos_token_id=None,  # GPT-2's 50256 is outside these small vocabularies
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    # Hugging Face initialises LayerNorms to 1/0 and biases to 0: randomise everything
    # so that each tensor must land in its own place.
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: "L{}-H{}-D{}-P{}-V{}".format(*s))
def checkpoint(request, tmp_path_factory):
    """A random HF model and the folder save_pretrained wrote it to."""
    hf_model = make_hf_model(*request.param)
    folder = tmp_path_factory.mktemp("gpt2")
    hf_model.save_pretrained(folder)
    return hf_model, folder


def test_logits_equal_hugging_face(checkpoint):
    hf_model, folder = checkpoint
    model = load_gpt2(folder)
    config = hf_model.config
    torch.manual_seed(1)
    tokens = torch.randint(0, config.vocab_size, (3, config.n_positions))
    with torch.no_grad():
        expected = hf_model(tokens).logits
        actual = model(tokens)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_inferred_configuration(checkpoint):
    hf_model, folder = checkpoint
    model = load_gpt2(folder, drop_rate=0.25)
    c = hf_model.config
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.emb_dim) == (c.n_layer, c.n_head, c.n_embd)
    assert (model.cfg.context_length, model.cfg.vocab_size) == (c.n_positions, c.vocab_size)
    assert model.cfg.qkv_bias and model.cfg.tie_embeddings and model.cfg.drop_rate == 0.25
    assert model.out_head.weight is model.tok_emb.weight
    assert not model.training


def test_greedy_generation_equals_hugging_face(checkpoint):
    hf_model, folder = checkpoint
    model = load_gpt2(folder)
    config = hf_model.config
    torch.manual_seed(2)
    prompt = torch.randint(0, config.vocab_size, (1, 3))
    new_tokens = config.n_positions - 3  # fill the context window exactly
    expected = hf_model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0).tolist()
    assert generate(model, prompt, max_new_tokens=new_tokens, use_cache=True).tolist() == expected
    assert generate(model, prompt, max_new_tokens=new_tokens, use_cache=False).tolist() == expected


def test_hub_layout_with_mask_buffers_and_lm_head(tmp_path):
    # The hub's files come from GPT2Model ("h.0...", no "transformer."), and older ones
    # also hold each layer's causal mask as "h.<i>.attn.bias" plus an "lm_head.weight" copy.
    hf_model = make_hf_model(2, 2, 16, 8, 30, seed=3)
    tensors = {key.removeprefix("transformer."): t.clone() for key, t in hf_model.state_dict().items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    assert "lm_head.weight" in tensors and "wte.weight" in tensors
    safetensors_torch.save_file(tensors, tmp_path / "model.safetensors")
    hf_model.config.to_json_file(tmp_path / "config.json")

    model = load_gpt2(tmp_path)
    tokens = torch.arange(8).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf_model(tokens).logits, atol=1e-5, rtol=0)


def test_mapping_gives_exactly_our_parameter_names_and_shapes():
    hf_state = make_hf_model(2, 2, 16, 8, 30).state_dict()
    ours = gpt2_state_dict_to_ours(hf_state, n_layers=2)
    model = GPTModel(
        {
            "vocab_size": 30,
            "context_length": 8,
            "emb_dim": 16,
            "n_heads": 2,
            "n_layers": 2,
            "qkv_bias": True,
            "tie_embeddings": True,
        }
    )
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    assert {key: tuple(t.shape) for key, t in ours.items()} == expected
    assert len(ours) == 2 + 2 * 12 + 2 + 1  # wte, wpe; 12 tensors per block; ln_f; the tied head
    # Conv1D (in, out) -> Linear (out, in); c_attn's columns are q, k, v in our order.
    assert torch.equal(ours["trf_blocks.1.att.qkv.weight"], hf_state["transformer.h.1.attn.c_attn.weight"].T)
    assert torch.equal(ours["trf_blocks.1.ff.layers.2.weight"], hf_state["transformer.h.1.mlp.c_proj.weight"].T)
    assert torch.equal(ours["trf_blocks.1.norm2.shift"], hf_state["transformer.h.1.ln_2.bias"])
    assert ours["out_head.weight"] is ours["tok_emb.weight"]


def test_shorter_context_keeps_the_first_positions(tmp_path):
    hf_model = make_hf_model(1, 2, 16, 32, 40)
    hf_model.save_pretrained(tmp_path)
    model = load_gpt2(tmp_path, context_length=8)
    assert model.cfg.context_length == 8 and model.pos_emb.weight.shape == (8, 16)
    tokens = torch.arange(8).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf_model(tokens).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="context_length must be between 1 and 32"):
        load_gpt2(tmp_path, context_length=33)


@pytest.fixture
def small_checkpoint(tmp_path):
    make_hf_model(2, 2, 16, 8, 30).save_pretrained(tmp_path)
    return tmp_path


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_more_layers_in_config_than_in_file_names_the_missing_tensor(small_checkpoint):
    edit_config(small_checkpoint, n_layer=3)
    with pytest.raises(ValueError, match=r"no tensor 'h\.2\.ln_1\.weight'"):
        load_gpt2(small_checkpoint)


def test_fewer_layers_in_config_than_in_file_names_the_extra_tensor(small_checkpoint):
    edit_config(small_checkpoint, n_layer=1)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*h\.1\.attn\.c_attn\.weight"):
        load_gpt2(small_checkpoint)


def test_other_layer_norm_epsilon_is_refused(small_checkpoint):
    edit_config(small_checkpoint, layer_norm_epsilon=1e-6)
    with pytest.raises(ValueError, match="layer_norm_epsilon=1e-06"):
        load_gpt2(small_checkpoint)


@pytest.mark.parametrize(
    "option, value",
    [
        ("scale_attn_by_inverse_layer_idx", True),  # transformers: logits 1.6-5.5 away from ours
        ("scale_attn_weights", False),
        ("add_cross_attention", True),
        ("activation_function", "relu"),
        ("n_inner", 7),
        ("model_type", "gpt_neo"),
    ],
)
def test_every_option_that_changes_the_computation_is_refused_by_name(small_checkpoint, option, value):
    edit_config(small_checkpoint, **{option: value})
    with pytest.raises(ValueError, match=rf"config.json has {option}={value!r}; GPTModel computes"):
        load_gpt2(small_checkpoint)


def test_an_option_the_loader_does_not_know_is_refused_by_name(small_checkpoint):
    edit_config(small_checkpoint, rotary_dim=16)
    with pytest.raises(
        ValueError, match=r"config.json has the option rotary_dim=16, which GPTModel does not implement"
    ):
        load_gpt2(small_checkpoint)


def test_the_hubs_own_gpt2_configurations_are_accepted():
    # config.json of openai-community/gpt2 (gpt2-medium/-large/-xl add n_special, predict_special_tokens)
    hub_config = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
        "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": 50257,
    }  # fmt: skip
    assert config_from_hf(hub_config) == GPTConfig.from_preset("gpt2-small (124M)").replace(
        drop_rate=0.0, qkv_bias=True, tie_embeddings=True
    )
    medium = {**hub_config, "n_embd": 1024, "n_head": 16, "n_layer": 24, "n_special": 0, "predict_special_tokens": True}
    assert config_from_hf(medium).emb_dim == 1024


def test_untied_lm_head_is_refused(tmp_path):
    hf_model = make_hf_model(1, 1, 8, 8, 20)
    tensors = {key: t.clone() for key, t in hf_model.state_dict().items()}
    tensors["lm_head.weight"] += 1.0
    safetensors_torch.save_file(tensors, tmp_path / "model.safetensors")
    hf_model.config.to_json_file(tmp_path / "config.json")
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        load_gpt2(tmp_path)


def test_folder_without_safetensors_file(small_checkpoint):
    (small_checkpoint / "model.safetensors").unlink()
    with pytest.raises(DataFileError, match="model.safetensors is missing from") as err:
        load_gpt2(small_checkpoint)
    assert str(small_checkpoint) in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        load_gpt2(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "name, repo", [("gpt2", "gpt2"), ("gpt2-small (124M)", "gpt2"), ("774M", "gpt2-large"), ("gpt2-xl", "gpt2-xl")]
)
def test_hub_name_offline_explains_how_to_fetch(tmp_path, monkeypatch, name, repo):
    monkeypatch.setenv("LLM_COURSE_DATA", str(tmp_path))
    folder = tmp_path / "huggingface" / repo
    with pytest.raises(DataFileError) as err:
        load_gpt2(name)
    message = str(err.value)
    assert "config.json and model.safetensors not found in " + str(folder) in message
    assert f"hf download openai-community/{repo} config.json model.safetensors --local-dir {folder}" in message
    assert "LLM_COURSE_OFFLINE and HF_HUB_OFFLINE are set" in message


def test_hub_name_downloads_into_the_course_cache(tmp_path, monkeypatch):
    import huggingface_hub

    source = tmp_path / "hub"
    make_hf_model(1, 2, 16, 8, 30).save_pretrained(source)
    calls = []

    def fake_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename, local_dir))
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / filename).write_bytes((source / filename).read_bytes())
        return str(local_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("LLM_COURSE_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("LLM_COURSE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    model = load_gpt2("gpt2-small (124M)")
    folder = tmp_path / "cache" / "huggingface" / "gpt2"
    assert calls == [
        ("openai-community/gpt2", "config.json", folder),
        ("openai-community/gpt2", "model.safetensors", folder),
    ]
    assert model.cfg.emb_dim == 16
    load_gpt2("gpt2")  # the second time, from the cache
    assert len(calls) == 2


def test_failed_download_explains_how_to_fetch(tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(repo_id, filename, local_dir):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setenv("LLM_COURSE_DATA", str(tmp_path))
    monkeypatch.delenv("LLM_COURSE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(DataFileError, match="the download failed: Network is unreachable") as err:
        load_gpt2("gpt2-large")
    assert "hf download openai-community/gpt2-large config.json model.safetensors --local-dir" in str(err.value)


def test_hub_name_reads_the_cached_copy_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_COURSE_DATA", str(tmp_path))
    make_hf_model(1, 2, 16, 8, 30).save_pretrained(tmp_path / "huggingface" / "gpt2-medium")
    model = load_gpt2("gpt2-medium")
    assert (model.cfg.n_layers, model.cfg.emb_dim, model.cfg.vocab_size) == (1, 16, 30)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown GPT-2 checkpoint 'gpt3'.*gpt2, gpt2-medium, gpt2-large, gpt2-xl"):
        load_gpt2("gpt3")
