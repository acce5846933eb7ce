"""Protocol files -> RunConfig: precedence, overrides, provenance, fingerprint, file errors, protocol files
shipped by plugins, the shipped protocol."""

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from wsolbench.data.spec import DatasetSpec
from wsolbench.errors import WsolbenchError
from wsolbench.method import Method
from wsolbench.plugins import registry
from wsolbench.protocol import SETTINGS, RunConfig, packaged_protocols, parse_overrides, resolve_run
from wsolbench.protocol_files import packaged_root
from wsolbench.registry import UnknownNameError

PROTOCOL_TOML = """
[protocol]
id = "toyproto"

[splits]
train = "train"
val = "val"
test = "test"

[selection]
boxes = "maxboxacc_v2"
masks = "pxap"

[model]
backbone = "vgg16"
pretrained = true
large_feature_map = false

[training]
epochs = 40
batch_size = 64
lr = 0.01
lr_decay_frequency = 30
lr_decay_factor = 0.1
lr_decay_points = []
weight_decay = 1e-4
momentum = 0.9
nesterov = true
classifier_ratio = 10  # an integer is fine for a float setting
image_size = 224

[evaluation]
cam_curve_interval = 0.001
iou_thresholds = [30, 50, 70]
num_val_sample_per_class = 0
eval_checkpoint = "last"
evaluate_epoch0 = true
"""

SYNTHETIC_TOML = """
[dataset]
name = "synthetic"

[model]
backbone = "resnet18"
pretrained = false

[training]
epochs = 7
batch_size = 16
lr = 0.05
"""

TOY_TOML = """
[method]
name = "toy"

[hparams]
grid_size = 8

[synthetic.resnet18]
epochs = 3
lr = 0.2
hparams = { drop_rate = 0.25 }

[synthetic.vgg16]
epochs = 99
"""


@dataclass
class ToyHparams:
    drop_rate: float = 0.5
    grid_size: int = 4
    mode: str = "soft"
    flag: bool = False


class Toy(Method):
    name = "toy"
    Hparams = ToyHparams


@pytest.fixture
def toy_method(monkeypatch):
    monkeypatch.setitem(registry("method")._entries, "toy", (Toy, "the test"))


def write_protocol(folder, protocol=PROTOCOL_TOML, synthetic=SYNTHETIC_TOML, toy=TOY_TOML):
    (folder / "datasets").mkdir(parents=True)
    (folder / "methods").mkdir()
    (folder / "protocol.toml").write_text(protocol)
    if synthetic is not None:
        (folder / "datasets" / "synthetic.toml").write_text(synthetic)
    if toy is not None:
        (folder / "methods" / "toy.toml").write_text(toy)
    return folder


@pytest.fixture
def proto(tmp_path, toy_method):
    return write_protocol(tmp_path / "proto")


def resolve(proto, overrides=None, method="toy", dataset="synthetic", backbone=None):
    return resolve_run(method, dataset, backbone, overrides or {}, protocol=proto)


# --- precedence ---------------------------------------------------------------------------------------------


def test_each_level_wins_over_the_ones_before(proto):
    config = resolve(proto, {"lr": "0.5", "method.mode": "hard"})
    assert config.protocol == "toyproto"
    assert config.backbone == "resnet18"        # dataset over protocol
    assert config.pretrained is False           # dataset
    assert config.epochs == 3                   # method table over dataset
    assert config.batch_size == 16              # dataset
    assert config.lr == 0.5                     # override over method table
    assert config.weight_decay == 1e-4          # protocol
    assert config.classifier_ratio == 10.0 and isinstance(config.classifier_ratio, float)
    assert config.iou_thresholds == (30, 50, 70)
    assert dict(config.hparams) == {"drop_rate": 0.25,  # method table
                                    "grid_size": 8,     # method file [hparams]
                                    "mode": "hard",     # override
                                    "flag": False}      # the class default
    assert config.method_table == "synthetic.resnet18"
    assert config.defaults_from == "dataset"
    assert config.selection_metric == "maxboxacc_v2"
    assert (config.train_split, config.val_split, config.test_split) == ("train", "val", "test")
    assert config.overrides == {"lr": "0.5", "method.mode": "hard"}
    assert config.off_protocol is True


def test_the_backbone_picks_the_method_table(proto):
    config = resolve(proto, backbone="vgg16")
    assert (config.backbone, config.epochs, config.batch_size, config.lr) == ("vgg16", 99, 16, 0.05)
    assert config.method_table == "synthetic.vgg16"
    assert dict(config.hparams) == {"drop_rate": 0.5, "grid_size": 8, "mode": "soft", "flag": False}
    assert config.off_protocol is False and config.overrides == {}


def test_no_method_table_for_the_pair(proto):
    config = resolve(proto, backbone="resnet50")
    assert (config.epochs, config.lr, config.pretrained) == (7, 0.05, False)
    assert config.method_table is None


def test_a_dataset_without_a_file_gets_the_protocol_defaults(proto):
    config = resolve(proto, dataset="cub")
    assert config.defaults_from == "protocol"
    assert (config.backbone, config.epochs, config.batch_size, config.lr, config.pretrained) == \
        ("vgg16", 40, 64, 0.01, True)


def test_a_never_seen_layout_folder(proto):
    spec = DatasetSpec(name="MyBirds", folder="MyBirds", num_classes=3, annotation="masks")
    config = resolve(proto, dataset=spec)
    assert (config.dataset, config.defaults_from, config.selection_metric) == ("MyBirds", "protocol", "pxap")


