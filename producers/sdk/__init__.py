"""The SDK a training job or serving process imports, by concern.

- :mod:`~modelog.sdk.client`: ``Client``, the settings + emitter every verb publishes through.
- :mod:`~modelog.sdk.tracking`: ``Run`` (metrics, params, tags, artifacts) and the active run.
- :mod:`~modelog.sdk.environment`: what a run records about where it ran.
- :mod:`~modelog.sdk.datasets`: dataset versions and lineage edges.
- :mod:`~modelog.sdk.registry`: model versions, requests, approvals, deployments, roles, policies.
- :mod:`~modelog.sdk.monitoring`: ``Monitor`` (predictions, labels), reference profiles.
- :mod:`~modelog.sdk.tokens`: API tokens (issue, revoke); admin verbs, not re-exported by :mod:`modelog`.
- :mod:`~modelog.sdk.fluent`: the module-level verbs on a process-wide default client.

The public names are re-exported by :mod:`modelog` (tokens' aside); import them from there.
"""
