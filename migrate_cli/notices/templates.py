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


def check_templates(config: Config, defs: Definitions) -> tuple[list[Problem], list[Problem]]:
    """Render every template against sample data: (problems, warnings), naming file and line."""
    from migrate_cli.notices.render import Renderer

    folder = templates_dir(config)
    if not folder.is_dir():
        return [Problem(str(folder), None, None, "templates folder not found")], []
    renderer = Renderer(folder, config.dashboard.url, product_name=config.dashboard.product_name)
    return renderer.check(defs.migrations), renderer.unknown_override_folders(defs.migrations)


def check_setup(
    load_config: Callable[[], Config], file: Path | None
) -> tuple[Definitions | None, list[Problem], list[Problem]]:
    """`validate`: every problem of the configuration, the definitions and the templates at once,
    and the warnings (override folders of unknown migrations).

    A broken configuration does not hide the definitions' problems (they are then read from
    `file` or ./migrations.yaml); the templates are checked only when both loaded.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
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
        template_problems, warnings = check_templates(config, defs)
        problems.extend(template_problems)
    return defs, problems, warnings
