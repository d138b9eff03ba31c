"""Generic figures, tables, claims and run cards for the notebooks, and the report runner.

Notebook-facing: :func:`show_run_card`, :func:`finish`, :func:`image_grid`, :func:`plot_training_log`,
:func:`show_figure`, :func:`show_table`, :func:`show_claims`, :func:`show_headlines`, :func:`paper_vs_ours`.
Every table, claim and headline shown is also written to ``reports/<notebook>.json``.
Runner: ``python -m medgan reproduce [--nb NAME] [--profile P] [--data PATH] [--set k=v]``.
"""

from medgan.reports.figures import dataset_grid, image_grid, plot_training_log, sample_progress, show_figure
from medgan.reports.results import Claim, Headline, claims_frame, show_claims, show_headlines, show_table
from medgan.reports.runcard import finish, run_card_html, show_run_card
from medgan.reports.tables import bad_input_table, paper_vs_ours, parameter_table

__all__ = ["Claim", "bad_input_table", "Headline", "claims_frame", "dataset_grid", "finish", "image_grid", "paper_vs_ours",
           "parameter_table", "plot_training_log", "run_card_html", "sample_progress", "show_claims", "show_figure",
           "show_headlines", "show_run_card", "show_table"]
