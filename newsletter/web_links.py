"""The links in our mail: confirm (double opt-in) and unsubscribe, including RFC 8058 one-click.

GET and HEAD only ever show a page with a button: corporate mail scanners fetch every link in
a message, and a GET that confirmed or unsubscribed would act on their behalf (email standards
C.20). The button POSTs back to the same URL, and that POST is the action.

The unsubscribe POST is also the List-Unsubscribe-Post target (B.15): it reads no body, cookie
or CSRF token (the signed token in the path is the authority), acts at once, answers 200 with a
page and never redirects. Repeating it is harmless. A forged or foreign token changes nothing
and gets an explanatory page with status 400.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .models import SubscriberStatus
from .subscriptions import ConfirmOutcome
from .web_context import WebContext, visitor
from .web_forms import sign_up_later, too_many

BAD_REQUEST, GONE = 400, 410


def routes(ctx: WebContext) -> list[Route]:
    pages = ctx.pages

    def problem(kind: str, status: int, token: str = "") -> Response:
        """Invalid, expired or used link: say what happened and offer the way forward."""
        renew = ctx.url(f"/confirm/{token}/renew") if token else ""
        return pages.response("link_problem.html", status, kind=kind, renew_url=renew)

    async def confirm_page(request: Request) -> Response:
        token = request.path_params["token"]
        link = ctx.service.read_confirm_link(token)
        if link.subscriber_id is None:
            return problem("invalid", BAD_REQUEST)
        found = await run_in_threadpool(ctx.store.get_subscriber_by_id, link.subscriber_id)
        if found is None:
            return problem("invalid", BAD_REQUEST)
        if found.status is SubscriberStatus.ACTIVE:
            return pages.response("confirmed.html", already=True)
        if link.expired:
            return problem("expired", GONE, token)
        return pages.response(
            "confirm.html", email=found.email, action=ctx.url(f"/confirm/{token}")
        )

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        link = ctx.service.read_confirm_link(token)
        if link.subscriber_id is None:
            return problem("invalid", BAD_REQUEST)
        if link.expired:
            return problem("expired", GONE, token)
        outcome = await run_in_threadpool(ctx.service.confirm, link, visitor(request))
        if outcome is ConfirmOutcome.UNKNOWN:
            return problem("invalid", BAD_REQUEST)
        if outcome is ConfirmOutcome.NO_REQUEST:
            return problem("used", GONE, token)
        return pages.response("confirmed.html", already=outcome is ConfirmOutcome.ALREADY_ACTIVE)

    async def renew(request: Request) -> Response:
        """A fresh confirmation mail for an expired or used link, under the sign-up limits."""
        limited = too_many(ctx, request)
        if limited is not None:
            return limited
        link = ctx.service.read_confirm_link(request.path_params["token"])
        if link.subscriber_id is None:
            return problem("invalid", BAD_REQUEST)
        found = await run_in_threadpool(ctx.store.get_subscriber_by_id, link.subscriber_id)
        if found is None:
            return problem("invalid", BAD_REQUEST)
        later = sign_up_later(ctx, ctx.service.renewal(found, visitor(request)))
        return pages.response("check_inbox.html", email=found.email, background=later)

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = ctx.service.read_unsubscribe_link(token)
        if subscriber_id is None:
            return problem("invalid", BAD_REQUEST)
        found = await run_in_threadpool(ctx.store.get_subscriber_by_id, subscriber_id)
        if found is None or found.status.suppressed:
            return pages.response("unsubscribed.html", email=found.email if found else "")
        return pages.response("unsubscribe.html", email=found.email, action=ctx.url(f"/u/{token}"))

    async def unsubscribe(request: Request) -> Response:
        subscriber_id = ctx.service.read_unsubscribe_link(request.path_params["token"])
        if subscriber_id is None:
            return problem("invalid", BAD_REQUEST)
        found = await run_in_threadpool(ctx.service.unsubscribe, subscriber_id)
        return pages.response("unsubscribed.html", email=found.email if found else "")

    async def unsubscribe_help(request: Request) -> Response:
        """Where the archive's neutral "Unsubscribe" link leads: links are personal."""
        return pages.response("unsubscribe_help.html")

    return [
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/confirm/{token}/renew", renew, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["POST"]),
        Route("/unsubscribe", unsubscribe_help, methods=["GET"]),
    ]
