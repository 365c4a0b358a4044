"""LoRA students: the merge the rollout engines receive, the config's refusals, and the FSDP2
learner group training only the adapters (2 ranks equal 1 rank, optimizer state for adapters
only, an exact checkpoint round trip, a peft adapter folder that loads on the base)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tests.pipeline.test_learner_group import fixed_batch, start_group, stop_group  # noqa: F401 (fixed_batch: a fixture)
from tip_ray.config import load_pipeline
from tip_ray.errors import TipRayError
from tip_ray.learner.lora import LoraSettings, add_adapters, merge_adapters

LORA = LoraSettings(rank=4, alpha=8.0, dropout=0.0, target_modules=("q_proj", "v_proj", "down_proj"))


def tiny_lm(tiny_pair):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_pair.student_path, dtype=torch.float32)


def randomise_adapters(model: torch.nn.Module, seed: int = 1) -> None:
    """peft starts B at zero (a no-op adapter); a merge test needs a non-zero one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_merge_equals_float64_reference_and_peft(tiny_pair):
    model = add_adapters(tiny_lm(tiny_pair), LORA)
    randomise_adapters(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    merged = merge_adapters(state, LORA.scaling)
    # Independent reference: W + (alpha / r) * B @ A in float64, per adapted module.
    prefix = "model.layers.0.self_attn.q_proj"
    w = state[f"{prefix}.base_layer.weight"].double()
    a = state[f"{prefix}.lora_A.default.weight"].double()
    b = state[f"{prefix}.lora_B.default.weight"].double()
    expected = w + (8.0 / 4.0) * (b @ a)
    assert torch.allclose(merged[f"{prefix}.weight"].double(), expected, atol=1e-6, rtol=0)
    assert (merged[f"{prefix}.weight"].double() - w).abs().max() > 1e-3  # the adapter mattered
    assert torch.equal(merged[f"{prefix}.bias"], state[f"{prefix}.base_layer.bias"])
    # The merged dict is a plain model's: same keys as the student, loads strictly.
    plain = tiny_lm(tiny_pair)
    assert set(merged) == set(plain.state_dict())
    plain.load_state_dict(merged, strict=True)
    # And it computes what the adapted model computes.
    ids = torch.randint(0, plain.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_adapters_are_the_only_trainable_parameters_and_float32(tiny_pair):
    model = add_adapters(tiny_lm(tiny_pair), dataclasses.replace(LORA, base_dtype="bfloat16"))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert not model.get_output_embeddings().weight.requires_grad


def test_unknown_target_module_is_a_clear_error(tiny_pair):
    with pytest.raises(TipRayError, match="learner.lora.target_modules.*no_such_proj"):
        add_adapters(tiny_lm(tiny_pair), dataclasses.replace(LORA, target_modules=("no_such_proj",)))


def test_config_refuses_an_adapted_lm_head(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run",
                            learner={"lora": {"rank": 4, "target_modules": ["q_proj", "lm_head"]}})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(TipRayError, match=r"learner\.lora\.target_modules.*lm_head.*cannot be adapted"):
        load_pipeline(tmp_path / "p.yaml")


def test_lora_off_by_default(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    assert load_pipeline(tmp_path / "p.yaml").learner.lora is None


def test_lora_two_ranks_equal_one_rank(ray_local, fixed_batch):  # noqa: F811
    ray = ray_local
    prepared, plans, _, selected = fixed_batch
    results, adapters, merged = {}, {}, {}
    for world in (1, 2):
        ranks = start_group(ray, prepared, plans, world, micro_batch_size=2, lora=LORA, lr=1e-2)
        steps = [ray.get([r.train_step.remote(selected) for r in ranks])[0] for _ in range(2)]
        results[world] = steps
        adapters[world] = ray.get([r.adapter_weights.remote() for r in ranks])[0]
        merged[world] = ray.get([r.full_state_dict.remote() for r in ranks])[0]
        stop_group(ray, ranks)
    for one, two in zip(results[1], results[2]):
        assert one.num_selected == two.num_selected > 0
        assert abs(one.loss - two.loss) <= 1e-4 * abs(one.loss)
        assert abs(one.grad_norm - two.grad_norm) <= 1e-4 * abs(one.grad_norm)
    assert results[1][1].loss < results[1][0].loss  # the adapters learned something
    assert set(adapters[1]) == set(adapters[2]) and all(".lora_" in k for k in adapters[1])
    for key in adapters[1]:
        assert torch.allclose(adapters[1][key], adapters[2][key], atol=1e-5), key
    # Published weights are a plain model's; only the adapted modules moved.
    base = tiny_lm_state(prepared.student_path)
    assert set(merged[1]) == set(base)
    for key, value in merged[1].items():
        adapted = any(f".{m}.weight" in key for m in LORA.target_modules)
        moved = not torch.allclose(value.float(), base[key].float())
        assert moved == adapted, key
        assert torch.allclose(merged[1][key].float(), merged[2][key].float(), atol=1e-5), key


def check_adapter_export(adapters, merged, student_path, input_ids, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tip_ray.learner.export import export_hf
    from tip_ray.learner.lora_export import export_adapter

    folder = export_adapter(adapters, LORA, student_path, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    export_hf(merged, student_path, tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(student_path, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(folder)).eval()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(with_adapter(input_ids=input_ids).logits, plain(input_ids=input_ids).logits, atol=1e-5)


def tiny_lm_state(path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


def test_lora_checkpoint_holds_adapters_and_resumes_exactly(ray_local, fixed_batch, tmp_path):  # noqa: F811
    """Save after one update, take a second; a fresh group loaded from the checkpoint (on
    another number of ranks) takes the same second update. The adapters after two updates,
    exported in peft's format, load with peft and compute what the merged export computes."""

    ray = ray_local
    prepared, plans, _, selected = fixed_batch
    ranks = start_group(ray, prepared, plans, 2, lora=LORA, lr=1e-2)
    ray.get([r.train_step.remote(selected) for r in ranks])
    ray.get([r.save_checkpoint.remote(str(tmp_path / "ckpt")) for r in ranks])
    second = ray.get([r.train_step.remote(selected) for r in ranks])[0]
    after = ray.get([r.adapter_weights.remote() for r in ranks])[0]
    merged = ray.get([r.full_state_dict.remote() for r in ranks])[0]
    stop_group(ray, ranks)
    check_adapter_export(after, merged, prepared.student_path, selected.input_ids[:2], tmp_path)

    from torch.distributed.checkpoint import FileSystemReader

    saved = FileSystemReader(str(tmp_path / "ckpt" / "shards")).read_metadata().state_dict_metadata
    model_keys = [k for k in saved if k.startswith("model.")]
    optim_keys = [k for k in saved if k.startswith("optim.state.")]
    assert model_keys and all(".lora_" in k for k in model_keys), [k for k in model_keys if ".lora_" not in k]
    assert optim_keys and all(".lora_" in k for k in optim_keys), optim_keys[:3]

    ranks = start_group(ray, prepared, plans, 1, lora=LORA, lr=1e-2)
    assert ray.get([r.load_checkpoint.remote(str(tmp_path / "ckpt")) for r in ranks]) == [1]
    again = ray.get([r.train_step.remote(selected) for r in ranks])[0]
    resumed = ray.get([r.adapter_weights.remote() for r in ranks])[0]
    stop_group(ray, ranks)
    assert abs(again.loss - second.loss) <= 1e-5 * abs(second.loss)
    for key in after:
        assert torch.allclose(after[key], resumed[key], atol=1e-6), key


@pytest.mark.slow
def test_bfloat16_base_trains_float32_adapters_on_two_ranks(ray_local, fixed_batch):  # noqa: F811
    """A bfloat16 base with float32 adapters: FSDP2 shards the mixed-dtype groups, the update
    is finite and the same on 1 and 2 ranks (up to bfloat16 rounding of the activations)."""
    ray = ray_local
    prepared, plans, _, selected = fixed_batch
    lora = dataclasses.replace(LORA, base_dtype="bfloat16")
    results, adapters = {}, {}
    for world in (1, 2):
        ranks = start_group(ray, prepared, plans, world, micro_batch_size=2, lora=lora, lr=1e-2)
        results[world] = [ray.get([r.train_step.remote(selected) for r in ranks])[0] for _ in range(2)]
        adapters[world] = ray.get([r.adapter_weights.remote() for r in ranks])[0]
        stop_group(ray, ranks)
    assert all(torch.isfinite(torch.tensor(r.loss)) and not r.skipped for r in results[1] + results[2])
    assert all(v.dtype == torch.float32 for v in adapters[1].values())
    for one, two in zip(results[1], results[2]):
        assert abs(one.loss - two.loss) <= 2e-2 * abs(one.loss), (one.loss, two.loss)
    assert results[1][1].loss < results[1][0].loss


def test_turning_lora_on_or_off_blocks_a_resume():
    """A checkpoint of a full run cannot continue as a LoRA run (nor the other way round)."""
    from tip_ray.checkpoint.resume import config_changes

    saved = "learner:\n  num_ranks: 2\n  lora: null\nname: x\n"
    current = {"learner": {"num_ranks": 2, "lora": {"rank": 8, "alpha": 16.0}}, "name": "x"}
    blocking, _ = config_changes(saved, current)
    assert blocking == ["learner.lora.alpha: None -> 16.0", "learner.lora.rank: None -> 8"]
    saved_without_key = "learner:\n  num_ranks: 2\nname: x\n"  # written before learner.lora existed
    assert config_changes(saved_without_key, {"learner": {"num_ranks": 2, "lora": None}, "name": "x"}) == ([], [])


def test_a_misspelt_target_is_refused_before_any_actor_starts(tiny_pair, demo_prompts, tmp_path):
    """peft accepts a list when one name matches; a typo beside a good name is still an error,
    raised by prepare_run (what `tip-ray validate` and `run` call first)."""
    from tip_ray.pipeline.prepare import prepare_run

    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run",
                            learner={"lora": {"rank": 4, "target_modules": ["q_proj", "v_porj"]}})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(TipRayError, match=r"learner\.lora\.target_modules: \['v_porj'\] match no linear module"):
        prepare_run(load_pipeline(tmp_path / "p.yaml"), write=False)