def test_a_dataset_without_localization_labels_cannot_select(proto):
    spec = DatasetSpec(name="plain", folder="plain", num_classes=3, annotation="none")
    with pytest.raises(WsolbenchError, match="'plain' has 'none' localization labels"):
        resolve(proto, dataset=spec)


def test_a_method_without_a_file_uses_its_class_defaults(proto):
    config = resolve(proto, method="cam")
    assert config.method_table is None and dict(config.hparams) == {}
    assert (config.epochs, config.backbone) == (7, "resnet18")


def test_dataset_file_names_match_exactly(tmp_path, toy_method):
    proto = write_protocol(tmp_path / "p", synthetic=None)
    (proto / "datasets" / "Synthetic.toml").write_text(SYNTHETIC_TOML.replace('"synthetic"', '"Synthetic"'))
    assert resolve(proto).defaults_from == "protocol"


# --- overrides ----------------------------------------------------------------------------------------------


def test_parse_overrides():
    assert parse_overrides(["lr=0.1", "method.mode=a=b", "eval_checkpoint="]) == \
        {"lr": "0.1", "method.mode": "a=b", "eval_checkpoint": ""}
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("pairs, message", [
    (["lr"], "'lr': expected KEY=VALUE"),
    (["=3"], "'=3': expected KEY=VALUE"),
    (["lr=1", "lr=2"], "lr: given twice"),
])
def test_malformed_overrides(pairs, message):
    with pytest.raises(WsolbenchError, match=message):
        parse_overrides(pairs)


@pytest.mark.parametrize("key, text, expected", [
    ("epochs", "12", 12),
    ("lr_decay_points", "41,61", (41, 61)),
    ("lr_decay_points", "5", (5,)),
    ("lr_decay_points", "", ()),
    ("num_val_sample_per_class", "5", 5),
    ("num_val_sample_per_class", "0", 0),
    ("lr", "1e-3", 0.001),
    ("nesterov", "false", False),
    ("large_feature_map", "yes", True),
    ("iou_thresholds", "50", (50,)),
    ("iou_thresholds", "10,90", (10, 90)),
    ("eval_checkpoint", "best", "best"),
    ("cam_curve_interval", "0.01", 0.01),
])
def test_setting_overrides_are_converted(proto, key, text, expected):
    config = resolve(proto, {key: text})
    assert getattr(config, key) == expected
    assert config.off_protocol is True


@pytest.mark.parametrize("key, text, message", [
    ("lrr", "1", r"^--set lrr=1: unknown key; did you mean lr\?$"),
    ("drop_rat", "0.1", r"^--set drop_rat=0.1: unknown key; did you mean drop_rate\?$"),
    ("zzz", "1", r"--set zzz=1: unknown key; settings: pretrained, .*, selection; method 'toy' hyperparameters: "
                 r"drop_rate, grid_size, mode, flag \(also as method.<name>\)"),
    ("lr_decay_points", "61,41", "lr_decay_points must be strictly increasing positive integers"),
    ("lr_decay_points", "0,5", "lr_decay_points must be strictly increasing positive integers"),
    ("lr_decay_points", "3,3", "lr_decay_points must be strictly increasing positive integers"),
    ("lr_decay_points", "4,x", "lr_decay_points must be comma-separated integers"),
    ("iou_thresholds", "", r"iou_thresholds must be one or more integers in 1..100"),
    ("num_val_sample_per_class", "-1", "num_val_sample_per_class must be >= 0"),
    ("multi_contour", "false", r"^--set multi_contour: multi_contour was removed: the \[selection\] metric decides "
                               r"\(maxboxacc_v2 all contours / maxboxacc largest contour\)$"),
    ("grid_size", "4.5", "--set: method 'toy': hyperparameter 'grid_size' must be int"),
    ("epochs", "three", "--set epochs=three: epochs must be an integer"),
    ("epochs", "2.5", "epochs must be an integer"),
    ("epochs", "-1", "epochs must be >= 0"),
    ("lr", "fast", "lr must be a number"),
    ("lr", "0", r"lr must be > 0"),
    ("nesterov", "maybe", "nesterov must be true or false"),
    ("iou_thresholds", "30,x", "iou_thresholds must be comma-separated integers"),
    ("iou_thresholds", "0,50", r"iou_thresholds must be one or more integers in 1..100"),
    ("eval_checkpoint", "middle", "eval_checkpoint must be last or best"),
    ("backbone", "resnet50", "--set backbone: choose the backbone with --backbone"),
    ("method.nope", "1", "--set: method 'toy' has no hyperparameter 'nope'"),
    ("method.grid_size", "4.5", "--set: method 'toy': hyperparameter 'grid_size' must be int"),
])
def test_bad_overrides_are_one_line_errors_naming_the_key(proto, key, text, message):
    with pytest.raises(WsolbenchError, match=message) as error:
        resolve(proto, {key: text})
    assert "\n" not in str(error.value)


def test_method_hparam_overrides_are_converted_by_the_method(proto):
    config = resolve(proto, {"method.grid_size": "16", "method.flag": "true", "method.drop_rate": "1"})
    assert dict(config.hparams) == {"drop_rate": 1.0, "grid_size": 16, "mode": "soft", "flag": True}


def test_a_hyperparameter_by_its_bare_name(proto):
    config = resolve(proto, {"drop_rate": "0.1", "grid_size": "2"})
    assert dict(config.hparams) == {"drop_rate": 0.1, "grid_size": 2, "mode": "soft", "flag": False}
    assert config.provenance["method.drop_rate"] == config.provenance["method.grid_size"] == "--set (off-protocol)"
    assert config.off_protocol is True


