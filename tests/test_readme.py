"""The README's set-up commands are the ones CI runs and the ones that work."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0].endswith("visum run")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    line = next(l for l in ci.splitlines() if l.rstrip().endswith("# TEST-COMMAND"))
    command = line.rsplit("#", 1)[0].strip()
    assert command == readme_commands()[1]


def test_documented_cli_flags_exist():
    """Every --flag the README names is a flag of the command its line runs (`visum sweep`, `visum parts generate`),
    else of `visum run` or `visum sweep` (the prose about them)."""
    from visum.cli import app
    import typer.main

    def flags_of(command) -> set[str]:
        return {opt for p in command.params for opt in p.opts}

    commands = typer.main.get_command(app).commands
    run, sweep = flags_of(commands["run"]), flags_of(commands["sweep"])
    text = (ROOT / "README.md").read_text()
    for line in text.splitlines():
        other = re.search(r"visum (sweep|parts generate)\b", line)
        if other is None:  # prose about `visum run`, or about `visum sweep` continued from the line before
            allowed = run | sweep
        else:
            allowed = sweep if other.group(1) == "sweep" else flags_of(commands["parts"].commands["generate"])
        for flag in set(re.findall(r"(--[a-z][a-z-]+)", line)) - {"--help"}:
            assert flag in allowed, (flag, line)
