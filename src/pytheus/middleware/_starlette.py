"""The route template of a request served by Starlette or FastAPI (or Litestar, whose router
writes ``scope["path_template"]``), read from its ASGI scope.

Starlette's router stores the route it picked in ``scope["route"]`` (the scope object the
middleware passed down, so the middleware sees it once the app has run); FastAPI's does too.
That route's ``path`` is the template. Two cases need more:

* the request went through a ``Mount`` (``scope["root_path"]`` grew): the route's ``path`` is
  relative to the mount, so the mounts' templates are found by matching the app's routes the way
  the router does, and prepended;
* no route in the scope: either nothing matched (a 404) or the Starlette is too old to set it.
  Once a request has shown that the router sets ``scope["route"]``, its absence means unmatched;
  until then the app's routes are matched too.

Matching imports nothing from Starlette: it calls each route's own ``matches(scope)`` and reads
the result's ``name`` (``FULL``, ``PARTIAL``, ``NONE``), so this module works with any version.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]


class StarletteRoutes:
    """Finds the route template of a finished request; one per middleware instance.

    ``app`` is the application the middleware wraps: its ``routes`` are matched when the scope
    alone does not tell (failing that, those of ``scope["router"]``).
    """

    __slots__ = ("_app", "_leaf_types", "_router_sets_route")

    def __init__(self, app: object) -> None:
        self._app = app
        self._leaf_types: dict[type, bool] = {}
        self._router_sets_route = False

    def route(self, scope: Scope, root_path: str) -> str | None:
        """The template of the route that served ``scope``, or None when no route matched.

        ``root_path`` is the scope's ``root_path`` when the request reached the middleware.
        """
        template = scope.get("path_template")  # Litestar's router sets the template itself
        if isinstance(template, str):
            return template
        route = scope.get("route")
        if route is None:
            if self._router_sets_route or "router" not in scope:
                return None
            return self._match(scope, root_path)
        self._router_sets_route = True
        if scope.get("root_path", "") == root_path:  # no mount on the way
            leaf = self._leaf_types.get(type(route))
            if leaf is None:
                leaf = self._leaf_types[type(route)] = _is_leaf(type(route))
            if leaf:
                path = getattr(route, "path", None)
                if isinstance(path, str):
                    return path
        return self._match(scope, root_path)

    def route_before(self, scope: Scope, root_path: str) -> str | None:
        """The template of the route the router will pick for ``scope``, found before the app
        runs (for the in-progress gauge): the app's routes matched as the router will."""
        template = scope.get("path_template")  # inside Litestar's routing: already known
        if isinstance(template, str):
            return template
        try:
            router = getattr(self._app, "asgi_router", None)  # a Litestar app, wrapped whole
            if router is not None:
                found = router.handle_routing(scope["path"], scope.get("method"))[-1]
                return found if isinstance(found, str) else None
            return self._match(scope, root_path)
        except Exception:  # no route (Litestar raises), or one we cannot read: never fail
            return None

    def _match(self, scope: Scope, root_path: str) -> str | None:
        """Match the app's routes against the request, as the router did (slow path)."""
        routes = getattr(self._app, "routes", None)
        if routes is None:
            routes = getattr(scope.get("router"), "routes", None)
        if routes is None:  # added with add_middleware: the Starlette app is in the scope
            routes = getattr(scope.get("app"), "routes", None)
        if routes is None:
            return None
        probe: Scope = {
            "type": scope["type"],
            "path": scope["path"],
            "root_path": root_path,
            "method": scope.get("method", "GET"),
            "headers": scope.get("headers", []),
            "path_params": {},
        }
        found = _match_routes(routes, probe, "")
        if found is None:
            # FastAPI(root_path=...) sets the scope's root_path itself, inside the middleware
            app_root = getattr(scope.get("app"), "root_path", None)
            if isinstance(app_root, str) and app_root and app_root != root_path:
                probe["root_path"] = app_root
                found = _match_routes(routes, probe, "")
        return found


def _is_leaf(route_type: type) -> bool:
    """A route that serves requests itself (not a ``Mount``, ``Host`` or included router)."""
    return not hasattr(route_type, "routes") and not hasattr(route_type, "effective_route_contexts")


def _flatten(routes: Iterable[Any]) -> list[Any]:
    """Routes with FastAPI's included routers replaced by the routes they contain.

    Recent FastAPI versions keep ``include_router(...)`` as one ``_IncludedRouter`` whose
    ``effective_route_contexts()`` yields matchable routes carrying their full path.
    """
    flat: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                starlette_route = getattr(context, "starlette_route", None)
                flat.append(context if starlette_route is None else starlette_route)
        else:
            flat.append(route)
    return flat


def _match_routes(routes: Iterable[Any], scope: Scope, prefix: str) -> str | None:
    """The template of the route among ``routes`` that the router would pick for ``scope``."""
    partial: tuple[Any, Scope] | None = None
    for route in _flatten(routes):
        try:
            match, child_scope = route.matches(scope)
        except Exception:  # a route that cannot read this probe scope: not the one
            continue
        kind = getattr(match, "name", "NONE")
        if kind == "FULL":
            return _template(route, scope, child_scope, prefix)
        if kind == "PARTIAL" and partial is None:
            partial = (route, child_scope)
    if partial is not None:
        return _template(partial[0], scope, partial[1], prefix)
    return None


def _template(route: Any, scope: Scope, child_scope: Scope, prefix: str) -> str | None:
    path = getattr(route, "path", "")
    path = path if isinstance(path, str) else ""
    if _is_leaf(type(route)):
        return prefix + path or None
    # a Mount (path: its prefix) or a Host (no path): look inside
    sub_routes = getattr(route, "routes", None)
    if not sub_routes:  # a mounted ASGI app with no routes to look into (StaticFiles...)
        return prefix + path or "/"
    return _match_routes(sub_routes, {**scope, **child_scope}, prefix + path)