@dataclass
class ShadowingHparams:
    lr: float = 1.0  # also a setting's name: the bare name is the setting's
    erase_threshold: float = 0.5


class Shadowing(Method):
    name = "shadowing"
    Hparams = ShadowingHparams


@pytest.fixture
def shadowing_method(monkeypatch):
    monkeypatch.setitem(registry("method")._entries, "shadowing", (Shadowing, "the test"))


def test_a_setting_wins_the_bare_name_and_method_prefix_reaches_the_hyperparameter(proto, shadowing_method):
    config = resolve(proto, {"lr": "0.5", "erase_threshold": "0.6"}, method="shadowing")
    assert config.lr == 0.5 and dict(config.hparams) == {"lr": 1.0, "erase_threshold": 0.6}
    config = resolve(proto, {"method.lr": "0.3"}, method="shadowing")
    assert config.lr == 0.05 and dict(config.hparams) == {"lr": 0.3, "erase_threshold": 0.5}


def test_a_hyperparameter_given_bare_and_prefixed_is_an_error(proto):
    with pytest.raises(WsolbenchError, match="--set method.drop_rate: hyperparameter 'drop_rate' given twice"):
        resolve(proto, {"drop_rate": "0.1", "method.drop_rate": "0.2"})


# --- selection ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["maxboxacc", "maxboxacc_v2", "box_mass"])  # box_mass: a method's own criterion
def test_selection_override(proto, name):
    config = resolve(proto, {"selection": name, "eval_checkpoint": "best"})
    assert (config.selection_metric, config.eval_checkpoint, config.off_protocol) == (name, "best", True)
    assert config.overrides == {"selection": name, "eval_checkpoint": "best"}


def test_selection_override_with_best_from_the_files(tmp_path, toy_method):
    proto = write_protocol(tmp_path / "p", synthetic=SYNTHETIC_TOML + '[evaluation]\neval_checkpoint = "best"\n')
    assert resolve(proto, {"selection": "maxboxacc"}).selection_metric == "maxboxacc"


@pytest.mark.parametrize("overrides, dataset, message", [
    ({"selection": "maxboxacc"}, "synthetic",
     r"^--set selection=maxboxacc: the last checkpoint is tested \(eval_checkpoint = last\), so nothing is "
     r"selected; add eval_checkpoint=best$"),
    ({"selection": "pxap", "eval_checkpoint": "best"}, "synthetic",
     r"^--set selection=pxap: pxap needs masks labels; dataset 'synthetic' has boxes \(maxboxacc_v2, maxboxacc\)$"),
    ({"selection": "maxboxacc", "eval_checkpoint": "best"}, "masks",
     r"^--set selection=maxboxacc: maxboxacc needs boxes labels; dataset 'mine' has masks \(pxap\)$"),
    ({"selection": " ", "eval_checkpoint": "best"}, "synthetic",
     r"^--set selection=: give a metric \(maxboxacc_v2, maxboxacc\) or a criterion the method offers$"),
])
def test_bad_selection_overrides(proto, overrides, dataset, message):
    if dataset == "masks":
        dataset = DatasetSpec(name="mine", folder="MINE", num_classes=2, annotation="masks")
    with pytest.raises(WsolbenchError, match=message):
        resolve(proto, overrides, dataset=dataset)


# --- provenance -----------------------------------------------------------------------------------------------


def test_every_value_carries_the_provenance_of_the_table_it_came_from(tmp_path, toy_method):
    proto = write_protocol(
        tmp_path / "p",
        protocol=PROTOCOL_TOML.replace("[training]\n", '[training]\nprovenance = "published, toy config.py"\n'),
        synthetic=SYNTHETIC_TOML.replace("[training]\n", '[training]\nprovenance = "reported, a forum post"\n'),
        toy=TOY_TOML.replace("[hparams]\n", '[hparams]\nprovenance = "published, the toy paper"\n')
                    .replace("[synthetic.resnet18]\n", '[synthetic.resnet18]\nprovenance = "published, toy table 3"\n'))
    config = resolve(proto, {"lr": "0.5"})
    untuned, toy_config = "wsolbench default, untuned", "published, toy config.py"
    assert dict(config.provenance) == {
        "backbone": untuned,               # the dataset's [model], which states none
        "pretrained": untuned,
        "large_feature_map": untuned,      # protocol.toml [model], which states none
        "epochs": "published, toy table 3",
        "batch_size": "reported, a forum post",
        "lr": "--set (off-protocol)",
        "lr_decay_frequency": toy_config,
        "lr_decay_factor": toy_config,
        "lr_decay_points": toy_config,
        "weight_decay": toy_config,
        "momentum": toy_config,
        "nesterov": toy_config,
        "classifier_ratio": toy_config,
        "image_size": toy_config,
        "cam_curve_interval": untuned,
        "iou_thresholds": untuned,
        "num_val_sample_per_class": untuned,
        "eval_checkpoint": untuned,
        "evaluate_epoch0": untuned,
        "method.drop_rate": untuned,       # the table's hparams sub-table, which states its own (none)
        "method.grid_size": "published, the toy paper",
        "method.mode": "wsolbench default, untuned (the method's Hparams default)",
        "method.flag": "wsolbench default, untuned (the method's Hparams default)",
    }
    assert config.as_dict()["provenance"] == dict(config.provenance)
    with pytest.raises(TypeError):
        config.provenance["lr"] = "mine"
    assert resolve(proto, backbone="resnet18").provenance["backbone"] == "--backbone"


