"""The methods clovaai/wsolevaluation runs besides CAM, as its code runs them (../shared/research/
wsolevaluation.md §5-6): ``has`` (Hide-and-Seek), ``adl`` (attention-based dropout), ``acol`` (adversarial
complementary erasing), ``spg`` (self-produced guidance) and ``cutmix``, one module each; :mod:`.heads`
holds what the two-head methods share. Their defaults are the reference's ``config.py`` defaults: its tuned
values live only in the authors' spreadsheet.
"""

from wsolbench import hookimpl
from wsolbench_reference.acol import ACoL
from wsolbench_reference.adl import ADL
from wsolbench_reference.cutmix import CutMix
from wsolbench_reference.has import HideAndSeek
from wsolbench_reference.spg import SPG


@hookimpl
def wsolbench_register_methods(register):
    for method in (HideAndSeek, ADL, ACoL, SPG, CutMix):
        register(method)
