"""Pipeline options shared by the Beam jobs: the runner is always chosen explicitly.

Beam's ``DirectRunner`` is an alias of ``SwitchingDirectRunner``, which first tries the Prism
runner (downloading its binary from GitHub at every start: ``Unable to fetch remote prism
binary ... Falling back to DirectRunner`` offline) and only then runs batch pipelines on the
``FnApiRunner``. The jobs default to that ``FnApiRunner`` directly: the engine they were always
tested on, with no download and no fallback. ``--runner`` overrides it (``DataflowRunner``,
``FlinkRunner``, ``PrismRunner``, ``DirectRunner``, ...).
"""

from __future__ import annotations

import logging

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

DEFAULT_RUNNER = "FnApiRunner"


def pipeline_options(beam_args, save_main_session: bool = True) -> PipelineOptions:
    """``PipelineOptions`` from the flags the job did not parse, with an explicit runner.

    Args:
      beam_args: standard Beam/Dataflow flags (``parse_known_args``'s rest).
      save_main_session: pickle the main session for remote workers.

    Returns:
      The options; ``StandardOptions.runner`` is :data:`DEFAULT_RUNNER` unless ``--runner``
      was given.
    """
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    options.view_as(SetupOptions).save_main_session = save_main_session
    logging.getLogger(__name__).info("Beam runner: %s", standard.runner)
    return options
