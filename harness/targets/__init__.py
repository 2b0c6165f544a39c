"""What a run is aimed at: profiles of targets, the probe that drafts one, run namespaces."""
