"""The ``enroll-speaker`` command and bulk enrollment tooling (manifests, Ray).

Enrollment itself — the checks and the write — is :mod:`speakerid.flows.enrollment`; this package is
the tooling around it and sits above ``speakerid``.
"""
