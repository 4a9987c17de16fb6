"""compare() runs the two views' pixel metrics on two threads from 1 MP on (issue 20): same numbers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from maskpix_desktop.core import metrics as mx
from maskpix_desktop.core.metrics import views


def _photo(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    orig = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    baseline = np.clip(orig.astype(np.int16) + rng.integers(-30, 31, orig.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - h / 2) / (0.3 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 < 1
    blended = np.where(mask[..., None], baseline, orig)
    return orig, baseline, blended, mask


def test_the_two_threads_give_the_numbers_of_one_view_after_the_other(monkeypatch):
    orig, baseline, blended, mask = _photo(1024, 1100)
    assert orig.shape[0] * orig.shape[1] >= views.PARALLEL_PIXELS
    threads = []
    real = views._fast_metrics
    monkeypatch.setattr(views, "COMPARE_THREADS", 2)
    monkeypatch.setattr(views, "_fast_metrics", lambda *a: threads.append(threading.get_ident()) or real(*a))
    both = mx.compare(orig, baseline, blended, mask)
    assert len(set(threads)) == 2  # one thread per view
    assert both["baseline"] == mx.compute_metrics(orig, baseline, mask)
    assert both["blended"] == mx.compute_metrics(orig, blended, mask)
    assert list(both["blended"]) == list(mx.compute_metrics(orig, blended, mask))  # same keys, same order


@pytest.mark.parametrize("threads", [1, 2])
def test_clip_scores_follow_on_the_calling_thread(monkeypatch, threads):
    class Clip:  # the scorer's surface compare uses; records the calling threads
        name = "fake"
        calls: list[int] = []

        def image_features(self, imgs):
            Clip.calls.append(threading.get_ident())
            return [np.full(4, float(np.asarray(i).mean())) for i in imgs]

        def text_features(self, texts):
            return [np.arange(4.0) + len(t) for t in texts]

        def _score(self, a, b):
            return float(a @ b)

        def _direction(self, *a):
            return 0.0

    monkeypatch.setattr(views, "COMPARE_THREADS", threads)
    orig, baseline, blended, mask = _photo(1024, 1024)
    out = mx.compare(orig, baseline, blended, mask, clip=Clip(), text="a cat")
    assert set(Clip.calls) == {threading.get_ident()}
    assert (
        out["blended"]["clip_score"]
        == mx.compute_metrics(orig, blended, mask, clip=Clip(), text="a cat")["clip_score"]
    )