def published_protocol(folder, synthetic_training="published, toy paper"):
    """A toy protocol whose every model/training value and hyperparameter is published for synthetic.resnet18."""
    protocol = PROTOCOL_TOML.replace("[model]\n", '[model]\nprovenance = "published, toy config.py"\n') \
        .replace("[training]\n", '[training]\nprovenance = "published, toy config.py"\n')
    synthetic = SYNTHETIC_TOML.replace("[model]\n", '[model]\nprovenance = "published, toy paper"\n') \
        .replace("[training]\n", f'[training]\nprovenance = "{synthetic_training}"\n')
    hparams = 'grid_size = 8\nmode = "soft"\nflag = true\nprovenance = "published, toy"'
    toy = TOY_TOML.replace("grid_size = 8", hparams) \
        .replace("[synthetic.resnet18]\n", '[synthetic.resnet18]\nprovenance = "published, toy table 3"\n') \
        .replace("hparams = { drop_rate = 0.25 }", 'hparams = { drop_rate = 0.25, provenance = "published, toy" }')
    return write_protocol(folder, protocol=protocol, synthetic=synthetic, toy=toy)


@pytest.mark.parametrize("overrides, backbone, synthetic_training, tuned", [
    ({}, None, "published, toy paper", True),
    ({}, "resnet18", "published, toy paper", True),            # asking for the table's backbone changes nothing
    ({"eval_checkpoint": "best"}, None, "published, toy paper", True),  # off-protocol, but not a tuned value
    ({}, "vgg16", "published, toy paper", False),              # [synthetic.vgg16] states no provenance
    ({}, "resnet50", "published, toy paper", False),           # no method table: dataset defaults, for any pair
    ({"lr": "0.2"}, None, "published, toy paper", False),      # an override
    ({"drop_rate": "0.25"}, None, "published, toy paper", False),
    ({}, None, "reported, a forum post", False),               # batch_size: a third party's value
    ({}, None, "wsolbench default, untuned", False),
])
def test_tuned_means_every_model_and_training_value_was_published_for_the_pair(
        tmp_path, toy_method, overrides, backbone, synthetic_training, tuned):
    proto = published_protocol(tmp_path / "p", synthetic_training)
    config = resolve(proto, overrides, backbone=backbone)
    assert config.tuned is tuned
    assert config.as_dict()["tuned"] is tuned


# --- registry errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, dataset, backbone, kind", [
    ("camm", "synthetic", None, "method"),
    ("toy", "synthetc", None, "dataset"),
    ("toy", "synthetic", "resnet19", "backbone"),
])
def test_unknown_names_come_from_the_registries(proto, method, dataset, backbone, kind):
    with pytest.raises(UnknownNameError, match=f"unknown {kind}"):
        resolve(proto, method=method, dataset=dataset, backbone=backbone)


def test_unknown_protocol(tmp_path):
    with pytest.raises(WsolbenchError, match="unknown protocol 'nope'; packaged: wsolevaluation"):
        resolve_run("cam", "synthetic", protocol="nope")
    with pytest.raises(WsolbenchError, match="holds no protocol.toml"):
        resolve_run("cam", "synthetic", protocol=tmp_path)


# --- the config object ----------------------------------------------------------------------------------------


def test_config_is_frozen(proto):
    config = resolve(proto)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    with pytest.raises(TypeError):
        config.hparams["grid_size"] = 1
    with pytest.raises(TypeError):
        config.overrides["lr"] = "1"


def test_as_dict_is_plain_json(proto):
    config = resolve(proto, {"epochs": "2"})
    data = config.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["iou_thresholds"] == [30, 50, 70]
    assert data["hparams"] == {"drop_rate": 0.25, "grid_size": 8, "mode": "soft", "flag": False}
    assert data["overrides"] == {"epochs": "2"}
    assert list(data) == [f.name for f in dataclasses.fields(RunConfig)]


def test_every_setting_is_a_config_field():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(SETTINGS) <= fields
    assert {"lr_decay_points", "num_val_sample_per_class", "provenance", "tuned"} <= fields
    assert "multi_contour" not in fields | set(SETTINGS)


# --- fingerprint ----------------------------------------------------------------------------------------------


def canonical_sha(content):
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_fingerprint_is_the_sha256_of_the_content_read(proto):
    protocol = {
        "protocol": {"id": "toyproto"},
        "splits": {"train": "train", "val": "val", "test": "test"},
        "selection": {"boxes": "maxboxacc_v2", "masks": "pxap"},
        "model": {"backbone": "vgg16", "pretrained": True, "large_feature_map": False},
        "training": {"epochs": 40, "batch_size": 64, "lr": 0.01, "lr_decay_frequency": 30, "lr_decay_factor": 0.1,
                     "lr_decay_points": [], "weight_decay": 1e-4, "momentum": 0.9, "nesterov": True,
                     "classifier_ratio": 10, "image_size": 224},
        "evaluation": {"cam_curve_interval": 0.001, "iou_thresholds": [30, 50, 70], "num_val_sample_per_class": 0,
                       "eval_checkpoint": "last", "evaluate_epoch0": True},
    }
    synthetic = {"dataset": {"name": "synthetic"}, "model": {"backbone": "resnet18", "pretrained": False},
                 "training": {"epochs": 7, "batch_size": 16, "lr": 0.05}}
    toy = {"method": {"name": "toy"}, "hparams": {"grid_size": 8},
           "table": {"synthetic.resnet18": {"epochs": 3, "lr": 0.2, "hparams": {"drop_rate": 0.25}}}}
    expected = canonical_sha({"protocol.toml": protocol, "datasets/synthetic.toml": synthetic,
                              "methods/toy.toml": toy})
    assert resolve(proto).fingerprint == expected
    assert resolve(proto, {"lr": "3"}).fingerprint == expected  # overrides are recorded, not fingerprinted
    without_dataset = canonical_sha({"protocol.toml": protocol, "methods/toy.toml": {
        "method": {"name": "toy"}, "hparams": {"grid_size": 8}}})
    assert resolve(proto, dataset="cub").fingerprint == without_dataset


