"""The course's nbgrader preprocessors: what students get contains nothing instructor-only.

``generate_assignment``: ``DropMasterOnlyCells`` removes cells tagged ``master-only``
(notes about the master's stored run) and ``ClearRunMetadata`` the traces of that run
(cell execution times, the progress bars' saved widget state), as
scripts/generate_exercises.py does for exercises.

``autograde``: ``RestoreDeletedTests`` puts a deleted test cell back after the nearest
earlier cell of the master that the submission still has. nbgrader 0.9.6's own
re-insertion only looks for a preceding grade or solution cell and crashes (KeyError)
when a locked explanation cell stands in between, as it does in this assignment.

``generate_feedback``: nbgrader's feedback shows the autograded notebook, which holds the
hidden test code and tracebacks that quote it. ``HideHiddenTests`` removes the hidden
regions from the cells; ``ShortenErrors`` replaces each traceback with the error's
one-line message (the check's own words to the student).
"""
from nbformat import from_dict
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

MASTER_ONLY_TAG = "master-only"


class DropMasterOnlyCells(NbGraderPreprocessor):
    """Remove every cell tagged ``master-only``."""

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells
                    if MASTER_ONLY_TAG not in cell.get("metadata", {}).get("tags", [])]
        return nb, resources


RUN_METADATA = ("execution", "collapsed", "scrolled")  # cell metadata of one run


class ClearRunMetadata(NbGraderPreprocessor):
    """Remove what describes the master's last run: cell timings and saved widget state."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            for key in RUN_METADATA:
                cell.metadata.pop(key, None)
        return nb, resources


HIDDEN_NOTE = "# (hidden tests ran here)"


class HideHiddenTests(ClearHiddenTests):
    """Drop every ``### BEGIN/END HIDDEN TESTS`` region, leaving a one-line note."""

    def _remove_hidden_test_region(self, cell) -> bool:
        removed = super()._remove_hidden_test_region(cell)
        if removed:
            cell.source = cell.source.rstrip("\n") + "\n" + HIDDEN_NOTE
        return removed


class ShortenErrors(NbGraderPreprocessor):
    """Keep only ``ErrorName: message`` of every error output."""

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class RestoreDeletedTests(OverwriteCells):
    """OverwriteCells whose ``add_missing_cells`` tolerates locked cells between tests."""

    def add_missing_grade_cells(self, nb, resources):
        master = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in master.source_cells]
        sources = {cell.name: cell for cell in master.source_cells}
        solutions = {cell.name for cell in master.solution_cells}
        for grade_cell in sorted(master.grade_cells, key=lambda cell: order.index(cell.name)):
            where = {cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"): index
                     for index, cell in enumerate(nb.cells)}
            if grade_cell.name in where:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook",
                             grade_cell.name)
            earlier = order[:order.index(grade_cell.name)]
            after = max((where[name] for name in earlier if name in where), default=-1)
            restored = self.missing_cell_transform(sources[grade_cell.name], grade_cell.max_score,
                                                   is_solution=grade_cell.name in solutions)
            nb.cells.insert(after + 1, from_dict(restored))
        return nb, resources
