"""The blood-cell suite's shared package: all logic the numbered notebooks call. One package per concern, arrows
only downward (a test walks the imports):

    config       paths, class names, outlier reasons: the vocabulary every room shares
    notebook_cells  what a numbered notebook's parameters cell declares
    data         reading and checking the training data, the run's clean set and split, atomic files
    outliers     exact and near copies, out-of-distribution pictures, the drop policy (notebook 01)
    synthetic    the embedded synthetic data set and the contamination benchmark's data
    models       backbones, transfer heads, nets trained from scratch, specs (shipped in the zip)
    augment      augmentation policies, layers, the batches `fit` reads, the consistency loss
    evaluation   metrics, test-time augmentation, the corruption suite
    training     `Recipe`, training phases, checkpoints, number formats, data-parallel steps
    sweeps       04's study, the finished cells of a sweep, their fan-out over Ray
    report       figures, tables and the run's report page
    submission   packaging and checking the Codabench zip (`python -m utils.submission`)
    runner       runs the notebooks by profile (`python -m utils.runner`)
    tools        `python -m utils.tools.bench` and `python -m utils.tools.recipe_search`
"""
