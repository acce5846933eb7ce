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


@hookspec
def wsolbench_register_metrics(register):
    """Register localization metrics: call ``register(name, metric_class)`` for each.

    :param register: ``register(name: str, metric_class)``; ``metric_class`` is a torchmetrics ``Metric``
        built as ``metric_class(cam_curve_interval=..., **options)``. The engine scores box datasets with the
        metric named ``box_accuracy`` and mask datasets with ``pxap``.
    """


@hookspec
def wsolbench_register_protocol_files(register):
    """Register folders of protocol files: call ``register(folder)`` for each.

    The folder is laid out like wsolbench's ``protocols/`` folder: ``<folder>/<protocol id>/datasets/<dataset>.toml``
    (a dataset's defaults) and ``<folder>/<protocol id>/methods/<method>.toml`` (a method's ``[hparams]`` and
    ``[<dataset>.<backbone>]`` tables). Resolving dataset D or method M under protocol P reads
    ``P/datasets/D.toml`` / ``P/methods/M.toml`` from the packaged folder or from any registered folder, with the
    same checks and fingerprint; one file name shipped by two sources is an error naming both. A plugin may ship
    ``<id>/protocol.toml`` only for an id wsolbench does not package (a new protocol).

    :param register: ``register(folder)`` where ``folder`` is a path (``str`` or ``os.PathLike``) or an
        ``importlib.resources`` Traversable (``importlib.resources.files("my_plugin") / "protocols"``); a
        folder that does not exist is an error naming the plugin.
    """

# --- observer hooks: called on the main process (rank 0) during ``wsolbench run`` ----------------------


@hookspec
def wsolbench_run_start(run):
    """A run starts, after its datasets and model are built and before the epoch-0 evaluation.

    :param run: :class:`wsolbench.engine.fit.RunInfo` (config, output folder, device, world size).
    """


@hookspec
def wsolbench_epoch_end(run, epoch, scores):
    """An epoch ended and train-fullsup was evaluated (``epoch`` 0 is the evaluation before training).

    :param run: :class:`wsolbench.engine.fit.RunInfo`.
    :param epoch: the epoch just evaluated (0 before training).
    :param scores: the train-fullsup scores (as ``wsolbench evaluate --json`` prints) plus ``phase``,
        ``criteria`` (the method's label-free criteria) and, after training epochs, ``loss`` and ``logs``
        (per-epoch means of the training step's logs).
    """


@hookspec
def wsolbench_checkpoint_selected(run, epoch, scores):
    """The checkpoint to test was chosen (``epoch`` by the protocol's criterion on train-fullsup).

    :param run: :class:`wsolbench.engine.fit.RunInfo`.
    :param epoch: the selected epoch.
    :param scores: its train-fullsup scores.
    """


@hookspec
def wsolbench_run_finish(run, record):
    """The run finished: the test split was evaluated once and the run record was written.

    :param run: :class:`wsolbench.engine.fit.RunInfo`.
    :param record: the run record, as written to ``record.json``.
    """
