"""Model builders keyed by ``model.type`` (the one-of choice of :class:`ppm.configs.ModelConfig`).

A builder is ``fn(config, inputs, parts) -> RankingModel``: ``config`` the experiment config,
``inputs`` the :class:`~ppm.models.factory.ModelInputs`, ``parts`` the
:class:`~ppm.models.parts.Parts` every model shares (the embedding cache layer, the plug-in,
the head), so a builder only assembles what is its own. Register one with::

    @registry.register("my_model")
    def build(config, inputs, parts): ...

and give :class:`ppm.configs.ModelConfig` a field of the same name (README, "Adding a model").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

_BUILDERS: dict[str, Callable] = {}
_READS_CACHE: dict[str, Callable] = {}


def register(model_type: str, reads_cache: bool | Callable = False):
    """Decorator: registers ``fn`` as the builder of ``model_type``.

    Args:
      model_type: the ``model.type`` that selects it (and names its ``model.<type>`` block).
      reads_cache: whether the model itself reads the embedding cache (a plug-in that reads it
        says so on its own), or ``fn(model_config) -> bool``.

    Raises:
      ValueError: ``model_type`` already has a builder.
    """
    def decorate(fn):
        if model_type in _BUILDERS and _BUILDERS[model_type] is not fn:
            raise ValueError(f"model type {model_type!r} is already registered "
                             f"(by {_BUILDERS[model_type].__module__})")
        _BUILDERS[model_type] = fn
        _READS_CACHE[model_type] = reads_cache if callable(reads_cache) else (
            lambda _, value=bool(reads_cache): value)
        return fn
    return decorate


def reads_cache(model_config) -> bool:
    """Whether the model of ``model_config`` (its type and settings) reads the cache."""
    builder(model_config.type)
    return bool(_READS_CACHE[model_config.type](model_config))


def builder(model_type: str) -> Callable:
    """The builder of ``model_type``.

    Raises:
      ValueError: no builder registered under that name (the message lists the known ones).
    """
    _import_builders()
    if model_type not in _BUILDERS:
        raise ValueError(f"no model builder registered as {model_type!r}; registered: "
                         f"{registered()}")
    return _BUILDERS[model_type]


def registered() -> list[str]:
    _import_builders()
    return sorted(_BUILDERS)


def _import_builders() -> None:
    """Imports every module of ``ppm.models``: their ``@register`` decorators fill the
    registry, so a new model module needs no import list."""
    import ppm.models  # noqa: PLC0415

    for module in pkgutil.iter_modules(ppm.models.__path__):
        importlib.import_module(f"ppm.models.{module.name}")
