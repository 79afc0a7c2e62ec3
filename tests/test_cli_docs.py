"""Every command of the CLI is documented in the README and has help text."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from streambatch.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_is_in_the_readme_and_has_help(name: str) -> None:
    assert f"streambatch {name} " in README, f"'streambatch {name}' is not in the README's command list"
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert len(main.commands[name].help or "") > 20
