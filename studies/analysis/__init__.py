"""From trials to a verdict: the trials table, paired statistics, report, plots and costs."""
