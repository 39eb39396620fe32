"""The course's nbgrader preprocessors: what students get contains nothing instructor-only.

``generate_assignment``: ``DropMasterOnlyCells`` removes cells tagged ``master-only``
(notes about the master's stored run), as scripts/generate_exercises.py does for exercises.

``generate_feedback``: nbgrader's feedback shows the autograded notebook, which holds the
hidden test code and tracebacks that quote it. ``HideHiddenTests`` removes the hidden
regions from the cells; ``ShortenErrors`` replaces each traceback with the error's
one-line message (the check's own words to the student).
"""
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor

MASTER_ONLY_TAG = "master-only"


class DropMasterOnlyCells(NbGraderPreprocessor):
    """Remove every cell tagged ``master-only``."""

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells
                    if MASTER_ONLY_TAG not in cell.get("metadata", {}).get("tags", [])]
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
