"""Command-line tools built on the suite: `python -m utils.tools.bench` (`make bench`: a profile's accuracy and
time on real data) and `python -m utils.tools.recipe_search` (recipe tries scored as 05 scores them)."""
