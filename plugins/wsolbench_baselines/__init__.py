"""The protocol's two reference points, which no WSOL library ships: the floor and the ceiling.

- ``center`` (:mod:`wsolbench_baselines.center`): a centred Gaussian map for every image, no training;
- ``fsl`` (:mod:`wsolbench_baselines.fewshot`): a localiser trained with full supervision on part of
  train-fullsup, the few-shot baseline; its records say it used localization labels.

Both from Choe et al., Evaluating Weakly Supervised Object Localization Methods Right (CVPR 2020).
"""

from wsolbench import hookimpl
from wsolbench_baselines.center import CentreGaussian
from wsolbench_baselines.fewshot import FewShotLocaliser


@hookimpl
def wsolbench_register_methods(register):
    register(CentreGaussian)
    register(FewShotLocaliser)
