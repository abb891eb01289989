"""What machine a benchmark ran on: a figure counts only with the CPU it was measured on (ONNX Runtime picks
different kernels with and without AVX-512 VNNI)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_description() -> str:
    """e.g. 'AMD EPYC 7B13 (family 25 model 1), AVX2, no AVX-512 VNNI, 2 cores'."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""

    def field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.split(":", 1)[0].strip() == name), "?")

    model = f"{field('model name')} (family {field('cpu family')} model {field('model')})"
    flags = set(field("flags").split())
    isa = ", ".join(
        [
            "AVX2" if "avx2" in flags else "no AVX2",
            "AVX-512 VNNI" if "avx512_vnni" in flags else "no AVX-512 VNNI",
        ]
    )
    return f"{model}, {isa}, {len(os.sched_getaffinity(0))} cores"
