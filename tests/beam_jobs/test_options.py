"""The Beam jobs name their runner: Beam's FnApiRunner by default, never the Prism attempt."""

import pytest
from apache_beam.options.pipeline_options import SetupOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import create_runner

from beam_jobs import build_examples, embed_items, options

_ARGS = {
    "build_examples": (build_examples, ["--dataset", "d", "--out", "o"]),
    "embed_items": (embed_items, ["--dataset", "d", "--text_model", "t", "--image_model", "i",
                                 "--out", "o"]),
}


@pytest.mark.parametrize("job", sorted(_ARGS))
def test_default_runner_is_explicit_and_never_tries_prism(job):
    module, argv = _ARGS[job]
    _, beam_args = module.parse_args(argv)
    opts = options.pipeline_options(beam_args, save_main_session=False)
    assert opts.view_as(StandardOptions).runner == options.DEFAULT_RUNNER == "FnApiRunner"
    assert opts.view_as(SetupOptions).save_main_session is False
    runner = create_runner(opts.view_as(StandardOptions).runner)
    # Beam's "DirectRunner" is the switching runner, which tries (and downloads) Prism first.
    assert isinstance(runner, FnApiRunner)
    assert not isinstance(create_runner("DirectRunner"), FnApiRunner)
    assert isinstance(create_runner("DirectRunner"), SwitchingDirectRunner)


@pytest.mark.parametrize("flags", [["--runner", "DataflowRunner"], ["--runner=DataflowRunner"]])
def test_runner_flag_overrides(flags):
    _, beam_args = build_examples.parse_args(["--dataset", "d", "--out", "o", *flags,
                                              "--project", "p"])
    opts = options.pipeline_options(beam_args)
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    assert opts.get_all_options()["project"] == "p"
    assert opts.view_as(SetupOptions).save_main_session is True
