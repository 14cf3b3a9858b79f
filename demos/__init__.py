"""The demos ``modelog demo`` runs: :mod:`~modelog.demos.training` (the quickstart's main job) and
:mod:`~modelog.demos.monitoring` (a deployed model drifts and raises an alert)."""
