"""``minmaxcam``: MinMaxCAM (Wang, Oramas, Tuytelaars), common- and full-region regularization of the CAM.

Re-derived from the paper and from what the official code (shadowwkl/MinMaxCAM, not copied) does
(../shared/research/methods.md §6). The network is the plain CAM backbone; batches are N classes x S
images (:class:`wsolbench.ClassBalancedBatches`). Every mini-batch trains twice, with one optimizer:

- stage I: cross-entropy, every parameter, train mode, one optimizer step;
- stage II, on the same (already augmented) batch: the backbone frozen (``requires_grad`` False) and the
  model in eval mode (BN statistics frozen); the mask ``M`` (the GT class's channel-weighted sum of the
  feature map, per-image min-max, bilinear to the input size; :mod:`wsolbench_minmaxcam.regularizers`)
  multiplies the normalised input; ``f_i = GAP(F(I * M))``, ``f_o = GAP(F(I))`` (constant);
  loss ``w_com * CRR + w_ori * FRR``, whose gradient reaches only the classifier weight, through ``M``;
  one optimizer step (the classifier's lr, ``lr * classifier_ratio``). Requires_grad and train mode are
  restored afterwards.

``frozen_params_step`` says what that second step does to the frozen parameters: ``"skip"`` (the default:
PyTorch >= 2, whose ``zero_grad`` sets gradients to None, so SGD skips them) or ``"decay"`` (the official
code as it ran, under PyTorch 1.x: ``zero_grad`` leaves zero tensors, so the step still applies weight
decay and the stage-I momentum to the "frozen" backbone). The published CUB tables use ``"decay"``, the
behaviour that produced the paper's numbers.

``vertical_flip`` (default True, as the official training transform) flips each training image
upside down with probability 0.5, drawn from the step's generator. The lr split is the official code's
(VGG16: conv6 + fc at ``lr * classifier_ratio``; ResNet50, MobileNetV2: fc), wsolbench's ``"new_layers"``.
The localisation map is the standard CAM (the harness's default ``predict``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wsolbench import Method, Phase, StepOutput, WsolbenchError, hookimpl
from wsolbench.method import MAIN
from wsolbench_minmaxcam.regularizers import common_region, full_region, stage_two_mask
from wsolbench import ClassBalancedBatches

FROZEN_PARAMS_STEPS = ("skip", "decay")


class MinMaxCam(Method):
    """CAM trained with a classifier-only second update per batch from CRR + FRR on CAM-masked inputs."""

    name = "minmaxcam"
    paper = ("Wang, Oramas, Tuytelaars, MinMaxCAM: Improving object coverage for CAM-based Weakly "
             "Supervised Object Localization")
    lr_split = "new_layers"
    automatic_optimization = False
    find_unused_parameters = True  # stage II gives the frozen backbone (and the fc bias) no gradient

    @dataclass(frozen=True)
    class Hparams:
        classes_per_batch: int = 5  #: N, distinct classes per batch (official train.py default)
        per_class: int = 5  #: S, images of each class per batch (official default)
        w_com: float = 1.0  #: weight of CRR (common region)
        w_ori: float = 1.0  #: weight of FRR (full region)
        frozen_params_step: str = "skip"  #: "skip" (PyTorch >= 2) or "decay" (official code under PyTorch 1.x)
        vertical_flip: bool = True  #: flip training images upside down with p = 0.5 (official transform)

        def __post_init__(self):
            for key in ("classes_per_batch", "per_class"):
                if getattr(self, key) < 1:
                    raise WsolbenchError(f"minmaxcam: {key} must be >= 1, got {getattr(self, key)}")
            for key in ("w_com", "w_ori"):
                if getattr(self, key) < 0:
                    raise WsolbenchError(f"minmaxcam: {key} must be >= 0, got {getattr(self, key)}")
            if self.frozen_params_step not in FROZEN_PARAMS_STEPS:
                raise WsolbenchError(f"minmaxcam: frozen_params_step must be skip or decay, "
                                     f"got {self.frozen_params_step!r}")

    @property
    def batch_size(self) -> int:
        return self.hparams.classes_per_batch * self.hparams.per_class

    def phases(self, settings) -> list[Phase]:
        return [Phase("train", settings.epochs, batch_size=self.batch_size)]

    def batch_sampler(self, dataset, batch_size, generator):
        labels = [dataset.label(index) for index in range(len(dataset))]
        return ClassBalancedBatches(labels, self.hparams.classes_per_batch, self.hparams.per_class, generator)

    def _flip(self, images, context):
        flip = torch.rand(len(images), generator=context.generator) < 0.5
        return torch.where(flip.to(images.device)[:, None, None, None], images.flip(2), images)

    def stage_two_loss(self, model, images, labels, classifier_weight):
        """(loss, CRR, FRR) of stage II; run with the backbone frozen and in eval mode."""
        with torch.no_grad():
            original = model(images, with_features=True).features
        weight = classifier_weight.reshape(classifier_weight.shape[0], -1)
        mask = stage_two_mask(original.float(), weight, labels, images.shape[-2:])
        masked = model(images * mask.to(images.dtype), with_features=True).features.float().mean(dim=(2, 3))
        crr = common_region(masked, labels)
        frr = full_region(masked, original.float().mean(dim=(2, 3)), labels)
        return self.hparams.w_com * crr + self.hparams.w_ori * frr, crr, frr

    def training_step(self, model, batch, context) -> StepOutput:
        hp = self.hparams
        module = context.module
        images, labels = batch["image"], batch["label"]
        if hp.vertical_flip:
            images = self._flip(images, context)
        set_to_none = hp.frozen_params_step == "skip"

        context.zero_grad(set_to_none=set_to_none)
        ce = F.cross_entropy(model(images), labels)
        context.backward(ce)
        context.optimizer_step(MAIN)  # stage I: every parameter, train mode

        classifier = {id(p) for p in module.classifier.parameters()}
        frozen = [p for p in module.parameters() if id(p) not in classifier and p.requires_grad]
        for parameter in frozen:
            parameter.requires_grad_(False)
        was_training = module.training
        module.eval()
        try:
            context.zero_grad(set_to_none=set_to_none)
            stage_two, crr, frr = self.stage_two_loss(model, images, labels, module.classifier.weight)
            context.backward(stage_two)
            context.optimizer_step(MAIN)  # stage II: the classifier (and, with "decay", decay on the rest)
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)
            module.train(was_training)
        return StepOutput(ce.detach(), {"ce": ce.detach(), "crr": crr.detach(), "frr": frr.detach(),
                                        "stage_two": stage_two.detach()})


@hookimpl
def wsolbench_register_methods(register):
    register(MinMaxCam)
