"""Models: the char tokenizer, the shipped checkpoint, loading rules, teacher-forced log-probs, pretraining."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lab.models import (
    TINY_ARITH,
    build_char_tokenizer,
    completion_logprobs,
    format_prompt,
    load,
    pick_device,
    resolve_dtype,
)
from lab.models.loading import resolve_name
from lab.models.tiny import build_tiny_model, tiny_config

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


# --------------------------------------------------------------------------- tokenizer


ROUND_TRIP = [
    "12+7=19",
    "  leading and trailing spaces  ",
    "two\nlines\n\nand a blank one\n",
    "tab\there, punctuation: (3*4)-5 = 7? yes! [a]{b}<c>|~`'\"\\",
    "x<|endoftext|>y",
    "",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_char_tokenizer_round_trips_text_exactly(text):
    tok = build_char_tokenizer()
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == len(text.replace("<|endoftext|>", "#"))  # one token per character


def test_char_tokenizer_saved_in_hf_format_loads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    build_char_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    for text in ROUND_TRIP:
        assert tok.decode(tok(text)["input_ids"]) == text
    assert (tok.pad_token, tok.eos_token, tok.padding_side) == ("<|pad|>", "<|endoftext|>", "left")
    batch = tok(["1+2=", "10+20="], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2  # left padding


# --------------------------------------------------------------------------- loading


def _save_tiny_qwen2(path, *, chat_template=True):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=1, pad_token_id=None,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok = build_char_tokenizer()
    tok.pad_token = None  # like many hub tokenizers: no pad token
    tok.padding_side = "right"
    if chat_template:
        tok.chat_template = TEMPLATE
    tok.save_pretrained(path)


def test_load_local_qwen2_style_model_with_chat_template(tmp_path):
    _save_tiny_qwen2(tmp_path)
    model, tok = load(tmp_path, device="cpu")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert format_prompt(tok, "12+7=") == "<|user|>12+7=\n<|assistant|>"
    model16, _ = load(str(tmp_path), device="cpu", dtype="bfloat16")
    assert model16.dtype == torch.bfloat16


def test_format_prompt_without_chat_template_returns_the_raw_text():
    assert format_prompt(build_char_tokenizer(), "12+7=") == "12+7="


def test_missing_local_path_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("data/models/no-such-model")  # two slashes: a path, not a hub id


def test_hub_ids_pass_through_and_relative_paths_resolve_against_the_repo(monkeypatch, tmp_path):
    assert resolve_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    monkeypatch.chdir(tmp_path)  # the relative shipped path still resolves from elsewhere
    assert resolve_name("data/models/tiny-arith") == str(TINY_ARITH)
    assert resolve_name("tiny-arith") == str(TINY_ARITH)


def test_device_and_dtype_auto_rules():
    assert pick_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto").type == expected
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))


# --------------------------------------------------------------------------- completion_logprobs


def _ro(prompt_ids, prompt_mask, comp_ids, comp_mask):
    return SimpleNamespace(
        prompt_token_ids=torch.tensor(prompt_ids), prompt_mask=torch.tensor(prompt_mask),
        completion_ids=torch.tensor(comp_ids), completion_mask=torch.tensor(comp_mask),
    )


def test_completion_logprobs_ignore_left_padding_and_match_a_manual_forward():
    model = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=2), seed=0).eval()
    prompt, comp = [22, 16, 23, 34], [25, 26, 1]
    padded = _ro([[0, 0, 0] + prompt], [[False] * 3 + [True] * 4], [comp + [0]], [[True, True, True, False]])
    plain = _ro([prompt], [[True] * 4], [comp], [[True] * 3])
    with torch.no_grad():
        a, ea = completion_logprobs(model, padded, with_entropy=True)
        b, eb = completion_logprobs(model, plain, with_entropy=True)
        logits = model(torch.tensor([prompt + comp])).logits[0, 3:6]  # positions predicting the completion
    manual = torch.log_softmax(logits, -1)
    assert torch.allclose(a[0, :3], b[0], atol=1e-5) and a[0, 3] == 0
    assert torch.allclose(b[0], manual[torch.arange(3), torch.tensor(comp)], atol=1e-5)
    assert torch.allclose(eb[0], -(manual.exp() * manual).sum(-1), atol=1e-5)
    assert torch.allclose(ea[0, :3], eb[0], atol=1e-5) and ea[0, 3] == 0


def test_completion_logprobs_temperature_scales_the_logits():
    model = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0).eval()
    ro = _ro([[5, 6]], [[True, True]], [[7, 8]], [[True, True]])
    with torch.no_grad():
        lp, _ = completion_logprobs(model, ro, temperature=0.5)
        logits = model(torch.tensor([[5, 6, 7, 8]])).logits[0, 1:3] / 0.5
    assert torch.allclose(lp[0], torch.log_softmax(logits, -1)[[0, 1], [7, 8]], atol=1e-5)


# --------------------------------------------------------------------------- the shipped checkpoint


def test_shipped_model_loads_with_auto_classes_and_reaches_its_card_accuracy():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab import tasks
    from lab.models.pretrain import evaluate, take_examples

    model = AutoModelForCausalLM.from_pretrained(TINY_ARITH).eval()
    tok = AutoTokenizer.from_pretrained(TINY_ARITH)
    assert type(model).__name__ == "GPT2LMHeadModel" and len(tok) == model.config.vocab_size == 100
    card = json.loads((TINY_ARITH / "eval.json").read_text())
    cfg = json.loads((TINY_ARITH / "pretrain_config.json").read_text())
    readme = (TINY_ARITH / "README.md").read_text()
    e = card["eval"]
    # the card states the numbers the JSON holds, and they are in the range RL needs
    assert f"| greedy accuracy | {e['greedy_accuracy']:.3f} |" in readme
    assert f"{e['sampled_accuracy']:.3f}" in readme and f"| seed | {card['seed']} |" in readme
    # the regime RL sharpens: the right answer is often among a few samples, but not most of them
    assert 0.1 <= e["sampled_accuracy"] <= 0.5 and e["pass_at_k"]["8"] >= e["sampled_accuracy"] + 0.25
    assert (TINY_ARITH / "model.safetensors").stat().st_size < 8 * 2**20

    task = tasks.get(cfg["task"], **cfg["task_params"])
    test = take_examples(task, "test", card["eval"]["eval_seed"], 200)  # a prefix of the card's eval set
    ev = evaluate(model, tok, task, test, samples=4, max_new_tokens=e["max_new_tokens"], seed=0)
    assert abs(ev["greedy_accuracy"] - e["greedy_accuracy"]) < 0.08
    assert abs(ev["sampled_accuracy"] - e["sampled_accuracy"]) < 0.08
    spread = sum(0 < p < 1 for p in ev["per_prompt"]) / len(ev["per_prompt"])
    assert spread > 0.25, "per-prompt success probabilities should spread across (0, 1)"


def test_shipped_model_is_what_the_code_makes_from_its_recipe():
    """The shipped recipe is PretrainConfig's defaults (so `lab pretrain --overwrite` remakes it), the
    weights on disk are the ones the card describes, and the card's run used the recipe's steps and threads."""
    from transformers import AutoModelForCausalLM

    from lab.models.pretrain import PretrainConfig, recipe, weights_sha256

    saved = json.loads((TINY_ARITH / "pretrain_config.json").read_text())
    assert saved == json.loads(json.dumps(recipe(PretrainConfig())))
    card = json.loads((TINY_ARITH / "eval.json").read_text())
    assert weights_sha256(AutoModelForCausalLM.from_pretrained(TINY_ARITH)) == card["weights_sha256"]
    assert card["steps_run"] == saved["steps"] and card["stopped_early"] is False
    assert card["torch_threads"] == saved["threads"] == 1
    assert card["cpu_capability"] and card["provenance"]["cpu"]  # which machine made these bytes
    readme = (TINY_ARITH / "README.md").read_text()
    assert card["weights_sha256"] in readme and json.dumps(saved, indent=2) in readme


def test_docs_quote_the_shipped_cards_numbers():
    from pathlib import Path

    e = json.loads((TINY_ARITH / "eval.json").read_text())["eval"]
    doc = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    for key in ("greedy_accuracy", "sampled_accuracy"):
        assert f"**{e[key]:.3f}**" in doc, key
    assert f"**{e['pass_at_k']['8']:.3f}**" in doc


def test_shipped_model_through_lab_load_answers_an_easy_prompt():
    """Greedy decoding writes one integer and ends it with <|endoftext|>; sampling finds the right answer.
    (Greedy is not always right: the shipped model spreads its probability over near misses on purpose.)"""
    import re

    from lab.rollout import HFBackend, SamplingParams

    model, tok = load("tiny-arith", device="cpu")
    backend = HFBackend(model, tok)
    out = backend.generate(["2+3="], SamplingParams(temperature=0, max_new_tokens=6, stop=["\n"]))
    assert re.fullmatch(r"-?\d+", out.texts[0]) and out.finish_reasons == ["stop"]
    assert out.completion_ids[0, -1] == tok.eos_token_id  # it ends its answer with <|endoftext|>
    sampled = backend.generate(["2+3="], SamplingParams(n=64, temperature=1.0, max_new_tokens=6, stop=["\n"], seed=0))
    assert "5" in sampled.texts

# --------------------------------------------------------------------------- pretraining


def _small_pretrain(out, **kw):
    """A seconds-long pretraining run of a 2-layer, 32-wide model (every other setting as shipped)."""
    from lab.models.pretrain import PretrainConfig, run_pretrain

    cfg = dict(output_dir=str(out), steps=5, batch_size=16, n_eval=8, eval_samples=2, n_layer=2, n_embd=32, n_head=2)
    return run_pretrain(PretrainConfig(**{**cfg, **kw}), verbose=False)


def test_pretraining_is_deterministic_for_a_seed(tmp_path):
    from transformers import AutoModelForCausalLM

    from lab.models.pretrain import weights_sha256

    a, b, c = (_small_pretrain(tmp_path / "a"), _small_pretrain(tmp_path / "b"), _small_pretrain(tmp_path / "c", seed=1))
    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
              "pretrain_config.json", "eval.json", "README.md"):
        assert (a / f).is_file(), f
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "pretrain_config.json").read_bytes() == (b / "pretrain_config.json").read_bytes()
    ma = AutoModelForCausalLM.from_pretrained(a)
    assert weights_sha256(ma) == json.loads((a / "eval.json").read_text())["weights_sha256"]
    saved = json.loads((a / "pretrain_config.json").read_text())
    assert saved["steps"] == 5 and "output_dir" not in saved and "overwrite" not in saved


def test_pretraining_bytes_do_not_depend_on_the_callers_thread_count(tmp_path):
    """threads=1 (the default) is set inside the run: 1 or 2 torch threads outside give the same bytes,
    and the caller's setting is restored. (With threads=0 the caller's count is used, and then the
    sums of a full-width model's matrix products differ between 1 and 2 threads.)"""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = _small_pretrain(tmp_path / "two", n_embd=128, n_head=4, steps=3)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = _small_pretrain(tmp_path / "one", n_embd=128, n_head=4, steps=3)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert (one / "model.safetensors").read_bytes() == (two / "model.safetensors").read_bytes()
    assert json.loads((two / "eval.json").read_text())["torch_threads"] == 1


