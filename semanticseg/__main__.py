"""`python -m semanticseg` (and `torchrun -m semanticseg`): the same app as the `semanticseg` console script."""

from semanticseg.cli import app

app(prog_name="semanticseg")
