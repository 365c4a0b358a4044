"""Pruned students: the right layers with the teacher's weights, a model that still runs,
healing that brings it closer to the teacher on held-out teacher samples, and clear errors."""

from __future__ import annotations

import pytest
import torch

from gguf_writer import tiny_llama
from tip_ray.models.cache import torch_threads
from tip_ray.models.heal import forward_kl, heal, sample_responses
from tip_ray.models.prune import LayerSelectionError, check_layers, layers_every, prune_layers


def test_keep_every_spreads_layers_from_first_to_last():
    assert layers_every(30, 2) == [0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29]
    assert layers_every(4, 2) == [0, 3]
    assert layers_every(5, 2) == [0, 2, 4]
    assert layers_every(6, 1) == list(range(6))
    assert layers_every(6, 3) == [0, 5]
    assert layers_every(6, 10) == [5]
    assert layers_every(1, 2) == [0]


@pytest.mark.parametrize("keep, message", [
    ([], "empty"),
    ([0, 4], r"\[4\] out of range; the model has 4 layers"),
    ([-1], "out of range"),
    ([1, 1], "more than once"),
    ([2, 1], "increasing order"),
])
def test_bad_layer_lists_are_refused(keep, message):
    with pytest.raises(LayerSelectionError, match=message):
        check_layers(keep, 4)


def test_pruning_keeps_the_chosen_layers_and_runs():
    teacher = tiny_llama(num_layers=4, seed=3)
    student = prune_layers(teacher, [0, 2, 3])
    assert student.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 4
    t_state, s_state = teacher.state_dict(), student.state_dict()
    assert len(s_state) == len(t_state) - 9  # one layer's 9 tensors gone
    for new, old in enumerate([0, 2, 3]):
        for name in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(s_state[f"model.layers.{new}.{name}"], t_state[f"model.layers.{old}.{name}"])
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(s_state[name], t_state[name])
    assert s_state["model.embed_tokens.weight"].data_ptr() != t_state["model.embed_tokens.weight"].data_ptr()
    out = student.generate(torch.tensor([[1, 50, 60]]), max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 8)
    # Keeping every layer reproduces the teacher exactly.
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():
        torch.testing.assert_close(prune_layers(teacher, [0, 1, 2, 3])(ids).logits, teacher(ids).logits)


class _Tok:
    """The few tokenizer attributes sampling needs, for a model without a real tokenizer."""

    bos_token_id, eos_token_id, pad_token_id, chat_template = 1, 2, 0, None


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads on a shared 2-core machine spin while descheduled: 30x slower, measured.
    with torch_threads(1):
        yield


def test_healing_lowers_the_kl_on_held_out_sample_responses():
    teacher = tiny_llama(num_layers=4, seed=5)
    student = prune_layers(teacher, layers_every(4, 2))
    train = sample_responses(teacher, _Tok(), [None] * 24, max_new_tokens=24, seed=1)
    held_out = sample_responses(teacher, _Tok(), [None] * 8, max_new_tokens=24, seed=2)
    with torch.no_grad():
        before = float(forward_kl(student, teacher, held_out, pad_id=0))
    losses = heal(student, teacher, train, steps=40, batch_size=4, lr=3e-3, pad_id=0, seed=0)
    with torch.no_grad():
        after = float(forward_kl(student, teacher, held_out, pad_id=0))
    assert len(losses) == 40 and before > 0.05
    assert after < 0.8 * before, (before, after)


@pytest.fixture
def gguf_teacher(tmp_path, monkeypatch):
    pytest.importorskip("gguf", reason="the gguf package is in the dev extra; pip install -e '.[dev]'")
    from gguf_writer import write_tiny_gguf

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    teacher = tiny_llama(num_layers=3, seed=4)
    return teacher, write_tiny_gguf(teacher, tmp_path / "teacher.gguf")


def _pruned(base_path, **fields):
    from tip_ray.config.models import ModelsConfig

    spec = {"type": "pruned", "base": {"type": "gguf", "path": str(base_path)}, **fields}
    return ModelsConfig.model_validate({"student": spec, "teacher": spec["base"]}).student


def test_a_pruned_source_builds_once_from_a_gguf_teacher(gguf_teacher, tmp_path, monkeypatch):
    import json

    from tip_ray.models.loading import check_compatible, load_causal_lm
    from tip_ray.pipeline.prepare import resolve_model_path

    teacher, path = gguf_teacher
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"problem": p}) for p in ("the hat", "a cat", "in the")) + "\n")
    source = _pruned(path, keep_layers=[0, 2],
                     heal={"steps": 3, "samples": 4, "max_new_tokens": 6, "prompts": str(prompts)})
    folder = resolve_model_path(source, "models.student")
    marker = json.loads((tmp_path / "cache" / "tip-ray" / "pruned" / folder.rsplit("/", 1)[1] / "COMPLETE.json").read_text())
    assert marker["kept_layers"] == [0, 2] and len(marker["heal_losses"]) == 3
    student = load_causal_lm(folder)
    assert student.config.num_hidden_layers == 2
    assert not torch.equal(student.state_dict()["lm_head.weight"], teacher.state_dict()["lm_head.weight"])  # healed
    teacher_folder = resolve_model_path(source.base, "models.teacher")
    assert check_compatible(folder, teacher_folder) == teacher.config.vocab_size

    import tip_ray.models.sources as sources

    monkeypatch.setattr(sources, "build_pruned", lambda *a, **k: pytest.fail("pruned twice"))
    assert resolve_model_path(source, "models.student") == folder


def test_pruning_without_healing_keeps_teacher_weights(gguf_teacher):
    from tip_ray.models.loading import load_causal_lm
    from tip_ray.pipeline.prepare import resolve_model_path

    teacher, path = gguf_teacher
    student = load_causal_lm(resolve_model_path(_pruned(path, keep_every=2), "models.student"))
    assert student.config.num_hidden_layers == 2  # layers 0 and 2 of 3
    s, t = student.state_dict(), teacher.state_dict()
    assert torch.equal(s["model.layers.1.mlp.up_proj.weight"], t["model.layers.2.mlp.up_proj.weight"])
    assert torch.equal(s["model.layers.1.self_attn.k_proj.weight"], t["model.layers.2.self_attn.k_proj.weight"])


def test_layers_the_teacher_lacks_fail_before_anything_is_built(gguf_teacher, tmp_path):
    from tip_ray.cli import main
    from tip_ray.pipeline.prepare import resolve_model_path

    _, path = gguf_teacher
    with pytest.raises(LayerSelectionError, match=r"models.student.keep_layers: \[5\] out of range; the model has 3"):
        resolve_model_path(_pruned(path, keep_layers=[0, 5]), "models.student")
    assert not (tmp_path / "cache" / "tip-ray" / "pruned").exists()
    assert main(["models", "prune", str(path), "--keep-layers", "1,1"]) == 2
    assert main(["models", "prune", str(path), "--keep-layers", "0,2", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "config.json").is_file()


def test_the_schema_refuses_bad_layer_lists():
    from pydantic import ValidationError

    for fields, message in (({"keep_layers": []}, "empty"), ({"keep_layers": [1, 1]}, "twice"),
                            ({"keep_layers": [2, 1]}, "increasing"), ({}, "either keep_every or keep_layers"),
                            ({"keep_every": 0}, "greater than or equal to 1")):
        with pytest.raises(ValidationError, match=message):
            _pruned("x.gguf", **fields)
