"""Would a teacher service gain by merging the batches of different runs into one forward?
Scores the same rows as two batches of B rows one after the other (what the service does: one
request per replica call) and as one merged batch of 2B rows, with the same scorer code, on the
demo teacher (or the tests' tiny pair when the demo models are not cached).

    python benchmarks/teacher_service_batching.py [--rows 8] [--length 48] [--threads 1 2] [--repeats 5]

Prints the median seconds of each way and the ratio; on a shared machine the figures are noisy
(the load average is printed beside them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def teacher_folder() -> tuple[str, str]:
    from tip_ray.demo.bootstrap import cached_demo_models

    models = cached_demo_models()
    if models is not None:
        return str(models.teacher_path), "demo teacher"
    from tip_ray.models.tiny import save_tiny_pair
    from tip_ray.tasks.arithmetic import ALPHABET

    pair = save_tiny_pair(Path(tempfile.mkdtemp()), alphabet=ALPHABET, seed=0)
    return str(pair.teacher_path), "tiny test teacher"


def merged(a, b):
    import torch

    from tip_ray.records import RolloutBatch

    return RolloutBatch(batch_id=0, policy_version=0, input_ids=torch.cat([a.input_ids, b.input_ids]),
                        attention_mask=torch.cat([a.attention_mask, b.attention_mask]),
                        response_mask=torch.cat([a.response_mask, b.response_mask]),
                        prompt_index=torch.cat([a.prompt_index, b.prompt_index]),
                        response_texts=a.response_texts + b.response_texts, seconds=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from tests.teacher.service_support import rollout_batch
    from tip_ray.config.teacher import TeacherConfig
    from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer

    folder, what = teacher_folder()
    import json

    vocab = json.loads((Path(folder) / "config.json").read_text())["vocab_size"]
    a = rollout_batch(vocab, rows=args.rows, length=args.length, batch_id=1)
    b = rollout_batch(vocab, rows=args.rows, length=args.length, batch_id=2)
    both = merged(a, b)
    for threads in args.threads:
        teacher = TeacherConfig(micro_batch_size=2 * args.rows)  # one forward for the merged batch
        scorer = TeacherScorer(ScorerSettings(model_path=folder, teacher=teacher, num_threads=threads))
        torch.set_num_threads(threads)
        scorer.score(both)  # warm-up
        separate, together = [], []
        for _ in range(args.repeats):
            begin = time.perf_counter()
            scorer.score(a)
            scorer.score(b)
            separate.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            scorer.score(both)
            together.append(time.perf_counter() - begin)
        s, t = statistics.median(separate), statistics.median(together)
        print(f"{what}, {threads} thread(s), 2 x {args.rows} rows of {args.length} tokens: separate {s * 1000:.1f} ms, "
              f"merged {t * 1000:.1f} ms, merged/separate {t / s:.2f} (median of {args.repeats}; "
              f"load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
