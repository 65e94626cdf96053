"""Repository-wide pytest set-up.

The notebooks are committed with outputs computed on the full MNIST (70,000 images). Where the
full set is not on disk (an offline classroom using the 5,000-digit sample), the numbers in those
outputs cannot match, so nbval runs the notebooks in lax mode: every cell must still run without
error, but outputs are not compared. The run says so in its header.
"""

from vae_lesson.data import data_root, has_raw_files


def _full_mnist_available():
    return has_raw_files(data_root())


def pytest_configure(config):
    if getattr(config.option, "nbval", False) and not _full_mnist_available():
        config.option.nbval_lax = True
        config._vae_lesson_lax_reason = (
            f"full MNIST not found in {data_root()}: notebooks run under nbval in lax mode "
            "(cells must run; outputs are compared only with the full data set, see README 'Offline use')"
        )


def pytest_report_header(config):
    reason = getattr(config, "_vae_lesson_lax_reason", None)
    return [f"vae-lesson: {reason}"] if reason else []
