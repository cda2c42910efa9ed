import pytest

import ppm  # noqa: F401
from ppm import configs


def test_paper_preset_carries_ppm_section_4_2_3():
    c = configs.resolve("urm", "paper", params_override="model.plugin.checkpoint=x")
    assert c.data.global_batch_size == 20000
    opt = c.trainer.optimizer
    assert opt.optimizer.type == "adam" and opt.learning_rate.type == "polynomial"
    lr = opt.learning_rate.polynomial
    assert (lr.initial_learning_rate, lr.end_learning_rate, lr.power) == (4e-4, 1e-4, 1.0)
    assert c.model.init_stddev == 0.01 and c.model.id_dim == 64
    assert (c.model.transformer.num_layers, c.model.transformer.num_heads) == (2, 4)
    assert c.runtime.strategy == "mirrored" and c.model.tasks == ["click", "order", "cart"]


@pytest.mark.parametrize("experiment,model_type,plugin,window", [
    ("ppm_pretrain", "ppm", "none", "pretrain"),
    ("urm", "urm", "ppm (finetune, lr x0.1)", "train_large"),
    ("urm_ppm_frozen", "urm", "ppm (frozen)", "train_large"),
    ("urm_wo_ppm", "urm", "none", "train_large"), ("base", "urm", "none", "train_large"),
    ("din", "din", "none", "train_large"),
    ("dsin_ppm", "dsin", "ppm (finetune, lr x0.1)", "train_large"),
    ("make_pretrain", "make", "none", "train_large"),
    ("din_simtier_make", "din", "make (finetune, lr x0.1)", "train_large"),
])
def test_experiments_derive_from_presets(experiment, model_type, plugin, window):
    demo = configs.get_config(experiment, "demo")
    assert (demo.model.type, demo.model.plugin.describe(), demo.data.train_window) == (
        model_type, plugin, window)
    assert demo.model.urm.modal_in_idsm == (experiment == "base")
    assert configs.get_config(f"paper_{experiment}").data.global_batch_size == 20000
    assert demo.data.global_batch_size < 20000


def test_overrides_yaml_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  global_batch_size: 1024\nmodel:\n  id_dim: 32\n")
    c = configs.resolve("urm_wo_ppm", "demo", [str(path)], "model.id_dim=8")
    assert (c.data.global_batch_size, c.model.id_dim) == (1024, 8)
    with pytest.raises(KeyError):
        configs.resolve("urm_wo_ppm", "demo", params_override="model.no_such_field=1")
    with pytest.raises(ValueError, match="unknown experiment"):
        configs.get_config("nope")
    with pytest.raises(ValueError, match="plugin.checkpoint"):
        configs.resolve("urm", "demo")
    with pytest.raises(ValueError, match="model.type must be one of"):
        configs.resolve("urm_wo_ppm", "demo", params_override="model.type=nope")
    with pytest.raises(ValueError, match="plugin.kind"):
        configs.resolve("din", "demo", params_override="model.plugin.kind=nope")
    with pytest.raises(ValueError, match="head.type"):
        configs.resolve("din", "demo", params_override="model.head.type=cgc")
    with pytest.raises(ValueError, match="optimizer.type"):
        configs.resolve("din", "demo", params_override="trainer.optimizer.optimizer.type=lamb")
    with pytest.raises(ValueError, match="train_passes"):
        configs.resolve("urm_wo_ppm", "demo", params_override="trainer.train_passes=-1")
    with pytest.raises(ValueError, match="click only"):
        configs.resolve("ppm_pretrain", "demo", params_override="model.tasks=[click,order]")


def test_data_paths_have_no_working_directory_default():
    # A config never reads runs/demo/... relative to wherever the process runs.
    c = configs.resolve("urm", "paper", validate=False)
    assert (c.data.dataset, c.data.examples, c.data.embeddings) == ("", "", "")


def test_a_run_config_keeps_only_its_own_model_block():
    c = configs.resolve("din", "demo")
    d = c.as_dict()["model"]
    assert d["type"] == "din" and "din" in d
    assert not set(d) & {"urm", "ppm", "wide_deep", "deepfm", "dsin", "mian", "make"}
    # A plug-in's module is sized by its model's block: that block is kept too.
    c = configs.resolve("din_make", "demo",
                        params_override="model.plugin.checkpoint=x,model.make.mlp_units=[9,8,7]")
    d = c.as_dict()["model"]
    assert "din" in d and d["make"]["mlp_units"] == [9, 8, 7] and "ppm" not in d


