"""Plug-ins: pre-trained modules that any ranking model can take (PPM §3.2.2, Table 2).

A plug-in is a setting of the model config (``model.plugin``: ``kind``, ``init``,
``checkpoint``), not a model: every builder asks :class:`~ppm.models.parts.Parts` for
``parts.plugin()`` and concatenates its outputs into the model's representation, and training
initialises it through :func:`initialise`, so no code outside this module knows a plug-in by
name. The kinds:

- ``ppm``: the PPM module (cached ``[E_title | E_image]`` items and a Behavior-Transformer) of a
  ``ppm_pretrain`` run, whose ``[U_MO | I_MO]`` joins the representation (PPM §3.2.2);
- ``make``: the MAKE module (DIN over cached multimodal vectors + MLP_MAKE) of a
  ``make_pretrain`` run, whose ``v_MAKE`` and MLP_MAKE outputs join it (Taobao §4.3).

A new kind is one more :class:`Plugin` in :data:`PLUGINS`.

Models expose their plug-in module as ``model.plugin_module`` (URM stores it as ``model.ppm``,
the object path its checkpoints have always had).
"""

from __future__ import annotations

import logging

import tensorflow as tf
import tf_keras as keras

logger = logging.getLogger(__name__)


class Plugin:
    """The interface of a plug-in kind.

    Attributes:
      kind: its ``model.plugin.kind``.
      reads_cache: whether its module reads the embedding cache.
    """

    kind = ""
    reads_cache = False

    def build(self, parts):
        """The plug-in's Keras 2 layer: ``features -> tuple of [B, d_i]`` tensors."""
        raise NotImplementedError

    def load(self, module, checkpoint: str) -> str:
        """Restores ``module`` from ``checkpoint`` (a run folder or a checkpoint); returns the
        checkpoint read."""
        raise NotImplementedError


class PretrainedModule(Plugin):
    """A module pre-trained by the ``<kind>`` model (run ``<kind>_pretrain``), which holds it
    under the attribute ``<kind>``: loading matches the checkpoint's ``model/<kind>``."""

    reads_cache = True

    def load(self, module, checkpoint: str) -> str:
        from ppm import checkpoints  # noqa: PLC0415 - checkpoints imports the layers

        return checkpoints.load_module(module, checkpoint, self.kind)


class PPMPlugin(PretrainedModule):
    """The PPM module of a ``ppm_pretrain`` run (PPM §3.2.2)."""

    kind = "ppm"

    def build(self, parts):
        return parts.ppm_module()

    def load(self, module, checkpoint: str) -> str:
        """Also refuses a module pre-trained in another ``target_mode`` (the weights fit
        either way; the tokens the transformer saw would not)."""
        import os  # noqa: PLC0415

        from ppm import checkpoints, configs  # noqa: PLC0415 - configs import the registry

        # <run>/checkpoints/ckpt-N, whichever of the three checkpoints.latest takes was given
        run = os.path.dirname(os.path.dirname(checkpoints.latest(checkpoint)))
        if os.path.exists(os.path.join(run, configs.RUN_CONFIG_FILE)):
            trained = configs.read_run_config(run).model.ppm.target_mode
            mode = module.transformer.target_mode
            if trained != mode:
                raise ValueError(
                    f"the PPM module of {run} was pre-trained with model.ppm.target_mode="
                    f"{trained!r}; this model builds it with {mode!r}: set "
                    f"model.ppm.target_mode={trained} (or pre-train in {mode!r} mode)")
        return super().load(module, checkpoint)


class MAKEPlugin(PretrainedModule):
    """The MAKE module of a ``make_pretrain`` run (Taobao §4.3)."""

    kind = "make"

    def build(self, parts):
        return parts.make_module()


PLUGINS = {p.kind: p for p in (PPMPlugin(), MAKEPlugin())}


def get(kind: str) -> Plugin | None:
    """The plug-in of ``kind`` (None for ``""``, no plug-in).

    Raises:
      ValueError: unknown kind.
    """
    if not kind:
        return None
    if kind not in PLUGINS:
        raise ValueError(f"unknown plug-in kind {kind!r}; known: {sorted(PLUGINS)}")
    return PLUGINS[kind]


