import pytest

import ppm  # noqa: F401
from ppm import configs


def test_paper_preset_carries_ppm_section_4_2_3():
    c = configs.resolve("urm", "paper", params_override="model.ppm_checkpoint=x")
    assert c.data.global_batch_size == 20000
    assert (c.trainer.learning_rate, c.trainer.end_learning_rate) == (4e-4, 1e-4)
    assert c.model.init_stddev == 0.01 and c.model.id_dim == 64
    assert (c.model.transformer.num_layers, c.model.transformer.num_heads) == (2, 4)
    assert c.runtime.strategy == "mirrored" and c.model.tasks == ["click", "order", "cart"]


@pytest.mark.parametrize("experiment,name,init,window", [
    ("ppm_pretrain", "ppm", "random", "pretrain"), ("urm_ppm_frozen", "urm", "frozen",
                                                    "train_large"),
    ("urm_wo_ppm", "urm_wo_ppm", "random", "train_large"), ("base", "base", "random",
                                                              "train_large")])
def test_experiments_derive_from_presets(experiment, name, init, window):
    demo = configs.get_config(experiment, "demo")
    assert (demo.model.name, demo.model.ppm_init, demo.data.train_window) == (name, init,
                                                                               window)
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
    with pytest.raises(ValueError, match="ppm_checkpoint"):
        configs.resolve("urm", "demo")
    with pytest.raises(ValueError, match="train_passes"):
        configs.resolve("urm_wo_ppm", "demo", params_override="trainer.train_passes=-1")
    with pytest.raises(ValueError, match="click only"):
        configs.resolve("ppm_pretrain", "demo", params_override="model.tasks=[click,order]")


def test_data_paths_have_no_working_directory_default():
    # A config never reads runs/demo/... relative to wherever the process runs.
    c = configs.resolve("urm", "paper", validate=False)
    assert (c.data.dataset, c.data.examples, c.data.embeddings) == ("", "", "")
