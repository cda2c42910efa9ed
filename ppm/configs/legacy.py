"""Reads the ``config.yaml`` of run folders written before the model config was a one-of.

Until the baseline zoo, a run's model was a name (``model.name``: ``ppm``, ``urm``,
``urm_wo_ppm``, ``base``) with URM's PPM module set by ``model.ppm_init`` and
``model.ppm_checkpoint``, the head sizes at the top of ``model``, and Adam's rates in
``trainer.learning_rate`` / ``trainer.end_learning_rate``. :func:`upgrade` rewrites such a
config into today's fields, so an old run folder still evaluates, exports, resumes and
warm-starts (its checkpoints did not change: URM and PPM keep their object paths).
"""

from __future__ import annotations

import copy

# old model.name -> (model.type, plug-in kind, model.urm.modal_in_idsm)
_OLD_MODELS = {"ppm": ("ppm", "", False), "urm": ("urm", "ppm", False),
               "urm_wo_ppm": ("urm", "", False), "base": ("urm", "", True)}
_HEAD_FIELDS = ("num_experts", "expert_units", "tower_units")


def is_legacy(config: dict) -> bool:
    return "name" in (config.get("model") or {})


def upgrade(config: dict) -> dict:
    """Today's fields for a config dict written by an older version (unchanged if current).

    Raises:
      ValueError: an old ``model.name`` that never existed.
    """
    if not is_legacy(config):
        return config
    out = copy.deepcopy(config)
    model = out["model"]
    name = model.pop("name")
    if name not in _OLD_MODELS:
        raise ValueError(f"model.name {name!r} is not a model of any version "
                         f"({sorted(_OLD_MODELS)})")
    model_type, plugin, modal_in_idsm = _OLD_MODELS[name]
    init, checkpoint = model.pop("ppm_init", "finetune"), model.pop("ppm_checkpoint", "")
    head_units = model.pop("head_units", None)
    head = {k: model.pop(k) for k in _HEAD_FIELDS if k in model}
    model["type"] = model_type
    model["plugin"] = ({"kind": plugin, "init": init, "checkpoint": checkpoint} if plugin
                       else {"kind": ""})
    model["head"] = head
    if model_type == "ppm" and head_units is not None:
        model["ppm"] = {"head_units": head_units}
    if model_type == "urm":
        model["urm"] = {"modal_in_idsm": modal_in_idsm}
    trainer = out.get("trainer") or {}
    if "learning_rate" in trainer:
        start = trainer.pop("learning_rate")
        end = trainer.pop("end_learning_rate", 1e-4)
        trainer["optimizer"] = {
            "optimizer": {"type": "adam"},
            "learning_rate": {"type": "polynomial", "polynomial": {
                "initial_learning_rate": start, "end_learning_rate": end, "power": 1.0,
                "decay_steps": trainer.get("train_steps")}}}
    return out
