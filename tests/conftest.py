"""Shared test setup. Area fixtures live in tests/fixtures_<area>.py and are registered here."""

pytest_plugins: list[str] = ["tests.fixtures_release", "tests.fixtures_labelstudio", "tests.fixtures_llm", "tests.fixtures_blockattn"]
