"""The links in our mail: confirm (double opt-in) and unsubscribe, including RFC 8058 one-click.

GET and HEAD only ever show a page with a button: corporate mail scanners fetch every link in
a message, and a GET that confirmed or unsubscribed would act on their behalf (RFC 9110 9.2.1:
GET is safe; RFC 8058 1: anti-spam software fetches the URIs in a message). The button POSTs
back to the same URL, and that POST is the action.

The unsubscribe POST is also the List-Unsubscribe-Post target (RFC 8058 3.1): it reads no body,
cookie or CSRF token (the signed token in the path is the authority), acts at once, answers 200
with a page and never redirects. Repeating it is harmless. A forged or foreign token changes nothing
and gets an explanatory page with status 400; so does a genuine token that names nobody we know
(an erased subscriber, or an old-format id out of range).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.models import Frequency, Subscriber, SubscriberStatus
from newsletter.subscriptions import ConfirmResult
from newsletter.tokens import SubscriberRef
from newsletter.web.context import WebContext, visitor
from newsletter.web.forms import queued, too_many
from newsletter.web.signups import SignupJob

BAD_REQUEST, GONE = 400, 410


def routes(ctx: WebContext) -> list[Route]:
    pages, service = ctx.pages, ctx.service

    def problem(kind: str, status: int, token: str = "") -> Response:
        """Invalid, expired or used link: say what happened and offer the way forward."""
        renew = ctx.url(f"/confirm/{token}/renew") if token else ""
        return pages.response("link_problem.html", status, kind=kind, renew_url=renew)

    async def find(ref: SubscriberRef | None) -> Subscriber | None:
        return None if ref is None else await run_in_threadpool(service.find, ref)

    async def confirm_page(request: Request) -> Response:
        token = request.path_params["token"]
        link = service.read_confirm_link(token)
        found = await find(link.subscriber)
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
        link = service.read_confirm_link(token)
        if link.subscriber is None:
            return problem("invalid", BAD_REQUEST)
        if link.expired:
            return problem("expired", GONE, token)
        outcome = await run_in_threadpool(service.confirm, link, visitor(request))
        if outcome is ConfirmResult.UNKNOWN:
            return problem("invalid", BAD_REQUEST)
        if outcome is ConfirmResult.NO_REQUEST:
            return problem("used", GONE, token)
        return pages.response("confirmed.html", already=outcome is ConfirmResult.ALREADY_ACTIVE)

    async def renew(request: Request) -> Response:
        """A fresh confirmation mail for an expired or used link, under the sign-up limits."""
        link = service.read_confirm_link(request.path_params["token"])
        if link.subscriber is None:
            return problem("invalid", BAD_REQUEST)
        limited = await too_many(ctx, request)
        if limited is not None:
            return limited
        found = await find(link.subscriber)
        if found is None:
            return problem("invalid", BAD_REQUEST)
        return queued(ctx, SignupJob(service.renewal(found, visitor(request))))

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        ref = service.read_unsubscribe_link(token)
        if ref is None:
            return problem("invalid", BAD_REQUEST)
        found = await find(ref)
        if found is None or found.status.suppressed:
            return pages.response("unsubscribed.html", email=found.email if found else "")
        current = await run_in_threadpool(service.store.frequency_of, found.id)
        return pages.response(
            "unsubscribe.html",
            email=found.email,
            action=ctx.url(f"/u/{token}"),
            preferences_action=ctx.url(f"/preferences/{token}"),
            current=(current or Frequency.DAILY).value,
        )

    async def unsubscribe(request: Request) -> Response:
        ref = service.read_unsubscribe_link(request.path_params["token"])
        if ref is None:
            return problem("invalid", BAD_REQUEST)
        found = await run_in_threadpool(service.unsubscribe, ref)
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
