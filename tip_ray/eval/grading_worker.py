"""A grading worker process: reads JSON requests from stdin, writes JSON replies to stdout.

Started by ``tip_ray.eval.grading.MathGrader``; one request per line,
``{"id", "response", "gold"}``, answered by ``{"id", "correct", "extracted", "error"}``. The
first line written is ``{"ready": true}``, once math-verify is imported. The parent enforces the
time limit by killing this process, so nothing here needs signals.
"""

from __future__ import annotations

import json
import logging
import sys


def main() -> None:
    # math-verify warns when its own (signal-based) timeouts are off; the parent owns the limit.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    from tip_ray.eval.grading import check_answer

    check_answer("\\boxed{1}", "1")  # warm the parser caches before reporting ready
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply = {"id": request["id"], "correct": False, "extracted": None, "error": None}
        try:
            reply["correct"], reply["extracted"] = check_answer(request["response"], request["gold"])
        except Exception as error:  # a grading failure is a wrong answer, never a dead worker
            reply["error"] = f"{type(error).__name__}: {error}"[:500]
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
