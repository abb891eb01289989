"""Reading a Prometheus text exposition the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(found for (sample, sample_labels), found in samples(text).items() if sample == name and wanted <= sample_labels)


def label_values(text: str, label: str) -> set[str]:
    return {value for (_, labels) in samples(text) for name, value in labels if name == label}
