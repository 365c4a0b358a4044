"""What a run and a teacher service must agree on before the run sends it a batch: the teacher
model, the student's vocabulary and tokenizer, the signal form and the dtype it is computed in.
A difference is refused with both sides named (TeacherServiceMismatch)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tip_ray.errors import TipRayError

_EDGE = 1 << 20  # bytes hashed at each end of a weight file: enough to tell two checkpoints apart


class TeacherServiceMismatch(TipRayError, ValueError):
    """The run and the teacher service it names differ in what scoring depends on."""

    _fields = ("service",)


@dataclass(frozen=True)
class ServiceIdentity:
    teacher_model: str  # the teacher folder as resolved where it was computed
    teacher_fingerprint: str  # config.json and the weight files (names, sizes, both ends)
    vocab_size: int
    tokenizer_fingerprint: str  # the student tokenizer's token -> id map
    signal: str  # "hidden", "full", "topk(k=64)"
    dtype: str

    def described(self) -> str:
        return (f"teacher {self.teacher_model} (fingerprint {self.teacher_fingerprint[:12]}), signal "
                f"{self.signal}, dtype {self.dtype}, vocabulary {self.vocab_size} tokens (tokenizer "
                f"{self.tokenizer_fingerprint[:12]})")


def signal_name(signal) -> str:
    """teacher.signal as one word: hidden, full or topk(k=K)."""
    return f"topk(k={signal.k})" if signal.type == "topk" else signal.type


def model_fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    root = Path(folder)
    config = root / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(p for p in root.iterdir() if p.suffix in (".safetensors", ".bin")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as handle:
            digest.update(handle.read(_EDGE))
            if size > _EDGE:
                handle.seek(max(_EDGE, size - _EDGE))
                digest.update(handle.read())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer_path: str) -> str:
    from tip_ray.models.loading import load_tokenizer

    vocab = sorted(load_tokenizer(tokenizer_path).get_vocab().items())
    return hashlib.sha256(repr(vocab).encode()).hexdigest()


def identity_of(teacher_path: str, tokenizer_path: str, vocab_size: int, signal, dtype: str) -> ServiceIdentity:
    return ServiceIdentity(
        teacher_model=str(teacher_path),
        teacher_fingerprint=model_fingerprint(teacher_path),
        vocab_size=int(vocab_size),
        tokenizer_fingerprint=tokenizer_fingerprint(tokenizer_path),
        signal=signal_name(signal),
        dtype=dtype,
    )


def check_same(service: ServiceIdentity, run: ServiceIdentity, name: str) -> None:
    """Refuse a service that would score differently from the run's own teacher. The folder path
    may differ between machines; what the folder holds may not."""
    checks = [
        ("teacher model", service.teacher_fingerprint, run.teacher_fingerprint),
        ("student vocabulary size", service.vocab_size, run.vocab_size),
        ("student tokenizer", service.tokenizer_fingerprint, run.tokenizer_fingerprint),
        ("signal form", service.signal, run.signal),
        ("dtype", service.dtype, run.dtype),
    ]
    differ = [what for what, theirs, ours in checks if theirs != ours]
    if differ:
        raise TeacherServiceMismatch(
            f"teacher.backend: teacher service {name!r} differs from this run in {', '.join(differ)}. "
            f"The service has {service.described()}; this run has {run.described()}. Start a service "
            f"for this run's teacher (`tip-ray teacher serve PIPELINE --name NEW`) or change models.teacher "
            f"/ teacher.signal / models.dtype to the service's", service=name)
