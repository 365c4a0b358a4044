"""math-verify grading: equivalent forms grade alike, and a pathological answer hits the time limit."""

from __future__ import annotations

import threading
import time

import pytest

from tip_ray.eval.grading import GradeResult, MathGrader, grade_math

# (response, gold, expected): equivalent forms (fractions, decimals, \dfrac, spacing, units,
# degrees, percent, intervals, tuples) and near misses that must stay wrong.
CASES = [
    ("\\boxed{\\frac{1}{2}}", "\\frac12", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{-\\frac{1}{2}}", "-0.5", True),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", True),
    ("\\boxed{\\tfrac{3}{4}}", "0.75", True),
    ("\\boxed{3/4}", "\\frac{3}{4}", True),
    ("\\boxed{0.3333333}", "\\frac{1}{3}", True),
    ("\\boxed{\\frac{2}{3}}", "\\frac{3}{2}", False),
    ("\\boxed{\\frac{1}{3}}", "0.333", False),
    ("\\boxed{ 2 x + 1 }", "2x+1", True),
    ("\\boxed{1+2x}", "2x+1", True),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\boxed{(1,2)}", "(1, 2)", True),
    ("\\boxed{(2,1)}", "(1, 2)", False),
    ("\\boxed{10\\text{ cm}}", "10", True),
    ("\\boxed{10}", "10\\text{ cm}", True),
    ("\\boxed{5 \\text{ degrees}}", "5", True),
    ("\\boxed{30^\\circ}", "30", True),
    ("\\boxed{30}", "30^\\circ", True),
    ("\\boxed{30^{\\circ}}", "30^\\circ", True),
    ("\\boxed{31^\\circ}", "30^\\circ", False),
    ("\\boxed{50\\%}", "50", True),
    ("\\boxed{\\$18.90}", "18.90", True),
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{[2, 5)}", "[2,5)", True),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty,3]", True),
    ("\\boxed{[2,5]}", "[2,5)", False),
    ("\\boxed{(2,5)}", "[2,5)", False),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", True),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
    ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}", True),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", True),
    ("\\boxed{3}", "4", False),
    # Plain forms, without \boxed.
    ("The final answer is $\\frac{3}{4}$", "\\frac{3}{4}", True),
    ("The answer is 42.", "42", True),
    ("The answer is 41.", "42", False),
    ("no answer here", "3", False),
    # The boxed answer wins over numbers elsewhere in the text.
    ("First 7, then 9; so the answer is \\boxed{12}.", "12", True),
]

PATHOLOGICAL = "The answer is \\boxed{10^{10^{10}}}"  # sympy would compute a 10-billion-digit integer


@pytest.fixture(scope="module")
def grader():
    with MathGrader(timeout_s=5.0, num_workers=2) as pool:
        yield pool


def test_equivalent_forms_grade_alike(grader):
    results = grader.grade_batch([c[0] for c in CASES], [c[1] for c in CASES])
    wrong = [(response, gold, expected, result) for (response, gold, expected), result in zip(CASES, results)
             if result.correct != expected]
    assert not wrong, wrong
    assert all(isinstance(r, GradeResult) and not r.timed_out for r in results)
    assert results[0].extracted == "\\frac{1}{2}"
    assert results[-2].extracted is None  # "no answer here"


def test_pathological_answer_hits_the_limit_quickly(grader):
    grader.grade("\\boxed{1}", "1")  # workers started, so only the grading itself is timed
    limit = 1.0
    start = time.monotonic()
    result = grader.grade(PATHOLOGICAL, "1", timeout_s=limit)
    elapsed = time.monotonic() - start
    assert result == GradeResult(correct=False, timed_out=True, extracted=None, error=result.error)
    assert limit <= elapsed < limit + 2.0, elapsed
    # The killed worker was replaced: grading goes on.
    assert grader.grade("\\boxed{7}", "7").correct


def test_one_slow_answer_does_not_hold_up_the_batch(grader):
    responses = ["\\boxed{2}", PATHOLOGICAL, "\\boxed{\\frac{1}{4}}", "\\boxed{5}"]
    golds = ["2", "1", "0.25", "6"]
    replaced = grader.workers_replaced
    results = grader.grade_batch(responses, golds, timeout_s=3.0)
    assert [r.correct for r in results] == [True, False, True, False]
    assert [r.timed_out for r in results] == [False, True, False, False]
    assert grader.workers_replaced == replaced + 1


def test_grading_works_outside_the_main_thread(grader):
    # math-verify's own signal-based timeout would raise here; the worker pool does not care.
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=grader.grade("\\boxed{0.5}", "\\frac12")))
    thread.start()
    thread.join(timeout=60)
    assert outcome["result"].correct


def test_module_level_function():
    assert grade_math("so \\boxed{\\dfrac{1}{2}}", "0.5") is True
    assert grade_math("so \\boxed{2}", "0.5") is False


def test_mismatched_lengths_are_refused(grader):
    with pytest.raises(ValueError, match="2 responses but 1 gold"):
        grader.grade_batch(["a", "b"], ["1"])
