"""One test for "these draws are independent standard normal", shared by every check that samples.

`problem(draws, draws_again)` takes (N, D) standardised draws from two calls of the student's
function under different seeds and names the first way they fail to be fresh, independent
N(0, 1) noise (or None). Each exercise turns that name into its own words with a mistakes table.
The statistics depend on shape only (each column is standardised first), so the exercise may pass
eps = (z - mu) / sigma or the codes themselves.
"""

import torch

from .harness import rows_identical

FIXED = "fixed"  # the same values for every row and on every call: no randomness at all
SEEDED = "seeded"  # random across rows, but identical on every call: a seed set inside
ONE_VALUE = "one value"  # one single number shared by every row and column
ONE_ROW = "one row"  # every row (example) shares the same draw
ONE_COLUMN = "one column"  # every column (latent dimension) shares the same draw
CORRELATED = "correlated"
UNIFORM = "uniform"
HEAVY_TAILED = "heavy tailed"

# A standard normal has kurtosis 3 and 4.55% of its draws beyond 2 standard deviations; uniform
# noise has 1.8 and 0%, Laplace noise 6. With 10,000 draws the fraction's own sd is 0.2%.
MIN_KURTOSIS, MAX_KURTOSIS, MIN_BEYOND_TWO = 2.4, 3.6, 0.025
MAX_CORRELATION = 0.2  # with 2,000 rows the sample correlation of independent columns has sd 0.022


def statistics(draws):
    """(column correlations off the diagonal, kurtosis, fraction beyond 2 sd) of (N, D) draws.

    Each column is standardised, then the kurtosis and the tail fraction are pooled over all columns.
    """
    centred = draws - draws.mean(dim=0)
    standardised = centred / centred.std(dim=0)
    n, d = standardised.shape
    correlation = standardised.T @ standardised / (n - 1)
    off_diagonal = correlation[~torch.eye(d, dtype=torch.bool)]
    kurtosis = float(standardised.pow(4).mean())
    beyond_two = float((standardised.abs() > 2).double().mean())
    return off_diagonal, kurtosis, beyond_two


def problem(draws, draws_again):
    """The first way (N, D) float64 draws are not fresh independent N(0, 1) noise, or None."""
    same_every_call = torch.equal(draws, draws_again)
    rows_same = rows_identical(draws)
    if same_every_call and rows_same:
        return FIXED
    if same_every_call:
        return SEEDED
    if rows_same:
        return ONE_VALUE if rows_identical(draws[0].reshape(-1, 1), rtol=1e-5) else ONE_ROW
    correlation, kurtosis, beyond_two = statistics(draws)
    if bool((correlation.abs() > 0.99).all()):
        return ONE_COLUMN
    if bool((correlation.abs() > MAX_CORRELATION).any()):
        return CORRELATED
    if kurtosis < MIN_KURTOSIS or beyond_two < MIN_BEYOND_TWO:
        return UNIFORM
    if kurtosis > MAX_KURTOSIS:
        return HEAVY_TAILED
    return None


def described(draws):
    """The measured numbers a message quotes: correlation, kurtosis, beyond_two."""
    correlation, kurtosis, beyond_two = statistics(draws)
    return {"correlation": float(correlation.abs().max()), "kurtosis": kurtosis, "beyond_two": beyond_two}