def test_fingerprint_is_stable_across_calls_and_folders(proto, tmp_path):
    copy = tmp_path / "elsewhere" / "proto"
    shutil.copytree(proto, copy)
    (copy / "protocol.toml").write_text("# a comment\n" + PROTOCOL_TOML.replace("epochs = 40", "epochs   =   40"))
    assert resolve(proto).fingerprint == resolve(proto).fingerprint == resolve(copy).fingerprint


@pytest.mark.parametrize("file, old, new, changes", [
    ("protocol.toml", "weight_decay = 1e-4", "weight_decay = 2e-4", True),
    ("protocol.toml", "cam_curve_interval = 0.001", "cam_curve_interval = 0.01", True),
    ("datasets/synthetic.toml", "batch_size = 16", "batch_size = 17", True),
    ("methods/toy.toml", "lr = 0.2", "lr = 0.3", True),
    ("methods/toy.toml", "grid_size = 8", "grid_size = 9", True),
    ("methods/toy.toml", "epochs = 99", "epochs = 98", False),  # a table this run does not use
])
def test_fingerprint_follows_the_values_used(proto, file, old, new, changes):
    before = resolve(proto).fingerprint
    path = proto / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    assert (resolve(proto).fingerprint != before) is changes


# --- file errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file, old, new, message", [
    ("protocol.toml", "epochs = 40", "epochs = ", r"protocol.toml is not valid TOML"),
    ("protocol.toml", "epochs = 40", "epochs = 40\nepoch = 3", r"protocol.toml: \[training\] has unknown key 'epoch'"),
    ("protocol.toml", "epochs = 40", "", r"protocol.toml: \[training\] lacks 'epochs'"),
    ("protocol.toml", "epochs = 40", 'epochs = "40"', r"protocol.toml: \[training\]: epochs must be an integer"),
    ("protocol.toml", "nesterov = true", "nesterov = 1", r"nesterov must be true or false, got 1"),
    ("protocol.toml", "momentum = 0.9", "momentum = 1.5", r"momentum must be in \[0, 1\), got 1.5"),
    ("protocol.toml", "evaluate_epoch0 = true", "evaluate_epoch0 = true\nepochs = 3",
     r"\[evaluation\] has unknown key 'epochs' \(it belongs in \[training\]\)"),
    ("protocol.toml", "evaluate_epoch0 = true", "evaluate_epoch0 = true\nmulti_contour = true",
     r"protocol.toml: \[evaluation\] multi_contour was removed: the \[selection\] metric decides \(maxboxacc_v2 "
     r"all contours / maxboxacc largest contour\)"),
    ("protocol.toml", "lr_decay_points = []", "lr_decay_points = [61, 41]",
     r"\[training\]: lr_decay_points must be strictly increasing positive integers, got \(61, 41\)"),
    ("protocol.toml", "lr_decay_points = []", "lr_decay_points = 30",
     r"\[training\]: lr_decay_points must be comma-separated integers, got 30"),
    ("protocol.toml", "num_val_sample_per_class = 0", "", r"\[evaluation\] lacks 'num_val_sample_per_class'"),
    ("protocol.toml", "num_val_sample_per_class = 0", "num_val_sample_per_class = -5",
     r"num_val_sample_per_class must be >= 0, got -5"),
    ("datasets/synthetic.toml", "epochs = 7", "epochs = 7\nprovenance = 3",
     r"synthetic.toml: \[training\]: provenance must be a string starting with 'published, <source>', "
     r"'reported, <source>' or 'wsolbench default, untuned', got 3"),
    ("datasets/synthetic.toml", "epochs = 7", 'epochs = 7\nprovenance = "the authors"',
     r"\[training\]: provenance must be a string starting with .*got 'the authors'"),
    ("datasets/synthetic.toml", "epochs = 7", 'epochs = 7\nprovenance = "published, "',
     r"\[training\]: provenance must be a string starting with"),
    ("datasets/synthetic.toml", 'name = "synthetic"', 'name = "synthetic"\nprovenance = "published, x"',
     r"synthetic.toml: \[dataset\]: unknown key 'provenance'"),
    ("methods/toy.toml", "epochs = 99", "epochs = 99\nmulti_contour = false",
     r"methods/toy.toml: \[synthetic.vgg16\]: multi_contour was removed: the \[selection\] metric decides"),
    ("methods/toy.toml", "epochs = 99", 'epochs = 99\nprovenance = "tuned by me"',
     r"methods/toy.toml: \[synthetic.vgg16\]: provenance must be a string starting with"),
    ("methods/toy.toml", "grid_size = 8", 'grid_size = 8\nprovenance = ["published, x"]',
     r"methods/toy.toml: \[hparams\]: provenance must be a string starting with"),
    ("methods/toy.toml", "drop_rate = 0.25", 'drop_rate = 0.25, provenance = "x"',
     r"methods/toy.toml: \[synthetic.resnet18.hparams\]: provenance must be a string starting with"),
    ("protocol.toml", 'masks = "pxap"', 'masks = "pixap"', r"\[selection\] masks = 'pixap' is not a selection metric"),
    ("protocol.toml", 'val = "val"', 'val = "valid"', r"\[splits\] val must be one of train, val, test"),
    ("protocol.toml", 'id = "toyproto"', "", r"\[protocol\] needs an id"),
    ("protocol.toml", "[model]", "[modle]\n[model]", r"unknown table \[modle\]"),
    ("datasets/synthetic.toml", 'name = "synthetic"', 'name = "synth"',
     r"synthetic.toml: \[dataset\] name must be 'synthetic' \(the file's name\), got 'synth'"),
    ("datasets/synthetic.toml", "lr = 0.05", "lr = -1.0", r"datasets/synthetic.toml: \[training\]: lr must be > 0"),
    ("methods/toy.toml", "epochs = 99", "epoch = 99", r"methods/toy.toml: \[synthetic.vgg16\]: unknown key 'epoch'"),
    ("methods/toy.toml", "epochs = 99", 'backbone = "vgg16"', r"\[synthetic.vgg16\]: unknown key 'backbone'"),
    ("methods/toy.toml", "epochs = 99", "epochs = 9.5", r"\[synthetic.vgg16\]: epochs must be an integer"),
    ("methods/toy.toml", "grid_size = 8", "grid = 8",
     r"toy.toml: \[hparams\]: method 'toy' has no hyperparameter 'grid'"),
    ("methods/toy.toml", "drop_rate = 0.25", "drop_rate = 'x'",
     r"\[synthetic.resnet18.hparams\]: method 'toy': hyperparameter 'drop_rate' must be float"),
    ("methods/toy.toml", 'name = "toy"', 'name = "cam"', r"\[method\] name must be 'toy'"),
])
def test_bad_protocol_files_are_one_line_errors_naming_the_file(proto, file, old, new, message):
    path = proto / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(WsolbenchError, match=message) as error:
        resolve(proto)
    assert "\n" not in str(error.value) and file in str(error.value)


