"""Customer analytics: RFM, NES lifecycle, repurchase intervals, reminders, win-back lists.

Everything is plain pandas over a clean purchase log (docs/ARCHITECTURE.md); the tables are
plain DataFrames. ``features.customers.plots`` (matplotlib) is imported only when plotting.
"""

from features.customers.config import (
    CustomerConfig,
    NESConfig,
    ReminderConfig,
    RepurchaseConfig,
    RFMConfig,
)
from features.customers.nes import NES_LABELS, NES_STAGES, nes_stages, purchase_cycles
from features.customers.prep import CustomerDataWarning, prepare
from features.customers.reminders import due_reminders, evaluate_reminders, reminders
from features.customers.repurchase import repurchase_intervals
from features.customers.rfm import (
    NAMED_SEGMENTS,
    VALUE_SEGMENTS,
    named_segments,
    quintile_scores,
    rfm_table,
    rfm_values,
    score_rfm,
    value_segments,
)
from features.customers.tables import (
    CustomerTables,
    build_customer_tables,
    customer_profile,
    load_tables,
    save_tables,
    summarize,
)
from features.customers.winback import winback_list


def plot_segments(*args, **kwargs):
    """See :func:`features.customers.plots.plot_segments` (imports matplotlib on first use)."""
    from features.customers.plots import plot_segments as _plot

    return _plot(*args, **kwargs)


__all__ = [
    "CustomerConfig", "NESConfig", "ReminderConfig", "RepurchaseConfig", "RFMConfig",
    "NES_LABELS", "NES_STAGES", "nes_stages", "purchase_cycles",
    "CustomerDataWarning", "prepare",
    "due_reminders", "evaluate_reminders", "reminders", "repurchase_intervals",
    "NAMED_SEGMENTS", "VALUE_SEGMENTS", "named_segments", "quintile_scores", "rfm_table",
    "rfm_values", "score_rfm", "value_segments",
    "CustomerTables", "build_customer_tables", "customer_profile", "load_tables", "save_tables",
    "summarize", "winback_list", "plot_segments",
]
