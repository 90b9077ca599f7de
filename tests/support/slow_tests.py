"""A pytest plugin that names each test marked ``slow`` as it starts.

Slow tests (real workers, real data) run for minutes and pytest prints nothing meanwhile,
even less under ``-q``: a line on the terminal says which one is running. It only writes to
the terminal; what runs, what is reported and what CI counts stay as they are.
"""

from __future__ import annotations

import pytest

PLUGIN_NAME = "ubi-slow-test-names"


class SlowTestNames:
    """Writes ``slow test running: NODEID`` before each slow test's setup."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.slow: set[str] = set()

    @pytest.hookimpl(trylast=True)  # after any other plugin reorders or deselects
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.slow = {item.nodeid for item in items if item.get_closest_marker("slow")}

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter's own line (-v)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        # Looked up here: the terminal reporter registers itself after the conftest's
        # pytest_configure, which registers this plugin.
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or nodeid not in self.slow:
            return
        terminal.ensure_newline()
        writer = getattr(terminal, "_tw", None)  # the reporter's writer; no public accessor
        if writer is not None and writer.width_of_current_line:  # after -q's progress dots
            terminal.write("\n")
        terminal.write_line(f"slow test running: {nodeid}", bold=True)


def register(config: pytest.Config) -> None:
    """Register the plugin once (``tests/conftest.py`` calls this)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(SlowTestNames(config), PLUGIN_NAME)
