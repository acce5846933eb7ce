"""Every wsolbench hook, documented. Hooks are defined nowhere else.

A plugin is a module (found through the ``wsolbench`` entry-point group, the same door for built-in and
third-party plugins) holding functions marked with :data:`wsolbench.plugins.hookimpl`. An implementation
may take fewer arguments than its specification, so hooks can grow new arguments without breaking plugins.
A misspelled hook name fails at start-up.
"""

import pluggy

hookspec = pluggy.HookspecMarker("wsolbench")

# --- registration hooks: called once per plugin, at start-up ---------------------------------------


@hookspec
def wsolbench_register_datasets(register):
    """Register datasets: call ``register(name, factory)`` for each.

    :param register: ``register(name: str, dataset: wsolbench.data.DatasetSpec)``; a name registered
        twice (by any two plugins) is an error naming both distributions.
    """


@hookspec
def wsolbench_register_backbones(register):
    """Register CAM-ready backbones: call ``register(name, factory)`` for each.

    :param register: ``register(name: str, factory)`` where ``factory(num_classes, pretrained=True,
        weights_path=None, large_feature_map=False)`` returns a :class:`wsolbench.backbones.CamBackbone`.
    """


@hookspec
def wsolbench_register_methods(register):
    """Register WSOL methods: call ``register(MethodClass)`` for each.

    :param register: ``register(method: type[wsolbench.method.Method])``; the registry name is
        ``method.name``. A name registered twice is an error naming both distributions.
    """
