"""The real engines and the tests' fakes implement the same interfaces (``core/protocols.py``)."""

from __future__ import annotations

import inspect

import pytest
from fakes import FakeEditor, FakeSegmenter, FakeService

from maskpix_desktop.core.protocols import EditEngine, ModelProvider, SegmentEngine


def _methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def _signature_gaps(protocol: type, cls: type) -> list[str]:
    """Protocol methods ``cls`` lacks, or whose parameters it does not accept by the same names."""
    gaps = []
    for name in _methods(protocol):
        impl = getattr(cls, name, None)
        if impl is None:
            gaps.append(f"{name}: missing")
            continue
        want = [p for p in inspect.signature(getattr(protocol, name)).parameters if p != "self"]
        have = inspect.signature(impl).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in have.values())
        missing = [p for p in want if p not in have and not takes_kwargs]
        if missing:
            gaps.append(f"{name}: no parameter {missing}")
    return gaps


def _real(name: str) -> type:
    module, _, attr = name.rpartition(".")
    return getattr(__import__(module, fromlist=[attr]), attr)


@pytest.mark.parametrize(
    ("protocol", "cls"),
    [
        (SegmentEngine, "maskpix_desktop.core.segmenter.Segmenter"),
        (SegmentEngine, "maskpix_desktop.core.sam2_segmenter.Sam2Segmenter"),
        (EditEngine, "maskpix_desktop.core.editor.Editor"),
        (ModelProvider, "maskpix_desktop.core.service.ModelService"),
    ],
)
def test_real_engines_implement_the_protocols(protocol: type, cls: str) -> None:
    assert _signature_gaps(protocol, _real(cls)) == []


def test_fakes_implement_the_protocols() -> None:
    assert isinstance(FakeSegmenter(), SegmentEngine)
    assert isinstance(FakeEditor(), EditEngine)
    assert isinstance(FakeService(), ModelProvider)
    for protocol, cls in (
        (SegmentEngine, FakeSegmenter),
        (EditEngine, FakeEditor),
        (ModelProvider, FakeService),
    ):
        assert _signature_gaps(protocol, cls) == []


def test_signature_check_finds_a_missing_method_and_a_renamed_parameter() -> None:
    class Incomplete:
        def set_image(self, img):  # ``image`` renamed
            return True

    assert _signature_gaps(SegmentEngine, Incomplete) == [
        "set_image: no parameter ['image']",
        "predict: missing",
    ]
