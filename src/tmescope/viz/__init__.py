"""Pictures of the cohort: overview and label maps, interaction plots, the similar-region gallery,
the static report (``viz.report``) and the local web viewer (``viz.app`` and ``viz/static``)."""
