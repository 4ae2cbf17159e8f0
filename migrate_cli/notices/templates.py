"""Where the templates live and how the CLI gets a Renderer for the configured folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from migrate_cli.config import Config
from migrate_cli.definitions.model import Definitions, load_definitions
from migrate_cli.errors import InputError, Problem

# The shipped templates, used when neither the config nor the working folder has any: the
# checkout's own folder (editable installs) or the copy a wheel installs under share/.
_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "email_templates",
    Path(sys.prefix) / "share" / "migctl" / "email_templates",
)


def bundled_templates() -> Path:
    for folder in _CANDIDATES:
        if (folder / "layout.html").is_file():
            return folder
    return _CANDIDATES[0]


def templates_dir(config: Config) -> Path:
    if config.templates_dir is not None:
        return config.templates_dir
    local = Path("email_templates")
    if (local / "layout.html").exists():
        return local
    return bundled_templates()


def check_templates(config: Config, defs: Definitions) -> list[Problem]:
    """Render every template against sample data; problems name file and line."""
    from migrate_cli.notices.render import Renderer

    folder = templates_dir(config)
    if not folder.is_dir():
        return [Problem(str(folder), None, None, "templates folder not found")]
    return Renderer(folder, config.dashboard.url, product_name=config.dashboard.product_name).check(
        defs.migrations
    )


def check_setup(
    load_config: Callable[[], Config], file: Path | None
) -> tuple[Definitions | None, list[Problem]]:
    """`validate`: every problem of the configuration, the definitions and the templates at once.

    A broken configuration does not hide the definitions' problems (they are then read from
    `file` or ./migrations.yaml); the templates are checked only when both loaded.
    """
    problems: list[Problem] = []
    config: Config | None = None
    defs: Definitions | None = None
    try:
        config = load_config()
    except InputError as exc:
        problems.extend(exc.problems)
    try:
        default = config.migrations_file if config is not None else Path("migrations.yaml")
        defs = load_definitions(file or default)
    except InputError as exc:
        problems.extend(exc.problems)
    if config is not None and defs is not None and not problems:
        problems.extend(check_templates(config, defs))
    return defs, problems
