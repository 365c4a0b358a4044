"""Handing a new policy version from the learner to the stages that read it, through Ray's object
store: a dict of torch tensors (pickled storage by storage, rebuilt by every reader) against the
packed buffer the pipeline publishes (tip_ray/packed_weights.py: one uint8 array the readers
share without copying).

    python benchmarks/weight_handoff.py [--layers 15] [--repeats 5] [--no-write]

The weights have the shapes of the example's student (pipelines/smollm2_pruned.yaml: SmolLM2-135M
with 15 of its 30 layers, hidden 576, vocabulary 49152, tied embeddings; about 81M parameters,
325 MB in float32), filled with random numbers; no model is loaded. One actor stands for learner
rank 0 and publishes each version (gather: a copy of its weights; publish: packing, where used,
and the object store put); two reader actors stand for the rollout worker and the selector (read:
`resolve_state_dict`; load: copying into their own tensors). Each figure is the median over
`--repeats` versions after one warm-up version. Real local Ray, CPU, 2 torch threads per actor.

Writes benchmarks/results/weight_handoff.json and its section of docs/benchmarks.md unless
`--no-write`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from doc_sections import write_figures  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "weight_handoff.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Weight hand-off through the object store (the example's student)"
HIDDEN, VOCAB, INTERMEDIATE, KV_HIDDEN = 576, 49152, 1536, 192


def student_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    """SmolLM2-135M's parameter shapes (llama: 9 query heads, 3 key/value heads of 64)."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        prefix = f"model.layers.{i}."
        shapes.update({
            prefix + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            prefix + "self_attn.k_proj.weight": (KV_HIDDEN, HIDDEN),
            prefix + "self_attn.v_proj.weight": (KV_HIDDEN, HIDDEN),
            prefix + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            prefix + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
            prefix + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
            prefix + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
            prefix + "input_layernorm.weight": (HIDDEN,),
            prefix + "post_attention_layernorm.weight": (HIDDEN,),
        })
    shapes["model.norm.weight"] = (HIDDEN,)
    return shapes


def run(layers: int, repeats: int) -> dict:
    import ray
    import torch

    from tip_ray.packed_weights import pack_state_dict
    from tip_ray.weights import WeightVersion, resolve_state_dict

    shapes = student_shapes(layers)

    def random_state() -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        state = {name: torch.randn(shape, generator=g) for name, shape in shapes.items()}
        state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied, as the gathered dict has it
        return state

    @ray.remote
    class Publisher:
        def __init__(self):
            torch.set_num_threads(2)
            self.state = random_state()

        def publish(self, packed: bool):
            start = time.perf_counter()
            copy = {name: tensor.clone() for name, tensor in self.state.items()}
            gathered = time.perf_counter()
            value = pack_state_dict(copy) if packed else copy
            ref = ray.put(value)
            return [ref], gathered - start, time.perf_counter() - gathered

    @ray.remote
    class Reader:
        def __init__(self):
            torch.set_num_threads(2)
            self.state = random_state()

        def read(self, refs):
            start = time.perf_counter()
            weights = resolve_state_dict(WeightVersion(1, refs=tuple(refs)))
            read = time.perf_counter()
            with torch.no_grad():
                for name, tensor in self.state.items():
                    tensor.copy_(weights[name])
            return read - start, time.perf_counter() - read

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        publisher = Publisher.remote()
        readers = [Reader.remote(), Reader.remote()]
        params = sum(torch.Size(s).numel() for s in shapes.values())
        rows = []
        for packed in (False, True):
            figures: dict[str, list[float]] = {"gather": [], "publish": [], "read": [], "load": [], "total": []}
            for version in range(repeats + 1):
                start = time.perf_counter()
                refs, gather_s, publish_s = ray.get(publisher.publish.remote(packed))
                reads = ray.get([r.read.remote(refs) for r in readers])
                total = time.perf_counter() - start
                del refs
                if version == 0:
                    continue  # warm-up: first allocations, actor imports
                figures["gather"].append(gather_s)
                figures["publish"].append(publish_s)
                figures["read"].append(sum(r for r, _ in reads) / len(reads))
                figures["load"].append(sum(l for _, l in reads) / len(reads))
                figures["total"].append(total)
            rows.append({"form": "packed buffer" if packed else "dict of tensors",
                         **{k: statistics.median(v) for k, v in figures.items()}})
            print(f"{rows[-1]['form']}: " + ", ".join(f"{k} {rows[-1][k]:.3f} s" for k in figures), flush=True)
    finally:
        ray.shutdown()
    return {"layers": layers, "parameters": params, "megabytes": params * 4 / 1e6, "repeats": repeats,
            "rows": rows, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "load": os.getloadavg()[0]}


def report_lines(result: dict) -> list[str]:
    lines = [
        SECTION, "",
        f"`python benchmarks/weight_handoff.py --layers {result['layers']} --repeats {result['repeats']}` on "
        f"{result['machine']}, {result['date']}; 1-minute load average {result['load']:.2f} at the end. "
        f"{result['parameters'] / 1e6:.0f}M float32 parameters ({result['megabytes']:.0f} MB, the example's student "
        "shapes, random values), one publisher actor and two readers (the rollout worker and the selector); "
        "medians over the versions after a warm-up. read = `resolve_state_dict` in a reader, load = copying "
        "into its own tensors; total = one version from the publisher's copy until both readers hold it.",
        "",
        "| form | gather (s) | publish (s) | read, per reader (s) | load, per reader (s) | total (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['form']} | {row['gather']:.3f} | {row['publish']:.3f} | {row['read']:.3f} | "
                     f"{row['load']:.3f} | {row['total']:.3f} |")
    plain, packed = result["rows"]
    lines += ["", f"The packed buffer hands a version over in {packed['total']:.2f} s against {plain['total']:.2f} s "
              f"({plain['total'] / packed['total']:.1f}x less time per version at lag 0, where nothing overlaps it)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = run(args.layers, args.repeats)
    lines = report_lines(result)
    print("\n".join(lines))
    if not args.no_write:
        write_figures(RESULTS, result, DOC, SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
