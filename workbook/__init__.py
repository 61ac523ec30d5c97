"""MLOps Workbook tooling: catalog, grading plugin, CLI and stub generator."""

from workbook.loader import load_exercise

__all__ = ["load_exercise"]
__version__ = "0.1.0"
