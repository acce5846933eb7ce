"""The wsolevaluation reference methods HaS, ADL and CutMix (wsolbench_reference): hiding, the attention
dropout layer and the pasted box on tiny tensors against values worked out by hand, the draws from the
step's generator (a seed fixes them, the global RNG does not touch them), the layers at the backbones'
adl_taps, and conformance."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from wsolbench_reference.adl import ADL, AttentionDropout
from wsolbench_reference.cutmix import Box, CutMix, cut_box, draw_lambda, kept_fraction, mixed_cross_entropy, paste
from wsolbench_reference.has import HideAndSeek, draw_hidden_cells, hide_cells

from wsolbench import StepContext, WsolbenchError
from wsolbench.testing import check_method


class Recorder(nn.Module):
    """A linear classifier on the flattened image that keeps the last batch it saw."""

    def __init__(self, image_shape=(2, 4, 4), classes=2):
        super().__init__()
        self.fc = nn.Linear(math.prod(image_shape), classes)

    def forward(self, images):
        self.seen = images.detach().clone()
        return self.fc(images.flatten(1))


def _context(seed, module=None):
    return StepContext(epoch=1, step=0, device=torch.device("cpu"), num_classes=2,
                       generator=torch.Generator().manual_seed(seed), module=module)


def _batch(size=2, shape=(2, 4, 4)):
    images = torch.arange(size * math.prod(shape), dtype=torch.float32).reshape(size, *shape) + 1
    return {"image": images, "label": torch.arange(size) % 2}


# --- HaS ------------------------------------------------------------------------------------------------


def test_hidden_cells_are_zeroed_in_every_channel_with_partial_border_cells():
    images = torch.ones(1, 2, 5, 5)
    # grid 2 on 5 x 5: 3 x 3 cells, the last row and column of them 1 pixel wide
    hidden = torch.tensor([[[True, False, False], [False, False, False], [False, False, True]]])
    result = hide_cells(images, hidden, 2)
    zeros = {(0, 0), (0, 1), (1, 0), (1, 1), (4, 4)}
    expected = torch.tensor([[0.0 if (r, c) in zeros else 1.0 for c in range(5)] for r in range(5)])
    assert torch.equal(result[0, 0], expected) and torch.equal(result[0, 1], expected)
    assert images.min() == 1  # the input is left alone


def test_rows_are_clipped_with_the_height_and_columns_with_the_width():
    images = torch.ones(1, 1, 3, 5)
    hidden = torch.tensor([[[False, False, True], [True, False, False]]])  # 2 x 3 cells of 2 px
    result = hide_cells(images, hidden, 2)[0, 0]
    zeros = {(0, 4), (1, 4), (2, 0), (2, 1)}
    assert {(r, c) for r in range(3) for c in range(5) if result[r, c] == 0} == zeros


def test_the_hidden_cells_are_one_rand_per_cell_from_the_generator():
    hidden = draw_hidden_cells(2, 5, 6, 2, 0.5, torch.Generator().manual_seed(7))
    expected = torch.rand((2, 3, 3), generator=torch.Generator().manual_seed(7)) < 0.5
    assert hidden.shape == (2, 3, 3) and torch.equal(hidden, expected)
    assert torch.equal(hidden, draw_hidden_cells(2, 5, 6, 2, 0.5, torch.Generator().manual_seed(7)))
    assert not draw_hidden_cells(2, 5, 6, 2, 0.0, torch.Generator()).any()
    assert draw_hidden_cells(2, 5, 6, 2, 1.0, torch.Generator()).all()


def test_the_training_step_hides_the_seeded_cells_whatever_the_global_rng():
    method = HideAndSeek(HideAndSeek.Hparams(grid_size=3, drop_rate=0.5), num_classes=2)
    batch, model = _batch(), Recorder()
    expected = torch.rand((2, 2, 2), generator=torch.Generator().manual_seed(3)) < 0.5  # 4 px: 2 x 2 cells
    seen = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        output = method.training_step(model, batch, _context(3))
        seen.append(model.seen)
        assert output.loss.item() == pytest.approx(F.cross_entropy(model(model.seen), batch["label"]).item())
    assert torch.equal(seen[0], seen[1])
    assert torch.equal(seen[0], hide_cells(batch["image"], expected, 3))
    assert 0 < expected.sum() < expected.numel()  # this seed hides some cells, not all


@pytest.mark.parametrize("drop_rate, hides_all", [(0.0, False), (1.0, True)])
def test_drop_rate_zero_hides_nothing_and_one_everything(drop_rate, hides_all):
    method = HideAndSeek(HideAndSeek.Hparams(grid_size=3, drop_rate=drop_rate), num_classes=2)
    batch, model = _batch(), Recorder()
    method.training_step(model, batch, _context(0))
    assert torch.equal(model.seen, torch.zeros_like(batch["image"]) if hides_all else batch["image"])


def test_has_hparams_are_checked():
    with pytest.raises(WsolbenchError, match=r"has: grid_size must be >= 1 \(pixels\), got 0"):
        HideAndSeek.make_hparams({"grid_size": 0})
    with pytest.raises(WsolbenchError, match=r"has: drop_rate must lie in \[0, 1\], got 1.5"):
        HideAndSeek.make_hparams({"drop_rate": 1.5})


# --- ADL ------------------------------------------------------------------------------------------------

# channels [[0, 1], [2, 4]] and [[1, 2], [3, 2]]: attention A = [[0.5, 1.5], [2.5, 3]], max 3; at
# gamma 0.9 the threshold is 2.7, so the drop mask is [[1, 1], [1, 0]] (only the maximum is dropped)
ADL_INPUT = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]], [[1.0, 2.0], [3.0, 2.0]]]])
ATTENTION = torch.tensor([[0.5, 1.5], [2.5, 3.0]])
DROP_MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])


def _adl_layer(draw, drop_rate=0.75, gamma=0.9):
    layer = AttentionDropout(drop_rate, gamma).train()
    layer.draw.fill_(draw)
    return layer


def test_a_draw_below_drop_rate_applies_the_drop_mask():
    output = _adl_layer(0.1)(ADL_INPUT)
    assert torch.equal(output, ADL_INPUT * DROP_MASK)
    assert output[0, :, 1, 1].tolist() == [0.0, 0.0] and output[0, :, 1, 0].tolist() == [2.0, 3.0]
    # gamma 0.8: threshold 2.4, so 2.5 is dropped as well
    assert torch.equal(_adl_layer(0.1, gamma=0.8)(ADL_INPUT), ADL_INPUT * torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_a_draw_at_or_above_drop_rate_applies_the_importance_map():
    for draw in (0.75, 0.9):
        assert torch.allclose(_adl_layer(draw)(ADL_INPUT), ADL_INPUT * torch.sigmoid(ATTENTION))


def test_one_draw_chooses_the_map_for_every_image_of_the_batch():
    second = torch.tensor([[[[6.0, 0.0], [0.0, 5.0]], [[6.0, 0.0], [0.0, 5.0]]]])  # A max 6: 5 < 5.4 kept
    batch = torch.cat([ADL_INPUT, second])
    dropped = _adl_layer(0.0)(batch)
    assert torch.equal(dropped[0], ADL_INPUT[0] * DROP_MASK)  # each image thresholded at its own max
    assert torch.equal(dropped[1], second[0] * torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    weighted = _adl_layer(0.99)(batch)
    assert torch.allclose(weighted, batch * torch.sigmoid(batch.mean(dim=1, keepdim=True)))


def test_the_layer_is_the_identity_in_eval_mode():
    layer = _adl_layer(0.0).eval()
    assert layer(ADL_INPUT) is ADL_INPUT
    assert "draw" not in layer.state_dict()  # the draw is not a weight


def _adl_model(backbone, **hparams):
    return ADL(ADL.Hparams(**hparams), backbone=backbone, num_classes=2, pretrained=False).build_model()


def _layers(model):
    return [module for module in model.modules() if isinstance(module, AttentionDropout)]


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_the_three_layers_sit_at_the_adl_taps_in_forward_order(backbone):
    model = _adl_model(backbone, drop_rate=0.5, gamma=0.6).eval()
    layers = _layers(model)
    assert len(layers) == 3 and all((l.drop_rate, l.gamma) == (0.5, 0.6) for l in layers)
    inputs = []
    for layer in layers:
        layer.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    output = model(torch.randn(1, 3, 32, 32), taps=model.adl_taps)
    assert len(inputs) == 3
    for tap, seen in zip(model.adl_taps, inputs):  # identity in eval: the tap's activation is the layer's input
        assert torch.equal(output.taps[tap], seen), tap
    expected = {"resnet18": ("layer3.0", "layer4.0", "layer4.1"), "vgg16": ("pool3", "conv4_3", "conv5_3")}
    assert tuple(model.adl_taps) == expected[backbone]


def test_the_training_step_gives_each_layer_one_draw_from_the_generator():
    method = ADL(backbone="resnet18", num_classes=2)
    model = method.build_model().train()
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    expected = torch.rand(3, generator=torch.Generator().manual_seed(5))
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        output = method.training_step(model, batch, _context(5, module=model))
        assert [layer.draw.item() for layer in _layers(model)] == expected.tolist()
    assert torch.isfinite(output.loss) and set(output.logs) == {"ce"}


def test_inception_v3_has_no_head_dropout_under_adl():
    model = _adl_model("inception_v3")
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    assert len(dropouts) == 3 and all(module.p == 0.0 for module in dropouts)
    assert len(_layers(model)) == 3


def test_adl_hparams_are_checked():
    with pytest.raises(WsolbenchError, match=r"adl: gamma must lie in \[0, 1\], got 1.2"):
        ADL.make_hparams({"gamma": 1.2})
    with pytest.raises(WsolbenchError, match=r"adl: drop_rate must lie in \[0, 1\], got -0.1"):
        ADL.make_hparams({"drop_rate": -0.1})


# --- CutMix ---------------------------------------------------------------------------------------------


def test_the_box_and_lambda_by_hand():
    # 8 x 8, lambda 0.75: sides int(8 * 0.5) = 4, +-2 around (3, 5): rows 1..4, columns 3..6
    box = cut_box(8, 8, 0.75, 3, 5)
    assert box == Box(1, 5, 3, 7) and box.area == 16
    assert kept_fraction(box, 8, 8) == 0.75
    # lambda 0.5: sides int(8 * 0.7071) = 5, but +-5 // 2 spans 4: lambda is recomputed as 0.75
    assert cut_box(8, 8, 0.5, 3, 5) == box
    assert kept_fraction(cut_box(8, 8, 1.0, 3, 5), 8, 8) == 1.0  # nothing pasted


def test_the_box_is_clipped_at_the_border():
    box = cut_box(8, 8, 0.75, 0, 7)  # rows -2..1 -> 0..1, columns 5..8 -> 5..7
    assert box == Box(0, 2, 5, 8) and kept_fraction(box, 8, 8) == 1 - 6 / 64
    box = cut_box(4, 8, 0.75, 3, 1)  # H 4: half side 1; W 8: half side 2
    assert box == Box(2, 4, 0, 3) and kept_fraction(box, 4, 8) == 1 - 6 / 32


def test_paste_takes_the_box_from_the_permuted_image():
    images = _batch()["image"]
    original = images.clone()
    box = Box(1, 3, 0, 2)
    mixed = paste(images, torch.tensor([1, 0]), box)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 0:2] = True
    for b, donor in ((0, 1), (1, 0)):
        assert torch.equal(mixed[b][:, inside], images[donor][:, inside])
        assert torch.equal(mixed[b][:, ~inside], images[b][:, ~inside])
    assert torch.equal(images, original)


def test_the_mixed_cross_entropy_by_hand():
    # softmax of (ln 3, 0) is (3/4, 1/4)
    logits = torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]])
    loss = mixed_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([1, 0]), 0.75)
    expected = 0.75 * (math.log(4 / 3) + math.log(4)) / 2 + 0.25 * (math.log(4) + math.log(4)) / 2
    assert loss.item() == pytest.approx(expected)


@pytest.mark.parametrize("hparams", [{"prob": 0.0}, {"beta": 0.0}])
def test_an_unmixed_step_leaves_the_batch_and_the_loss_plain(hparams):
    method = CutMix(CutMix.Hparams(**hparams), num_classes=2)
    batch, model = _batch(), Recorder()
    output = method.training_step(model, batch, _context(0))
    assert torch.equal(model.seen, batch["image"])
    assert output.loss.item() == pytest.approx(F.cross_entropy(model(batch["image"]), batch["label"]).item())
    assert output.logs["lambda"] == 1.0


def test_a_mixed_step_follows_the_documented_draws():
    method = CutMix(num_classes=2)
    batch, model = _batch(size=3), Recorder()
    generator = torch.Generator().manual_seed(11)  # the documented order: coin, lambda, pi, cy, cx
    assert torch.rand((), generator=generator).item() < 1.0
    lam = torch.rand((), generator=generator).item()  # beta 1: Beta(1, 1) is Uniform(0, 1)
    permutation = torch.randperm(3, generator=generator)
    centre = int(torch.randint(4, (), generator=generator)), int(torch.randint(4, (), generator=generator))
    box = cut_box(4, 4, lam, *centre)
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        output = method.training_step(model, batch, _context(11))
        assert torch.equal(model.seen, paste(batch["image"], permutation, box))
    kept = kept_fraction(box, 4, 4)
    assert output.logs["lambda"] == kept
    expected = mixed_cross_entropy(model(model.seen), batch["label"], batch["label"][permutation], kept)
    assert output.loss.item() == pytest.approx(expected.item())


def test_lambda_for_other_betas_is_numpys_beta_seeded_from_the_generator():
    lam = draw_lambda(2.0, torch.Generator().manual_seed(4))
    seed = int(torch.randint(2**63 - 1, (), generator=torch.Generator().manual_seed(4)))
    assert lam == np.random.default_rng(seed).beta(2.0, 2.0) and 0 < lam < 1
    assert draw_lambda(1.0, torch.Generator().manual_seed(4)) == torch.rand((), generator=torch.Generator()
                                                                            .manual_seed(4)).item()


def test_cutmix_hparams_are_checked():
    with pytest.raises(WsolbenchError, match=r"cutmix: beta must be >= 0, got -1.0"):
        CutMix.make_hparams({"beta": -1})
    with pytest.raises(WsolbenchError, match=r"cutmix: prob must lie in \[0, 1\], got 2.0"):
        CutMix.make_hparams({"prob": 2})


# --- conformance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [HideAndSeek, ADL, CutMix])
def test_default_hparams_conform(method):
    check_method(method)