# --- the shipped wsolevaluation protocol ----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
CONFIG_PY = "published, clovaai/wsolevaluation config.py argparse defaults (not tuned per dataset)"
ISSUE_60 = ("reported, clovaai/wsolevaluation issue #60: a user's CAM/VGG16 command copying the IVR paper's "
            "configuration (--norm_method ivr), not the wsolevaluation authors' values")
README = "published, clovaai/wsolevaluation README example command (CAM, VGG16)"


def test_the_shipped_protocols():
    assert packaged_protocols() == ["wsolevaluation"]


def test_the_packaged_protocol_is_the_top_level_protocols_folder():
    assert not (REPO / "wsolbench" / "protocols").exists()
    packaged = packaged_root() / "wsolevaluation"
    for relative in ("protocol.toml", "datasets/cub.toml", "methods/cam.toml"):
        assert (packaged / relative).read_text(encoding="utf-8") == \
            (REPO / "protocols" / "wsolevaluation" / relative).read_text(encoding="utf-8")


def test_wsolevaluation_cub_uses_the_cam_vgg16_values_a_user_reported():
    config = resolve_run("cam", "cub")  # clovaai/wsolevaluation issue #60, a user's post
    assert (config.protocol, config.backbone, config.pretrained, config.method_table) == \
        ("wsolevaluation", "vgg16", True, "cub.vgg16")
    assert (config.batch_size, config.epochs, config.lr, config.lr_decay_frequency, config.weight_decay) == \
        (32, 50, 1.268269e-5, 15, 5e-4)
    assert (config.momentum, config.nesterov, config.classifier_ratio, config.lr_decay_factor) == \
        (0.9, True, 10.0, 0.1)
    assert (config.image_size, config.large_feature_map, config.lr_decay_points) == (224, False, ())
    assert (config.cam_curve_interval, config.iou_thresholds, config.num_val_sample_per_class) == \
        (0.001, (30, 50, 70), 0)
    assert (config.selection_metric, config.eval_checkpoint, config.evaluate_epoch0) == \
        ("maxboxacc_v2", "last", True)
    assert config.off_protocol is False
    assert {key: config.provenance[key] for key in ("epochs", "batch_size", "lr", "lr_decay_frequency",
                                                    "weight_decay")} == dict.fromkeys(
        ("epochs", "batch_size", "lr", "lr_decay_frequency", "weight_decay"), ISSUE_60)
    assert config.provenance["momentum"] == CONFIG_PY
    assert config.tuned is False  # a third party's values, not the authors'


def test_no_shipped_comment_attributes_the_cub_values_to_the_authors():
    for relative in ("datasets/cub.toml", "methods/cam.toml"):
        text = (REPO / "protocols" / "wsolevaluation" / relative).read_text(encoding="utf-8")
        assert "authors published" not in text and "a user's" in text, relative


def test_wsolevaluation_openimages_uses_the_readme_values_and_pxap():
    config = resolve_run("cam", "openimages")
    assert (config.batch_size, config.epochs, config.lr, config.lr_decay_frequency, config.weight_decay) == \
        (32, 10, 0.00227913316, 3, 5e-4)
    assert config.num_val_sample_per_class == 5  # the README command's --num_val_sample_per_class 5
    assert config.selection_metric == "pxap"
    assert config.provenance["lr"] == config.provenance["num_val_sample_per_class"] == README
    assert config.provenance["momentum"] == CONFIG_PY
    assert config.tuned is True


