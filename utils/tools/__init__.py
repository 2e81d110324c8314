"""Command-line tools built on the suite: `python -m utils.tools.bench` (`make bench`: a profile's accuracy and
time on real data), `python -m utils.tools.recipe_search` (recipe tries scored as 05 scores them) and
`python -m utils.tools.stack` (the versions an environment runs with, checked against pins by `make test-compat`)."""