def initialise(model, plugin_config) -> str | None:
    """Loads and freezes ``model``'s plug-in as ``plugin_config.init`` says.

    ``random``: left as initialised (trained from scratch); ``frozen``: loaded from
    ``plugin_config.checkpoint`` and not trained (dropout off too: used as pre-trained);
    ``finetune``: loaded and trained with the rest (the paper's URM).

    Returns:
      The checkpoint loaded, or None.

    Raises:
      ValueError: the config names a plug-in the model does not have.
    """
    plugin = get(plugin_config.kind)
    if plugin is None:
        return None
    module = getattr(model, "plugin_module", None)
    if module is None:
        raise ValueError(f"model.plugin.kind is {plugin.kind!r} but the {model.name} model "
                         "has no plug-in module")
    loaded = None
    if plugin_config.init in ("frozen", "finetune"):
        loaded = plugin.load(module, plugin_config.checkpoint)
    if plugin_config.init == "frozen":
        module.trainable = False
        logger.info("The %s plug-in is frozen", plugin.kind)
    return loaded


@keras.utils.register_keras_serializable(package="ppm")
class PluginSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The plug-in's learning rate: 0 for the first ``frozen_steps`` steps, then the model's
    (``base``: a schedule or a number) times ``multiplier``."""

    def __init__(self, base, multiplier: float = 1.0, frozen_steps: int = 0):
        self.base, self.multiplier, self.frozen_steps = base, float(multiplier), int(frozen_steps)

    def __call__(self, step):
        base = self.base(step) if callable(self.base) else self.base
        rate = self.multiplier * tf.cast(base, tf.float32)
        return tf.where(tf.cast(step, tf.int64) < self.frozen_steps, 0.0, rate)

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "multiplier": self.multiplier, "frozen_steps": self.frozen_steps}


class PluginTraining:
    """How :meth:`~ppm.models.ranking.RankingModel.train_step` trains a fine-tuned plug-in
    (``model.plugin.learning_rate_multiplier``, ``frozen_steps``, ``l2_sp``).

    Attributes:
      variables: the plug-in's trainable variables.
      owns: their refs (``v.ref()``).
      optimizer: the plug-in's own optimizer (a :class:`PluginSchedule` learning rate), or
        None when it trains with the model's.
      l2_sp: the L2-SP strength; anchors: the pre-trained values (non-trainable copies made
        after loading; not checkpointed: every start loads the plug-in's checkpoint again).
    """

    def __init__(self, variables, optimizer=None, l2_sp: float = 0.0):
        self.variables = list(variables)
        self.owns = {v.ref() for v in self.variables}
        self.optimizer, self.l2_sp = optimizer, float(l2_sp)
        self.anchors = [tf.Variable(v.read_value(), trainable=False,
                                    name=v.name.split(":")[0].replace("/", "_") + "_anchor")
                        for v in self.variables] if self.l2_sp else []

    @staticmethod
    def of(model) -> PluginTraining | None:
        """``model``'s plug-in training (:meth:`RankingModel.set_plugin_training`), or None."""
        return getattr(model, "_plugin_training", None)

    @staticmethod
    def own_optimizer(model):
        """The optimizer ``model``'s plug-in trains with on its own, or None."""
        training = PluginTraining.of(model)
        return None if training is None else training.optimizer

    def penalty(self):
        """``l2_sp / 2 * sum ||w - w_pretrained||^2``, float32."""
        return 0.5 * self.l2_sp * tf.add_n([
            tf.reduce_sum(tf.square(tf.cast(v, tf.float32) - tf.cast(a, tf.float32)))
            for v, a in zip(self.variables, self.anchors)])


def prepare_training(model, plugin_config, make_optimizer) -> PluginTraining | None:
    """Sets up :class:`PluginTraining` for ``model`` (after :func:`initialise`) and hands it
    to ``model.set_plugin_training``; None when the plug-in trains like the rest of the model.

    Args:
      make_optimizer: ``fn(learning_rate_fn) -> optimizer``, the model's optimizer type with
        a learning rate made from its base rate (:class:`PluginSchedule`).
    """
    module = getattr(model, "plugin_module", None)
    p = plugin_config
    if module is None or p.init == "frozen" or not (p.own_optimizer or p.l2_sp):
        model.set_plugin_training(None)
        return None
    optimizer = None
    if p.own_optimizer:
        optimizer = make_optimizer(lambda base: PluginSchedule(
            base, p.learning_rate_multiplier, p.frozen_steps))
        logger.info("The %s plug-in trains with its own optimizer: %s", p.kind, p.describe())
    training = PluginTraining(module.trainable_variables, optimizer, p.l2_sp)
    model.set_plugin_training(training)
    return training
