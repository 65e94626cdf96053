"""Shared pytest set-up for tests/."""


def pytest_collection_modifyitems(config, items):
    """Run the browser tests last, after the notebooks under nbval.

    `make test` collects tests/ and notebooks/ in one run; nbval's pass trains and caches the
    models, so the browser test that follows opens every notebook with a warm cache.
    """
    browser = [item for item in items if item.get_closest_marker("browser")]
    others = [item for item in items if not item.get_closest_marker("browser")]
    items[:] = others + browser
