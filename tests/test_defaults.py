"""One source of defaults per command: every option whose default a config holds shows that config's default in
--help and passes "not given" (None) so the config fills it; no option declares a default of its own for a field
its command's config already has (the drift that once gave `adjudicate` 0.5 where the recipe said 0.6)."""

from __future__ import annotations

import dataclasses
import inspect

import typer.main

from semanticseg.cli import app
from semanticseg.commands.common import ConfigDefault, config_class, default_of, shown

# Commands with no config dataclass of their own: their options are paths, switches and the recipe.
NO_CONFIG = {"release", "validate", "annotate pull", "segment"}


def _commands(group, prefix: str = ""):  # typer ships its own click: groups are told apart by their commands
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            yield from _commands(command, f"{path} ")
        else:
            yield path, command


def _defaulted(target: str) -> set[str]:
    """The fields of a config (or keyword parameters of a function) that have a default."""
    config = config_class(target)
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return {n for n, p in inspect.signature(config).parameters.items() if p.default is not inspect.Parameter.empty}


def test_every_commands_help_defaults_are_its_configs():
    seen = set()
    for path, command in _commands(typer.main.get_command(app)):
        seen.add(path)
        options = [p for p in command.params if p.param_type_name == "option"]
        backed = [p for p in options if isinstance(p.show_default, ConfigDefault)]
        assert backed or path in NO_CONFIG, f"{path}: no option takes its default from a config"
        for param in backed:
            config, name = param.show_default.config, param.show_default.name
            assert param.default is None, f"{path} {param.opts[0]}: declares {param.default!r}, the config's default is the one"
            assert str(param.show_default) == shown(default_of(config, name)), f"{path} {param.opts[0]}"
        fields = set().union(*(_defaulted(p.show_default.config) for p in backed))
        for param in options:
            own = param.default not in (None, False, ()) and not param.required
            assert not (own and param.name in fields), f"{path} {param.opts[0]}: its own default {param.default!r} beside the config's"
    assert NO_CONFIG <= seen  # the exemptions name real commands


def test_a_given_option_overrides_and_an_absent_one_is_the_configs(tmp_path):
    """adjudicate: --tolerance absent is AdjudicateStage's default; given, it is what was given."""
    from typer.testing import CliRunner

    from semanticseg.dataset.adjudicate import AdjudicateStage
    from semanticseg.io import read_records
    from semanticseg.schema import Candidates
    from tests.fixtures_llm import make_work, real_paragraphs
    from tests.test_adjudicate import _write

    work = tmp_path / "legal"
    make_work(work, [("d0", "legal", "\n\n".join(real_paragraphs(10)))])
    offsets = read_records(work / "candidates.parquet", Candidates)[0].offsets
    _write(work, [("d0", a, [offsets[3]], "ok") for a in ("a", "b")])
    runner = CliRunner()
    for args, expected in (((), default_of(AdjudicateStage, "tolerance")), (("--tolerance", "3"), 3)):
        result = runner.invoke(app, ["adjudicate", "--work", str(tmp_path), "-c", "legal", *args])
        assert result.exit_code == 0, result.output
        assert (work / "adjudicate.config.json").read_text().count(f'"tolerance": {expected}') == 1
