"""``fundflow serve``: the triage API and web page over the alert store.

Modules: :mod:`.app` (the Starlette app, security headers, error shapes),
:mod:`.api` (every operation, the single description of the API; the
handlers in :mod:`.ops_session`, :mod:`.ops_alerts`, :mod:`.ops_cases`,
:mod:`.ops_admin`, sharing :mod:`.common`),
:mod:`.openapi` (the document built from it), :mod:`.auth` (passwords,
sessions, CSRF, tokens, roles), :mod:`.state` (settings, the store per
thread, who a request acts as), :mod:`.http` (bodies and query parameters,
checked), :mod:`.views` (store objects as JSON), :mod:`.cli` (``fundflow
serve``, ``fundflow users``). The page is ``static/``: HTML, CSS and
JavaScript modules, no build step.
"""
