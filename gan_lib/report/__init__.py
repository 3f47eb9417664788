"""Run folders -> tables, statistics, the claims table and a few sentences, for the notebooks.

=====================  ==========================================================================================
`report.runs`          one row per run (`load_runs`, `summarize_runs`: best and final metric, GP, outcome), the
                       stacked logs (`load_metrics`, `load_evals`), picking runs (`pick`, `first_seed`)
`report.stats`         `t_interval`, `welch_interval` (scipy.stats), Holm's step-down (`holm_levels`)
`report.tables`        per configuration over seeds (`aggregate`), Table 2 rebuilt (`table2`), step costs
                       (`step_costs`), the CSV + Markdown writer (`save_table`, `to_markdown`)
`report.findings`      sentences computed from the tables (`describe_*`, `dataset_note`)
`report.claims`        the claims table: one row per claim of the paper, its interval, rule and computed verdict
                       (`notebook_claims`, `save_claims`), and the README blocks generated from it
=====================  ==========================================================================================

Every name is also available as ``report.<name>`` (the notebooks use it that way). Every file of a run folder is
read through `gan_lib.run_dir.RunDir`. Metrics are "lower is better" (FID, KID, SWD).
"""
from . import claims, findings, runs, stats, tables
from .claims import *  # noqa: F401,F403
from .findings import *  # noqa: F401,F403
from .runs import *  # noqa: F401,F403
from .stats import *  # noqa: F401,F403
from .tables import *  # noqa: F401,F403
