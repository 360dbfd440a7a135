"""Pictures of the cohort: overview plots now; the web viewer and report later."""
