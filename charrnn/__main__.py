"""`python -m charrnn`: the same as the `charrnn` command."""

from charrnn.cli import main

main()