def test_wsolevaluation_openimages_other_pairs_are_defaults_not_tuned():
    config = resolve_run("cam", "openimages", "resnet50")
    assert (config.method_table, config.lr, config.num_val_sample_per_class) == (None, 0.00227913316, 0)
    assert config.provenance["lr"] == README and config.tuned is False


def test_wsolevaluation_imagenet_uses_the_config_py_defaults():
    config = resolve_run("cam", "imagenet", "resnet50")
    assert (config.backbone, config.batch_size, config.epochs, config.lr, config.lr_decay_frequency,
            config.weight_decay) == ("resnet50", 64, 40, 0.01, 30, 1e-4)
    assert (config.defaults_from, config.method_table) == ("dataset", None)
    assert config.provenance["lr"] == CONFIG_PY and config.provenance["backbone"] == "--backbone"
    assert config.tuned is False


@pytest.mark.parametrize("dataset, metric", [("synthetic", "maxboxacc_v2"), ("synthetic-masks", "pxap")])
def test_wsolevaluation_synthetic_is_cpu_sized(dataset, metric):
    config = resolve_run("cam", dataset)
    assert (config.backbone, config.pretrained, config.image_size, config.epochs, config.batch_size) == \
        ("resnet18", False, 64, 10, 32)
    assert config.selection_metric == metric
    assert config.provenance["lr"] == config.provenance["pretrained"] == "wsolbench default, untuned"
    assert config.tuned is False


def test_every_builtin_dataset_has_a_file():
    from wsolbench.data.builtin import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        assert resolve_run("cam", spec.name).defaults_from == "dataset", spec.name


def test_every_shipped_value_states_its_provenance():
    """Each table of the shipped files that sets values says where they come from, in the convention."""
    import tomllib

    paths = sorted((REPO / "protocols").rglob("*.toml"))
    assert {"protocol.toml", "cub.toml", "openimages.toml", "cam.toml"} <= {path.name for path in paths}
    for path in paths:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        tables = [document.get(section) for section in ("model", "training", "evaluation", "hparams")]
        tables += [table for key, group in document.items() if key not in ("dataset", "method", "protocol",
                   "splits", "selection", "model", "training", "evaluation", "hparams") for table in group.values()]
        tables += [table["hparams"] for table in list(tables) if table and isinstance(table.get("hparams"), dict)]
        for table in filter(None, tables):
            if set(table) - {"hparams"}:  # the table sets values (not only an hparams sub-table)
                assert table["provenance"].startswith(("published, ", "reported, ", "wsolbench default, untuned")), \
                    path


# --- protocol files shipped by plugins (wsolbench_register_protocol_files) -----------------------------------

DOGS_TOML = """
[dataset]
name = "dogs"

[model]
provenance = "published, the Dogs paper"
backbone = "resnet50"

[training]
provenance = "published, the Dogs paper, table 2"
epochs = 30
lr = 0.003
"""

PLUGIN_TOY_TOML = """
[method]
name = "toy"

[hparams]
grid_size = 6

[cub.vgg16]
provenance = "published, the toy paper, table 4"
epochs = 12
hparams = { mode = "hard" }
"""

DOGS = DatasetSpec(name="dogs", folder="DOGS", num_classes=120, annotation="boxes")


def protocol_files_plugin(*folders, methods=(Toy,), datasets=(DOGS,)):
    """A plugin module registering ``folders`` as protocol files (and a method and a dataset)."""
    import types

    from wsolbench import plugins

    module = types.ModuleType("protocol_files_plugin")

    @plugins.hookimpl
    def wsolbench_register_protocol_files(register):
        for folder in folders:
            register(folder)

    @plugins.hookimpl
    def wsolbench_register_methods(register):
        for method in methods:
            register(method)

    @plugins.hookimpl
    def wsolbench_register_datasets(register):
        for spec in datasets:
            register(spec)

    module.wsolbench_register_protocol_files = wsolbench_register_protocol_files
    module.wsolbench_register_methods = wsolbench_register_methods
    module.wsolbench_register_datasets = wsolbench_register_datasets
    return module


def shipped(folder, files: dict[str, str]):
    """``folder`` holding ``files`` (relative path -> text)."""
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


@pytest.fixture
def install(monkeypatch):
    """``install(module, ...)``: make these plugin modules load as if installed (entry points of toy-dist)."""
    from fake_plugins import add_entry_points, fake_entry_point

    def install_plugins(*modules, names=("dogs",), distributions=("toy-dist",)):
        add_entry_points(monkeypatch, *(fake_entry_point(name, lambda m=module: m, distribution)
                                        for module, name, distribution in zip(modules, names, distributions)))

    return install_plugins


def packaged_protocol_content():
    import tomllib

    return tomllib.loads((REPO / "protocols" / "wsolevaluation" / "protocol.toml").read_text(encoding="utf-8"))


def test_a_dataset_plugin_ships_its_protocol_defaults(tmp_path, install):
    install(protocol_files_plugin(shipped(tmp_path / "pf", {"wsolevaluation/datasets/dogs.toml": DOGS_TOML})))
    config = resolve_run("cam", "dogs")
    assert (config.defaults_from, config.backbone, config.epochs, config.lr, config.batch_size) == \
        ("dataset", "resnet50", 30, 0.003, 64)
    assert config.off_protocol is False
    assert config.provenance["lr"] == "published, the Dogs paper, table 2"
    assert config.provenance["batch_size"] == CONFIG_PY
    dogs = {"dataset": {"name": "dogs"},
            "model": {"provenance": "published, the Dogs paper", "backbone": "resnet50"},
            "training": {"provenance": "published, the Dogs paper, table 2", "epochs": 30, "lr": 0.003}}
    cam = {"method": {"name": "cam"}, "hparams": {}}  # methods/cam.toml: no [dogs.resnet50] table
    assert config.fingerprint == canonical_sha({"protocol.toml": packaged_protocol_content(),
                                                "datasets/dogs.toml": dogs, "methods/cam.toml": cam})


