"""Tests of the hide-center plugin, run against the installed package (``pip install .`` first)."""

import pytest
import torch

from wsolbench.errors import WsolbenchError
from wsolbench.testing import check_method
from wsolbench_hide_center import HideCenter, hide_center


def test_hide_center_passes_wsolbench_conformance_check():
    check_method("hide_center")  # found through the entry point, as `wsolbench run` finds it
    check_method("hide_center", hparams={"p": 1.0, "size": 0.5})  # every training image hidden


def test_p_1_hides_one_square_of_the_given_size_near_the_centre():
    images = torch.ones(16, 3, 32, 32)
    out, hidden = hide_center(images, p=1.0, size=0.25, generator=torch.Generator().manual_seed(0))
    assert hidden.all() and images.eq(1).all()  # the input is left alone
    for image in out:
        zero = image.eq(0).all(dim=0)
        assert (image.eq(0) == zero).all()  # the same pixels in every channel
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        assert zero.sum() == 8 * 8 and len(rows) == len(cols) == 8  # one filled 8 x 8 square
        centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
        assert all(abs(c - 15.5) <= 4 for c in centre)  # at most half a side from the image centre


def test_p_0_hides_nothing_and_the_draws_follow_the_generator():
    images = torch.randn(8, 3, 32, 32)
    out, hidden = hide_center(images, p=0.0, size=0.25, generator=torch.Generator().manual_seed(0))
    assert not hidden.any() and torch.equal(out, images)
    first = hide_center(images, 0.5, 0.25, torch.Generator().manual_seed(3))[0]
    again = hide_center(images, 0.5, 0.25, torch.Generator().manual_seed(3))[0]
    assert torch.equal(first, again)


@pytest.mark.parametrize("values, message", [({"p": 1.5}, "p must lie in"), ({"size": 0}, "size must lie in")])
def test_out_of_range_hyperparameters_are_one_line_errors(values, message):
    with pytest.raises(WsolbenchError, match=message):
        HideCenter.make_hparams(values)