def test_make_pretrains_for_several_passes_and_the_multimodal_settings_are_checked():
    assert configs.get_config("make_pretrain", "demo").trainer.train_passes == 4.0
    assert configs.get_config("din", "demo").trainer.train_passes == 1.0
    for override, match in (("model.multimodal.side=[vector,nope]", "multimodal.side"),
                            ("model.multimodal.modality=video", "multimodal.modality"),
                            ("model.multimodal.num_tiers=0", "num_tiers"),
                            ("model.make.hidden_outputs=[3]", "hidden_outputs")):
        with pytest.raises(ValueError, match=match):
            configs.resolve("din_simtier", "demo", params_override=override)
    with pytest.raises(ValueError, match="zoo's models"):
        configs.resolve("urm_wo_ppm", "demo", params_override="model.multimodal.side=[simtier]")
    with pytest.raises(ValueError, match="takes no plug-in"):
        configs.resolve("make_pretrain", "demo", params_override="model.plugin.kind=ppm,"
                        "model.plugin.init=random")
    with pytest.raises(ValueError, match="make_pretrain run folder"):
        configs.resolve("din_make", "demo")


def test_run_configs_of_older_versions_are_upgraded(tmp_path):
    import yaml

    # A config.yaml as written before the model config was a one-of (model.name, ppm_init).
    old = configs.resolve("urm_wo_ppm", "tiny").as_dict()
    old["model"] = {k: v for k, v in old["model"].items()
                    if k not in ("type", "plugin", "head", "urm")}
    old["model"].update(name="urm", ppm_init="frozen", ppm_checkpoint="runs/p",
                        head_units=[16, 8], num_experts=2, expert_units=[16], tower_units=[8])
    trainer = old["trainer"]
    del trainer["optimizer"]
    trainer.update(learning_rate=2e-3, end_learning_rate=5e-4)
    (tmp_path / configs.RUN_CONFIG_FILE).write_text(yaml.safe_dump(old))
    c = configs.read_run_config(str(tmp_path))
    assert (c.model.type, c.model.plugin.kind, c.model.plugin.init,
            c.model.plugin.checkpoint) == ("urm", "ppm", "frozen", "runs/p")
    assert (c.model.head.num_experts, c.model.head.expert_units) == (2, [16])
    lr = c.trainer.optimizer.learning_rate.polynomial
    assert (lr.initial_learning_rate, lr.end_learning_rate) == (2e-3, 5e-4)
    c.validate()
    for name, model_type, kind, modal in (("base", "urm", "", True),
                                          ("urm_wo_ppm", "urm", "", False),
                                          ("ppm", "ppm", "", False)):
        old["model"]["name"] = name
        (tmp_path / configs.RUN_CONFIG_FILE).write_text(yaml.safe_dump(old))
        c = configs.read_run_config(str(tmp_path))
        assert (c.model.type, c.model.plugin.kind, c.model.urm.modal_in_idsm) == (
            model_type, kind, modal)
    old["model"]["name"] = "resnet"
    (tmp_path / configs.RUN_CONFIG_FILE).write_text(yaml.safe_dump(old))
    with pytest.raises(ValueError, match="resnet"):
        configs.read_run_config(str(tmp_path))


@pytest.mark.parametrize("override,cls,expected", [
    ("", "Adam", [2e-3, 1.25e-3, 5e-4]),  # the demo's linear decay over train_steps = 4
    ("trainer.optimizer.optimizer.type=adagrad,trainer.optimizer.learning_rate.type=constant,"
     "trainer.optimizer.learning_rate.constant.learning_rate=0.05", "Adagrad",
     [0.05, 0.05, 0.05]),  # GRACE's optimizer
])
def test_the_optimizer_comes_from_the_config(override, cls, expected):
    from ppm import train

    c = configs.resolve("urm_wo_ppm", "tiny", params_override=override)
    c.override({"trainer": {"train_steps": 4}})
    opt = train.make_optimizer(c.trainer)
    assert type(opt).__name__ == cls
    schedule = opt._learning_rate  # noqa: SLF001 - the schedule (or a constant's variable)
    rates = [float(schedule(s)) if callable(schedule) else float(schedule) for s in (0, 2, 4)]
    assert rates == pytest.approx(expected)


def test_target_modes_are_the_behavior_transformers():
    from ppm.configs import models
    from ppm.layers import behavior_transformer

    assert models.TARGET_MODES == behavior_transformer.TARGET_MODES
    for name in ("ppm", "transformer"):
        with pytest.raises(ValueError, match=f"model.{name}.target_mode must be one of"):
            configs.resolve("urm_wo_ppm", "demo",
                            params_override=f"model.{name}.target_mode=both")


def test_task_losses_are_known_to_the_config_and_to_ppm_losses():
    from ppm import losses
    from ppm.configs import models

    assert set(models.TASK_LOSSES) == set(losses.LOSSES)
    c = configs.resolve("din", "demo", params_override="model.task_losses=[bce,bce,bce]")
    assert c.task_losses() == {"click": "bce", "order": "bce", "cart": "bce"}
    with pytest.raises(ValueError, match="task_losses"):
        configs.resolve("din", "demo", params_override="model.task_losses=[bce]")
    with pytest.raises(ValueError, match="not losses"):
        configs.resolve("din", "demo", params_override="model.task_losses=[bce,hinge,bce]")
