"""The HTTP service (FastAPI + uvicorn): :func:`create_app` in :mod:`speakerid.service.app`.

Importing this package costs nothing: the command line reads :mod:`speakerid.service.config`
without loading FastAPI, and uvicorn imports the app by name.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "create_app":
        from speakerid.service.app import create_app

        return create_app
    raise AttributeError(name)
