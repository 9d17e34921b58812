"""Where schedulers and services already live: one module per framework or scheduler.

Each module imports its framework, so import the one you use, never this package alone:
``authtoken.integrations.fastapi``, ``.starlette``, ``.django``, ``.celery``,
``.apscheduler``; install its extra (``pip install "authtoken[fastapi]"``).  Nothing here
decides a rule: every module logs in or mints a run token through ``Security`` and
``Session``, and translates the answer into what its framework expects.
See docs/integrations/.
"""
