"""The synthetic shapes task: deterministic, ambiguous without the mask, target differs only in the mask."""

from __future__ import annotations

import numpy as np
import pytest

from maskpix_desktop.core.maskcond.synthetic import COLOURS, SyntheticShapes, make_item, shape_mask


def test_items_are_a_pure_function_of_seed_and_index():
    a, b = make_item(3, 17), make_item(3, 17)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.target, b.target)
    assert np.array_equal(a.mask, b.mask) and a.instruction == b.instruction
    c = make_item(4, 17)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [32, 64])
def test_target_differs_from_source_only_inside_the_mask(size):
    for i in range(40):
        it = make_item(0, i, size)
        changed = np.any(it.image != it.target, axis=-1)
        assert changed.any() and not (changed & ~it.mask).any()
        assert (it.target[it.mask] == COLOURS[it.new_colour]).all()
        assert it.image.shape == (size, size, 3) and it.mask.dtype == bool


def test_every_instruction_is_ambiguous_without_the_mask():
    for it in SyntheticShapes(60, seed=1):
        kind = it.instruction.split()[2]
        same = [s for s in it.shapes if s.kind == kind]
        assert len(same) >= 2, it.instruction  # a distractor of the same kind is always there
        assert it.shapes[it.target_index].kind == kind
        assert it.instruction.endswith(it.new_colour)
        assert it.shapes[it.target_index].colour != it.new_colour


def test_shapes_do_not_overlap_and_masks_are_not_empty():
    for it in SyntheticShapes(30, seed=2):
        ms = [shape_mask(s, 64) for s in it.shapes]
        assert all(m.sum() > 20 for m in ms)
        assert sum(m.astype(int) for m in ms).max() == 1


def test_bad_size_and_index_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        make_item(0, 0, size=30)
    with pytest.raises(IndexError):
        SyntheticShapes(2)[2]
