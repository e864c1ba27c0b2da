"""The preferences page: how often a reader gets mail, changed without a login.

Reached by the signed link in every issue (`/preferences/<the reader's unsubscribe token>`), like
the unsubscribe page: GET shows the choice, only a POST changes it (mail scanners fetch every
link), and the token in the path is the authority. With `[weekly]` off there is nothing to
choose: the page says so and offers the unsubscribe link.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.models import Frequency
from newsletter.web.context import WebContext
from newsletter.web.forms import read_form

BAD_REQUEST = 400


def routes(ctx: WebContext) -> list[Route]:
    pages, service = ctx.pages, ctx.service

    async def page(request: Request, saved: bool = False) -> Response:
        token = request.path_params["token"]
        ref = service.read_unsubscribe_link(token)
        found = None if ref is None else await run_in_threadpool(service.find, ref)
        if found is None or found.status.suppressed:
            return pages.response("link_problem.html", BAD_REQUEST, kind="invalid", renew_url="")
        current = await run_in_threadpool(service.store.frequency_of, found.id)
        return pages.response(
            "preferences.html",
            email=found.email,
            current=(current or Frequency.DAILY).value,
            action=ctx.url(f"/preferences/{token}"),
            unsubscribe_url=ctx.url(f"/u/{token}"),
            saved=saved,
        )

    async def show(request: Request) -> Response:
        return await page(request)

    async def change(request: Request) -> Response:
        form = await read_form(request)
        value = form.get("frequency", "")
        choices = [frequency.value for frequency in Frequency]
        if not ctx.settings.weekly.enabled or not isinstance(value, str) or value not in choices:
            reason = "That is not one of the choices on this page."
            return pages.response("bad_request.html", BAD_REQUEST, reason=reason, code=BAD_REQUEST)
        ref = service.read_unsubscribe_link(request.path_params["token"])
        if ref is None or not await run_in_threadpool(service.set_frequency, ref, Frequency(value)):
            return pages.response("link_problem.html", BAD_REQUEST, kind="invalid", renew_url="")
        return await page(request, saved=True)

    return [
        Route("/preferences/{token}", show, methods=["GET"]),
        Route("/preferences/{token}", change, methods=["POST"]),
    ]
