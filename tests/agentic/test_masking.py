"""Multi-turn trajectories: only model-written positions are scored, selected and trained on.

Environment tokens (tool output, chat-template glue) sit inside the sequence, so the models attend
to them, but no statistic, selection rule, loss or per-token figure may count them. References
are float64 forwards of the same models over each whole trajectory, written here independently.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from multi_turn_batch import LAYOUTS, PROMPT_LENGTHS, environment_positions, multi_turn_batch
from tip_ray.tip import RULES, select_tokens

RATIO = {"all": 1.0, "quadrant": 1.0}  # these two keep what their definition says; others keep 20%


def _ratio(rule: str) -> float:
    return RATIO.get(rule, 0.2)


def _teacher(form: str, **extra):
    from tip_ray.config.teacher import TeacherConfig

    return TeacherConfig.model_validate({"signal": {"type": form}, **extra})


def _selection(rule: str):
    from tip_ray.config.selection import SelectionConfig

    return SelectionConfig.model_validate({"rule": {"type": rule, "ratio": _ratio(rule)}})


@pytest.fixture(scope="module")
def batch(tiny_pair):
    from tip_ray.models.loading import load_tokenizer

    rollout, samples = multi_turn_batch(len(load_tokenizer(str(tiny_pair.student_path))))
    return rollout, samples


def _float64(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).double().eval()


@pytest.fixture(scope="module")
def reference(tiny_pair, batch):
    """Per model-written position, row-major: teacher and student log-probs from one float64
    forward over the whole trajectory (prompt, model turns and environment tokens)."""
    rollout, _ = batch
    teacher, student = _float64(tiny_pair.teacher_path), _float64(tiny_pair.student_path)
    teacher_lp, student_lp = [], []
    with torch.no_grad():
        for row in range(rollout.input_ids.shape[0]):
            length = int(rollout.attention_mask[row].sum())
            ids = rollout.input_ids[row, :length].unsqueeze(0)
            t_logits, s_logits = teacher(input_ids=ids).logits[0], student(input_ids=ids).logits[0]
            for t in range(length):
                if rollout.response_mask[row, t]:
                    teacher_lp.append(t_logits[t - 1].log_softmax(-1))
                    student_lp.append(s_logits[t - 1].log_softmax(-1))
    return torch.stack(teacher_lp), torch.stack(student_lp)


def test_pack_keeps_ids_and_marks_only_model_written_tokens(batch):
    rollout, samples = batch
    env = environment_positions(rollout)
    for row, (sample, layout) in enumerate(zip(samples, LAYOUTS)):
        p, r = PROMPT_LENGTHS[row], len(sample.response_ids)
        assert rollout.input_ids[row, p : p + r].tolist() == list(sample.response_ids)
        expected = [who == "m" for who, n in layout for _ in range(n)]
        assert rollout.response_mask[row, p : p + r].tolist() == expected
    assert int(rollout.response_mask.sum()) == sum(n for layout in LAYOUTS for who, n in layout if who == "m")
    assert int(env.sum()) == sum(n for layout in LAYOUTS for who, n in layout if who == "e") > 0
    # The environment tokens are real tokens (attended to), not padding.
    assert bool(rollout.attention_mask.bool()[env].all())


def test_pack_refuses_flags_of_another_length():
    from tip_ray.records import PromptBatch
    from tip_ray.rollout.backend import Sample
    from tip_ray.rollout.pack import pack_rollout

    bad = Sample(prompt_index=0, response_ids=(5, 6, 7), logprobs=(0.0, 0.0, 0.0), model_written=(True, False))
    prompts = PromptBatch(batch_id=0, prompt_ids=((4,),), answers=(None,), prompt_rows=(0,))
    with pytest.raises(ValueError, match="3 response ids, 2 model_written flags"):
        pack_rollout(prompts, [bad], policy_version=0, pad_token_id=0, texts=("",), seconds=0.0)


@pytest.mark.parametrize("form", ["full", "hidden"])
def test_teacher_statistics_at_model_positions_equal_one_forward_over_the_trajectory(tiny_pair, batch, reference, form):
    from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer

    rollout, _ = batch
    scorer = TeacherScorer(ScorerSettings(model_path=str(tiny_pair.teacher_path), teacher=_teacher(form, micro_batch_size=2)))
    scored = scorer.score(rollout)
    teacher_lp, _ = reference
    n_model = int(rollout.response_mask.sum())
    assert scored.teacher_sampled_logprobs.shape == (n_model,)
    sampled = rollout.input_ids[rollout.response_mask]
    want = teacher_lp.gather(1, sampled.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(scored.teacher_sampled_logprobs.double(), want, atol=1e-4, rtol=0)
    if form == "full":
        torch.testing.assert_close(scored.teacher.logprobs.double(), teacher_lp, atol=1e-4, rtol=0)
    else:
        head = scorer.head.double()
        torch.testing.assert_close((scored.teacher.hidden.double() @ head.T).log_softmax(-1), teacher_lp,
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("rule", RULES)
def test_tempting_environment_tokens_are_never_selected(batch, rule):
    """Environment positions get the highest entropy and a huge divergence: every rule would take
    them if they counted as response positions, and none takes them when they do not."""
    rollout, _ = batch
    env = environment_positions(rollout)
    gen = torch.Generator().manual_seed(3)
    shape = rollout.response_mask.shape
    entropy = torch.where(env, 1.0, 0.3 * torch.rand(shape, generator=gen))
    divergence = torch.where(env, 1e4, 0.1 * torch.rand(shape, generator=gen))
    stats = dict(entropy=entropy.float(), reverse_kl=divergence.float(), forward_kl=divergence.float())
    if rule == "q3_only":
        # Q3 is the confident-and-wrong corner: tempting there means low entropy, huge divergence.
        stats["entropy"] = torch.where(env, 0.0, 0.3 + 0.7 * torch.rand(shape, generator=gen)).float()

    def run(mask):
        return select_tokens(rule, **stats, response_mask=mask, ratio=_ratio(rule), generator=torch.Generator().manual_seed(0))

    tempted = run(rollout.response_mask | env)
    assert bool(tempted.mask[env].any()), f"{rule}: the environment tokens are not tempting enough to test anything"
    chosen = run(rollout.response_mask)
    assert not bool(chosen.mask[env].any())
    assert float(chosen.weights[env].abs().sum()) == 0.0
    assert bool((chosen.mask <= rollout.response_mask).all())
    assert chosen.num_selected > 0


@pytest.fixture(scope="module")
def scored_full(tiny_pair, batch):
    from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer

    return TeacherScorer(ScorerSettings(model_path=str(tiny_pair.teacher_path), teacher=_teacher("full"))).score(batch[0])


@pytest.fixture(scope="module")
def selector(tiny_pair):
    from tip_ray.select.selector import Selector, SelectorSettings

    return Selector(SelectorSettings(student_path=str(tiny_pair.student_path), teacher_head_path=None,
                                     selection=_selection("all")))


@pytest.mark.parametrize("rule", RULES)
def test_selector_figures_count_model_written_tokens_only(selector, scored_full, reference, rule):
    from tip_ray.weights import WeightVersion

    rollout = scored_full.rollout
    selector.settings = dataclasses.replace(selector.settings, selection=_selection(rule))
    selected, summary = selector.select(WeightVersion(version=0), scored_full)
    model = rollout.response_mask
    rows, cols = selected.positions[:, 0], selected.positions[:, 1]
    assert bool(model[rows, cols].all()), f"{rule} selected an environment or prompt position"
    assert not bool(environment_positions(rollout)[rows, cols].any())
    # The generated ids reach the learner unchanged, whole sequences and selected tokens alike.
    assert torch.equal(selected.input_ids, rollout.input_ids)
    assert torch.equal(selected.sampled_tokens, rollout.input_ids[rows, cols])
    n_model = int(model.sum())
    assert summary.num_response_tokens == selected.summary.num_response_tokens == n_model
    teacher_lp, student_lp = reference
    p = student_lp.exp()
    entropy = -(p * student_lp).sum(-1) / torch.log(torch.tensor(float(student_lp.shape[1]), dtype=torch.float64))
    reverse_kl = (p * (student_lp - teacher_lp)).sum(-1)
    assert summary.mean_entropy == pytest.approx(float(entropy.mean()), abs=1e-5)
    assert summary.mean_reverse_kl == pytest.approx(float(reverse_kl.mean()), abs=1e-5)
    shares = [summary.quadrants[f"share_q{q}"] for q in (1, 2, 3, 4)]
    assert sum(shares) == pytest.approx(1.0)
    # Each share is a count of model-written tokens over the model-written total.
    for share in shares:
        assert share * n_model == pytest.approx(round(share * n_model), abs=1e-6)


def test_learner_loss_on_a_trajectory_is_the_loss_over_its_model_written_positions(tiny_pair, selector, scored_full, reference):
    from tip_ray.config.learner import LearnerConfig
    from tip_ray.config.loss import ReverseKLLoss
    from tip_ray.config.train import TrainConfig
    from tip_ray.learner.rank import LearnerRank
    from tip_ray.learner.settings import LearnerSettings
    from tip_ray.weights import WeightVersion

    selector.settings = dataclasses.replace(selector.settings, selection=_selection("all"))
    selected, _ = selector.select(WeightVersion(version=0), scored_full)
    learner = LearnerConfig.model_validate({"micro_batch_size": 2, "optimizer": {
        "weight_decay": 0.0, "warmup_steps": 0, "schedule": "constant", "grad_clip": None}})
    settings = LearnerSettings(
        model_path=str(tiny_pair.student_path), teacher_head_path=None, world_size=1, learner=learner,
        loss=ReverseKLLoss(chunk_size=64), train=TrainConfig.model_validate({"steps": 1}),
    )
    learner = LearnerRank(0, settings)
    host, port = learner.rendezvous_address()
    learner.setup(host, port)
    try:
        result = learner.train_step(selected)
    finally:
        learner.shutdown()
    teacher_lp, student_lp = reference
    want = (student_lp.exp() * (student_lp - teacher_lp)).sum(-1).mean()
    assert result.num_selected == int(scored_full.rollout.response_mask.sum())
    assert result.loss == pytest.approx(float(want), abs=1e-5)
