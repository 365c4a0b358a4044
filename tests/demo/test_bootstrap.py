"""Demo bootstrap: training lowers the loss, the cache is complete or absent, and reused."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tip_ray.demo import bootstrap
from tip_ray.tasks import arithmetic as task
from tip_ray.demo.bootstrap import DemoRecipe, SFTSettings, ensure_demo_models, sft_train
from tip_ray.models.loading import check_compatible, load_causal_lm, load_tokenizer
from tip_ray.models.tiny import TinyModelSpec, build_char_tokenizer, build_tiny_model

SMALL = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                      max_position_embeddings=96)
# A recipe small enough for the default suite: it checks the plumbing, not the accuracy.
TINY_RECIPE = DemoRecipe(
    teacher_spec=SMALL,
    student_spec=SMALL,
    teacher_sft=SFTSettings(steps=3, batch_size=4, seed=1),
    student_sft=SFTSettings(steps=2, batch_size=4, seed=2),
    eval_size=4,
)


def _held_out_loss(model, tokenizer) -> float:
    batch = bootstrap._encode_batch(tokenizer, task.make_problems(32, seed=99))
    with torch.no_grad():
        return model(input_ids=batch[0], attention_mask=batch[1], labels=batch[2]).loss.item()


def test_sft_lowers_held_out_loss():
    tokenizer = build_char_tokenizer(task.ALPHABET)
    model = build_tiny_model(SMALL, len(tokenizer), seed=0)
    before = _held_out_loss(model, tokenizer)
    sft_train(model, tokenizer, SFTSettings(steps=40, batch_size=16, lr=3e-3, warmup_steps=5), progress=False)
    after = _held_out_loss(model, tokenizer)
    assert after < 0.8 * before, (before, after)


def test_training_stops_at_the_first_check_that_reaches_the_target():
    tokenizer = build_char_tokenizer(task.ALPHABET)
    model = build_tiny_model(SMALL, len(tokenizer), seed=0)
    settings = SFTSettings(steps=50, batch_size=4, target_accuracy=0.0, check_every=3, check_from=5, check_size=4)
    outcome = sft_train(model, tokenizer, settings, progress=False)
    assert outcome.steps == 6 and outcome.validation_accuracy == 0.0
    plain = sft_train(model, tokenizer, SFTSettings(steps=2, batch_size=4), progress=False)
    assert plain.steps == 2 and plain.validation_accuracy is None


def test_learning_rate_schedules():
    cosine = SFTSettings(steps=100, lr=1.0, warmup_steps=10)
    constant = SFTSettings(steps=100, lr=1.0, warmup_steps=10, schedule="constant")
    assert bootstrap._learning_rate(cosine, 0) == pytest.approx(0.1 * 1.0)  # warm-up, first step
    assert bootstrap._learning_rate(cosine, 9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.09)) * 0.9 + 0.1)
    assert bootstrap._learning_rate(cosine, 100) == pytest.approx(0.1)  # decayed to 10%
    assert [bootstrap._learning_rate(constant, s) for s in (9, 50, 99)] == [1.0, 1.0, 1.0]


def test_labels_cover_only_the_solution_and_eos():
    tokenizer = build_char_tokenizer(task.ALPHABET)
    problems = task.make_problems(3, seed=0)
    input_ids, attention_mask, labels = bootstrap._encode_batch(tokenizer, problems)
    for row, problem in enumerate(problems):
        learned = labels[row][labels[row] != -100].tolist()
        assert learned[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(learned[:-1]) == problem.solution
        length = int(attention_mask[row].sum())
        assert input_ids[row, :length].tolist()[-len(learned):] == learned


def test_cache_is_built_once_then_reused(tmp_path):
    cache = tmp_path / "demo"
    assert bootstrap.cached_demo_models(cache, TINY_RECIPE) is None  # reading never builds
    assert not cache.exists()
    with pytest.warns(UserWarning, match="off target"):  # 3 steps of training make no teacher
        models = ensure_demo_models(cache, progress=False, recipe=TINY_RECIPE)
    marker = cache / bootstrap.MARKER_FILE
    assert marker.is_file()
    record = json.loads(marker.read_text())
    assert record["teacher_accuracy"] == models.teacher_accuracy
    assert 0.0 <= models.student_accuracy <= 1.0
    assert check_compatible(str(models.student_path), str(models.teacher_path)) == len(load_tokenizer(str(models.tokenizer_path)))
    load_causal_lm(str(models.teacher_path))
    # No staging folders are left beside the cache.
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []

    stamp = (models.teacher_path / "model.safetensors").stat().st_mtime_ns
    again = ensure_demo_models(cache, progress=False, recipe=TINY_RECIPE)
    assert again == models
    assert bootstrap.cached_demo_models(cache, TINY_RECIPE) == models
    assert bootstrap.cached_demo_models(cache) is None  # built from another recipe
    assert (models.teacher_path / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.filterwarnings("ignore:demo models off target")
def test_incomplete_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "demo"
    ensure_demo_models(cache, progress=False, recipe=TINY_RECIPE)
    (cache / bootstrap.MARKER_FILE).unlink()  # as if a build had stopped before its last write
    (cache / "teacher" / "model.safetensors").unlink()
    models = ensure_demo_models(cache, progress=False, recipe=TINY_RECIPE)
    assert (cache / bootstrap.MARKER_FILE).is_file()
    load_causal_lm(str(models.teacher_path))


def test_a_folder_with_foreign_files_is_never_deleted(tmp_path):
    cache = tmp_path / "demo"
    cache.mkdir()
    (cache / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="did not write"):
        ensure_demo_models(cache, progress=False, recipe=TINY_RECIPE)
    assert (cache / "notes.txt").read_text() == "mine"


def test_thread_count_can_be_set(monkeypatch):
    monkeypatch.setenv("TIP_RAY_DEMO_THREADS", "3")
    assert bootstrap.training_threads() == 3
    monkeypatch.setenv("TIP_RAY_DEMO_THREADS", "many")
    with pytest.raises(ValueError, match="TIP_RAY_DEMO_THREADS"):
        bootstrap.training_threads()
    monkeypatch.delenv("TIP_RAY_DEMO_THREADS")
    assert bootstrap.training_threads() == 1  # the default that makes the models reproducible


def test_training_is_bit_reproducible_with_the_default_threads():
    import dataclasses

    tokenizer = build_char_tokenizer(task.ALPHABET, model_max_length=TINY_RECIPE.teacher_spec.max_position_embeddings)
    settings = dataclasses.replace(TINY_RECIPE.teacher_sft, steps=8, target_accuracy=None)
    trained = []
    for _ in range(2):
        model = build_tiny_model(TINY_RECIPE.teacher_spec, len(tokenizer), seed=3)
        with bootstrap.torch_threads(bootstrap.training_threads()):
            sft_train(model, tokenizer, settings, progress=False)
        trained.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert bootstrap.default_cache_dir() == tmp_path / "tip-ray" / bootstrap.CACHE_VERSION
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert bootstrap.default_cache_dir() == bootstrap.Path.home() / ".cache" / "tip-ray" / bootstrap.CACHE_VERSION


@pytest.mark.slow
def test_full_bootstrap_meets_the_demo_requirements(tmp_path):
    """The shipped recipe: teacher >= 90%, student clearly below it (minutes of CPU)."""
    models = ensure_demo_models(tmp_path / "demo", progress=False)
    assert models.teacher_accuracy >= 0.9
    assert 0.2 <= models.student_accuracy <= models.teacher_accuracy - 0.2