def test_a_method_plugin_ships_its_tables_and_a_path_is_accepted(tmp_path, install):
    folder = shipped(tmp_path / "pf", {"wsolevaluation/methods/toy.toml": PLUGIN_TOY_TOML})
    install(protocol_files_plugin(str(folder)))
    config = resolve_run("toy", "cub")
    assert (config.method_table, config.epochs, config.lr, config.batch_size) == ("cub.vgg16", 12, 1.268269e-5, 32)
    assert dict(config.hparams) == {"drop_rate": 0.5, "grid_size": 6, "mode": "hard", "flag": False}
    assert config.provenance["epochs"] == "published, the toy paper, table 4"
    assert config.provenance["lr"] == ISSUE_60
    assert resolve_run("toy", "cub", "resnet50").method_table is None


def test_plugin_files_get_the_same_checks_naming_the_plugin(tmp_path, install):
    install(protocol_files_plugin(shipped(tmp_path / "pf", {
        "wsolevaluation/datasets/dogs.toml": DOGS_TOML.replace("lr = 0.003", "lr = -1.0")})))
    with pytest.raises(WsolbenchError) as error:
        resolve_run("cam", "dogs")
    assert str(error.value) == ("protocol 'wsolevaluation' of toy-dist (plugin 'dogs'): datasets/dogs.toml: "
                                "[training]: lr must be > 0, got -1.0")


def test_a_file_shipped_by_a_plugin_and_by_wsolbench_is_an_error_naming_both(tmp_path, install):
    install(protocol_files_plugin(shipped(tmp_path / "pf", {
        "wsolevaluation/datasets/cub.toml": DOGS_TOML.replace('"dogs"', '"cub"')})))
    with pytest.raises(WsolbenchError) as error:
        resolve_run("cam", "cub")
    assert str(error.value) == ("protocol 'wsolevaluation': datasets/cub.toml is shipped twice: by wsolbench "
                                "(packaged) and by toy-dist (plugin 'dogs')")
    assert resolve_run("cam", "synthetic").defaults_from == "dataset"  # the other files are unaffected


def test_a_file_shipped_by_two_plugins_is_an_error_naming_both(tmp_path, install):
    first = shipped(tmp_path / "a", {"wsolevaluation/methods/toy.toml": PLUGIN_TOY_TOML})
    second = shipped(tmp_path / "b", {"wsolevaluation/methods/toy.toml": PLUGIN_TOY_TOML})
    install(protocol_files_plugin(first), protocol_files_plugin(second, methods=(), datasets=()),
            names=("first", "second"), distributions=("dist-a", "dist-b"))
    with pytest.raises(WsolbenchError, match=r"^protocol 'wsolevaluation': methods/toy.toml is shipped twice: by "
                                             r"dist-(a|b) \(plugin '(first|second)'\) and by dist-(a|b)"):
        resolve_run("toy", "cub")


def test_a_plugin_may_not_ship_the_protocol_file_of_a_packaged_protocol(tmp_path, install):
    install(protocol_files_plugin(shipped(tmp_path / "pf", {"wsolevaluation/protocol.toml": PROTOCOL_TOML})))
    with pytest.raises(WsolbenchError) as error:
        resolve_run("cam", "synthetic")
    assert str(error.value) == ("toy-dist (plugin 'dogs') ships wsolevaluation/protocol.toml, but protocol "
                                "'wsolevaluation' is wsolbench's own: a plugin may add only datasets/ and methods/ "
                                "files to it")


def test_a_plugin_may_ship_a_new_protocol_and_files_for_a_protocol_given_by_path(tmp_path, install):
    folder = shipped(tmp_path / "pf", {"toyproto/protocol.toml": PROTOCOL_TOML,
                                       "toyproto/datasets/dogs.toml": DOGS_TOML})
    install(protocol_files_plugin(folder))
    config = resolve_run("cam", "dogs", protocol="toyproto")
    assert (config.protocol, config.defaults_from, config.epochs) == ("toyproto", "dataset", 30)
    by_path = write_protocol(tmp_path / "by_path", synthetic=None, toy=None)  # its [protocol] id is toyproto
    config = resolve_run("cam", "dogs", protocol=by_path)
    assert (config.protocol, config.defaults_from, config.epochs) == ("toyproto", "dataset", 30)
    with pytest.raises(WsolbenchError, match="unknown protocol 'nope'; packaged: wsolevaluation; "
                                             "from plugins: toyproto"):
        resolve_run("cam", "dogs", protocol="nope")


def test_a_misspelled_folder_of_plugin_files_is_an_error(tmp_path, install):
    install(protocol_files_plugin(shipped(tmp_path / "pf", {"wsolevaluation/dataset/dogs.toml": DOGS_TOML})))
    with pytest.raises(WsolbenchError) as error:
        resolve_run("cam", "dogs")
    assert str(error.value) == ("protocol 'wsolevaluation' of toy-dist (plugin 'dogs'): unexpected dataset/ "
                                "(a protocol folder holds protocol.toml, datasets/ and methods/)")
