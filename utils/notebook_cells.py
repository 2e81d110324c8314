"""Reads the numbered notebooks' parameters cells: what the runner passes and the fan-out plans from."""

from __future__ import annotations

import ast
from pathlib import Path


def declared(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook's cell tagged `parameters` declares, by name, described as papermill describes them
    (`name`, `inferred_type_name`, `default`, `help`).

    Read with Python's own parser rather than papermill's `inspect_notebook`, whose pattern skips every annotated line
    it cannot read, such as `SEED: int | None = None`: the runner would then pass neither those parameters nor `--data`."""
    import nbformat

    try:
        content = nbformat.read(str(notebook), as_version=4)
    except (OSError, ValueError) as error:
        raise ValueError(f"{notebook}: cannot be read as a notebook ({error}); restore it from git.") from None
    cell = next((cell for cell in content.cells if "parameters" in cell.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise ValueError(f"{notebook}: its parameters cell is not valid Python (line {error.lineno}); fix the cell.") from None
    lines = cell.source.splitlines()
    declared = {}
    for statement in tree.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            names, annotation, value = [statement.target.id], ast.unparse(statement.annotation), statement.value
        elif isinstance(statement, ast.Assign) and all(isinstance(target, ast.Name) for target in statement.targets):
            names, annotation, value = [target.id for target in statement.targets], "None", statement.value
        else:
            continue
        # The comment lines right above the assignment describe it.
        above, row = [], statement.lineno - 2
        while row >= 0 and lines[row].lstrip().startswith("#"):
            above.insert(0, lines[row].lstrip().lstrip("#").strip())
            row -= 1
        default = ast.get_source_segment(cell.source, value) if value is not None else "None"
        for name in names:
            declared[name] = {"name": name, "inferred_type_name": annotation, "default": default, "help": " ".join(above)}
    return declared
