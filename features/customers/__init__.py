"""Customer analytics: RFM, NES lifecycle, repurchase intervals, reminders, win-back lists."""
