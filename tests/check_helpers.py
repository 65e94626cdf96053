"""What the check tests share: the stub every exercise starts as, and the failure assertion."""


def stub(*args):
    raise NotImplementedError("Replace this line with your code")


def assert_fails(result, diagnosis, phrase):
    """The check failed (a wrong answer, not an error), named `diagnosis`, and its message holds `phrase`."""
    assert not result.passed, f"expected {diagnosis}, but the check passed:\n{result}"
    assert result.status == "failed", result
    assert result.diagnosis == diagnosis, f"expected {diagnosis}, got {result.diagnosis}:\n{result}"
    assert phrase in result.message, f"{phrase!r} not in:\n{result.message}"
