"""CAM (Zhou et al., CVPR 2016), the baseline every WSOL method is compared with.

Plain cross-entropy training of a GAP classifier; the localization map is the class activation map of the
ground-truth class, the channel mean of ``fc.weight[label] * features`` (wsolevaluation's convention).
All of it is :class:`wsolbench.Method`'s default behaviour: this plugin only names it, through the same
``wsolbench`` entry-point door a third-party method uses.
"""

from wsolbench.method import Method
from wsolbench.plugins import hookimpl


class CAM(Method):
    name = "cam"
    paper = "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016"


@hookimpl
def wsolbench_register_methods(register):
    register(CAM)
