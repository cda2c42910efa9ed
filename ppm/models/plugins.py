"""Plug-ins: pre-trained modules that any ranking model can take (PPM §3.2.2, Table 2).

A plug-in is a setting of the model config (``model.plugin``: ``kind``, ``init``,
``checkpoint``), not a model: every builder asks :class:`~ppm.models.parts.Parts` for
``parts.plugin()`` and concatenates its outputs into the model's representation, and training
initialises it through :func:`initialise`, so no code outside this module knows a plug-in by
name. Today's kind is ``ppm``: the PPM module (cached ``[E_title | E_image]`` items and a
Behavior-Transformer), whose ``[U_MO | I_MO]`` joins the representation; a later kind (MAKE,
SimTier) is one more :class:`Plugin` in :data:`PLUGINS`.

Models expose their plug-in module as ``model.plugin_module`` (URM stores it as ``model.ppm``,
the object path its checkpoints have always had).
"""

from __future__ import annotations

import logging

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


class PPMPlugin(Plugin):
    """The PPM module of a ``ppm_pretrain`` run (PPM §3.2.2)."""

    kind = "ppm"
    reads_cache = True

    def build(self, parts):
        return parts.ppm_module()

    def load(self, module, checkpoint: str) -> str:
        from ppm import checkpoints  # noqa: PLC0415 - checkpoints imports the layers

        return checkpoints.load_ppm_module(module, checkpoint)


PLUGINS = {p.kind: p for p in (PPMPlugin(),)}


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
