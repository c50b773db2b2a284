"""Counting web requests for the metrics: by route (the URL rule, so a bounded set of names:
``/confirm/<token>``, never each token), method and status."""

from __future__ import annotations

from flask import Flask, Response, request

from weekly_mailer import metrics

UNMATCHED = "unmatched"  # no route: a 404, or a method the route does not take


def install(app: Flask) -> None:
    """Count every answered request, error pages included."""

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        metrics.count_request(
            rule.rule if rule is not None else UNMATCHED, request.method, response.status_code
        )
        return response