def test_pretraining_refuses_a_folder_holding_files_unless_overwrite(tmp_path):
    from lab.errors import UsageError

    out = _small_pretrain(tmp_path / "m")
    first = (out / "model.safetensors").read_bytes()
    with pytest.raises(UsageError, match=r"is not empty \(holds .*model.safetensors.*--overwrite"):
        _small_pretrain(out, seed=1)
    assert (out / "model.safetensors").read_bytes() == first  # refused before anything was written
    _small_pretrain(out, seed=1, overwrite=True)
    assert (out / "model.safetensors").read_bytes() != first


def test_lab_pretrain_from_the_shipped_config_cannot_overwrite_the_shipped_model(tmp_path, capsys):
    """The saved recipe holds no output_dir, so a re-run from it aims at the default folder (the
    shipped one), which holds a model: refused with exit code 2 before any training."""
    from lab.cli import main
    from lab.models.pretrain import PretrainConfig

    assert PretrainConfig().output_dir == "data/models/tiny-arith"
    shipped = TINY_ARITH / "model.safetensors"
    stamp = shipped.stat().st_mtime_ns
    cfg = TINY_ARITH / "pretrain_config.json"
    assert "output_dir" not in json.loads(cfg.read_text())
    rc = main(["pretrain", "--config", str(cfg), "--output-dir", str(TINY_ARITH)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert shipped.stat().st_mtime_ns == stamp


def test_output_temperature_only_divides_the_logits(tmp_path):
    """A run with output_temperature=2 saves the same network with its logits halved: same greedy answers."""
    from transformers import AutoModelForCausalLM

    plain, hot = _small_pretrain(tmp_path / "t1"), _small_pretrain(tmp_path / "t2", output_temperature=2.0)
    m1, m2 = (AutoModelForCausalLM.from_pretrained(d).eval() for d in (plain, hot))
    x = torch.tensor([[20, 21, 14, 22, 30]])
    with torch.no_grad():
        assert torch.allclose(m2(x).logits, m1(x).logits / 2, atol=1e-5)
    e1, e2 = (json.loads((d / "eval.json").read_text())["eval"] for d in (plain, hot))
    assert e1["greedy_accuracy"] == e2["greedy_accuracy"]


def test_label_noise_replaces_the_given_share_of_answers_by_near_misses():
    import random

    from lab import tasks
    from lab.models.pretrain import NEAR_MISSES, with_label_noise

    exs = tasks.get("arithmetic").sample(4000, "train", 0)
    noisy = with_label_noise(exs, 0.6, random.Random(0))
    changed = [(int(n.answer) - int(e.answer)) for e, n in zip(exs, noisy) if n.answer != e.answer]
    assert abs(len(changed) / len(exs) - 0.6) < 0.03
    assert set(changed) == set(NEAR_MISSES)
    assert [n.prompt for n in noisy] == [e.prompt for e in exs]


def test_pass_at_k_matches_brute_force_over_subsets():
    from itertools import combinations

    from lab.models.pretrain import pass_at_k

    outcomes = [[1, 0, 0, 1, 0, 0], [0] * 6, [1] * 6, [0, 0, 0, 0, 0, 1]]
    for k in (1, 2, 3, 6):
        brute = sum(sum(any(s) for s in combinations(o, k)) / len(list(combinations(o, k))) for o in outcomes) / len(outcomes)
        assert pass_at_k([sum(o) for o in outcomes], 6, k) == pytest.approx(brute)


def test_label_noise_applies_only_from_noise_from_step(tmp_path):
    """Noise starting after the last step changes nothing; starting at step 4 of 5 changes the weights."""
    bytes_of = lambda d: (d / "model.safetensors").read_bytes()  # noqa: E731
    clean = _small_pretrain(tmp_path / "clean", label_noise=0.0)
    never = _small_pretrain(tmp_path / "never", label_noise=0.7, noise_from_step=6)
    late = _small_pretrain(tmp_path / "late", label_noise=0.7, noise_from_step=4)
    assert bytes_of(never) == bytes_of(clean)
    assert bytes_of(late) != bytes_of(clean)
