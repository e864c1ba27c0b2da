"""`newsletter check`: is this configuration ready for its first real send?

Each check answers one question an operator would otherwise learn from a failed or harmful
send: can we log in to the relay, can links be signed, are they https, is the postal address
there, does the DKIM key match DNS, do the templates render, does the busiest day fit under
Gmail's clipping limit. A check that cannot be made here (DNS unreachable, DKIM not configured)
is skipped with a note rather than failed, so the command stays usable offline.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import dkim

from newsletter.clock import Clock
from newsletter.compose import MessageTemplate, qp_encode_line
from newsletter.config.settings import OLD_SECRETS_ENV, SECRET_ENV, SMTP_PASSWORD_ENV, Settings
from newsletter.errors import DeliveryError, RenderError
from newsletter.mail.dkim import DkimError, DkimKey, DkimSigner
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import Article, Digest, Recipient
from newsletter.render import MAX_HTML_BYTES, DigestRenderer

DNS_TIMEOUT = 5.0
# Gmail clips a message whose HTML part, as sent, is larger (measured by others; Google
# documents no figure).
CLIP_BYTES = 102_000
SAMPLE_DAY = date(2026, 11, 28)
SAMPLE_READER = Recipient(0, "reader@example.com", "https://example.com/u/sample-token-0000000")


class Status(enum.StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<5} {self.name:<16} {self.detail}"


class DnsUnavailable(Exception):
    """DNS gave no answer at all (offline, timeout, SERVFAIL): nothing can be concluded."""


TxtResolver = Callable[[str], list[bytes]]


def dns_txt(name: str) -> list[bytes]:
    """TXT strings at `name`, each record's strings joined; [] when nothing is published."""
    import dns.exception
    import dns.rdtypes.ANY.TXT
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=DNS_TIMEOUT)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise DnsUnavailable(str(exc) or type(exc).__name__) from exc
    txt = dns.rdtypes.ANY.TXT.TXT
    return [b"".join(record.strings) for record in answer if isinstance(record, txt)]


def run_checks(
    settings: Settings,
    clock: Clock,
    resolve_txt: TxtResolver = dns_txt,
    tls_context: ssl.SSLContext | None = None,
) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    return [
        check_smtp(settings, tls_context),
        check_token_key(settings),
        check_base_url(settings),
        check_postal_address(settings),
        *check_dkim(settings, clock, resolve_txt),
        *check_digest(settings),
    ]


def check_smtp(settings: Settings, tls_context: ssl.SSLContext | None = None) -> Check:
    smtp = settings.smtp
    where = f"{smtp.host}:{smtp.port} ({smtp.tls})"
    if smtp.username and not smtp.password:
        detail = f"{where}: smtp.username is set but {SMTP_PASSWORD_ENV} is not"
        return Check("smtp", Status.FAIL, detail)
    try:
        offers_smtputf8 = asyncio.run(_connect(SmtpTransport(smtp, tls_context)))
    except DeliveryError as exc:
        return Check("smtp", Status.FAIL, f"{where}: {exc}")
    login = f"login as {smtp.username} accepted" if smtp.username else "no login configured"
    if smtp.smtputf8 and not offers_smtputf8:
        detail = (
            f"{where} reachable, {login}, but smtp.smtputf8 = true and the relay does not offer "
            "SMTPUTF8: every reader with a non-ASCII address would fail; use a relay that "
            "offers it or set smtputf8 = false"
        )
        return Check("smtp", Status.FAIL, detail)
    return Check("smtp", Status.OK, f"{where} reachable, {login}")


async def _connect(transport: SmtpTransport) -> bool:
    """Open a session and close it; whether the relay offered SMTPUTF8."""
    connection = await transport.connect()  # logs in when a username is configured
    offers_smtputf8 = connection.smtputf8
    await connection.close()
    return offers_smtputf8


def check_token_key(settings: Settings) -> Check:
    if not settings.secret_key_is_set:
        detail = f"{SECRET_ENV} is not set: unsubscribe links cannot be signed"
        return Check("token key", Status.FAIL, detail)
    older = len(settings.secret_keys) - 1
    rotation = f"; {older} older key(s) from {OLD_SECRETS_ENV} still verify" if older else ""
    return Check("token key", Status.OK, f"{SECRET_ENV} is set{rotation}")


def check_base_url(settings: Settings) -> Check:
    if urlsplit(settings.base_url).scheme != "https":
        detail = f"{settings.base_url}: unsubscribe links must be https (RFC 8058)"
        return Check("base url", Status.FAIL, detail)
    return Check("base url", Status.OK, settings.base_url)


def check_postal_address(settings: Settings) -> Check:
    if not settings.postal_address.strip():  # config refuses this; kept for a clear line
        return Check("postal address", Status.FAIL, "newsletter.postal_address is empty")
    return Check("postal address", Status.OK, settings.postal_address)


def check_dkim(settings: Settings, clock: Clock, resolve_txt: TxtResolver) -> list[Check]:
    try:
        signer = DkimSigner.from_config(settings.dkim, clock)
    except DkimError as exc:
        return [Check("dkim", Status.FAIL, str(exc))]
    if signer is None:
        note = "not configured (dkim.selector is empty): unsigned unless the relay signs"
        return [Check("dkim", Status.SKIP, note)]
    return [_self_test(settings, signer)] + [
        _published(key, signer.domain, resolve_txt) for key in signer.keys
    ]


def _self_test(settings: Settings, signer: DkimSigner) -> Check:
    """Sign a sample message and verify it offline against our own public keys."""
    records = {
        f"{key.selector}._domainkey.{signer.domain}.".encode(): key.txt_record().encode()
        for key in signer.keys
    }
    message = signer.sign(sample_message(settings))
    parsed = dkim.DKIM(message)
    for index, key in enumerate(signer.keys):
        if not parsed.verify(idx=index, dnsfunc=lambda name, timeout=5: records.get(name)):
            return Check("dkim", Status.FAIL, f"{key.selector}: a signed sample did not verify")
    if not _aligned(signer.domain, settings.sender_domain):
        detail = f"d={signer.domain} is not aligned with the From domain {settings.sender_domain}"
        return Check("dkim", Status.FAIL, detail + " (DMARC needs the same domain)")
    algorithms = ", ".join(f"{key.algorithm} s={key.selector}" for key in signer.keys)
    return Check("dkim", Status.OK, f"d={signer.domain}: {algorithms}; a signed sample verifies")


def _aligned(signing_domain: str, from_domain: str) -> bool:
    d, f = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return d == f or f.endswith("." + d) or d.endswith("." + f)


def _published(key: DkimKey, domain: str, resolve_txt: TxtResolver) -> Check:
    name = f"{key.selector}._domainkey.{domain}"
    label = f"dkim dns {key.key_type}"
    try:
        records = resolve_txt(name)
    except DnsUnavailable as exc:
        return Check(label, Status.SKIP, f"{name}: DNS not reachable ({exc}); not compared")
    if any(key.matches(record) for record in records):
        return Check(label, Status.OK, f"{name} publishes this key")
    problem = "publishes another key" if records else "has no TXT record"
    return Check(label, Status.FAIL, f"{name} {problem}; publish: {key.txt_record()}")


def check_digest(settings: Settings) -> list[Check]:
    try:
        renderer = DigestRenderer(settings)
        renderer.render(sample_articles(3), SAMPLE_DAY)
    except RenderError as exc:
        skipped = Check("digest size", Status.SKIP, "templates do not render")
        return [Check("templates", Status.FAIL, str(exc)), skipped]
    ok = Check("templates", Status.OK, "HTML and text render with sample data")
    return [ok, _digest_size(renderer, settings.max_articles)]


def _digest_size(renderer: DigestRenderer, count: int) -> Check:
    """The busiest day: max_articles articles with long titles and summaries."""
    try:
        digest = renderer.render(sample_articles(count), SAMPLE_DAY)
    except RenderError as exc:
        return Check("digest size", Status.FAIL, f"{count} sample articles: {exc}")
    raw = len(digest.html.encode("utf-8"))
    sent = sum(len(qp_encode_line(line)) for line in digest.html.splitlines())
    shown = len(digest.article_ids)
    fitted = "" if shown == count else f"; only {shown} fit, lower max_articles"
    detail = (
        f"{count} long sample articles: HTML {raw:,} bytes (limit {MAX_HTML_BYTES:,}), "
        f"{sent:,} as sent (Gmail clips at about {CLIP_BYTES:,}){fitted}"
    )
    good = sent < CLIP_BYTES and shown == count
    return Check("digest size", Status.OK if good else Status.FAIL, detail)


def sample_articles(count: int) -> tuple[Article, ...]:
    """Invented articles at the long end of what feeds give: a busy day, not a typical one."""
    noon = datetime.combine(SAMPLE_DAY, datetime.min.time(), UTC) + timedelta(hours=6)
    summary = (
        "Separation capacity outside China grew again this quarter as two solvent-extraction "
        "circuits reached nameplate output, while magnet makers in Europe and Japan reported "
        "longer qualification times for new oxide suppliers; traders said NdPr and dysprosium "
        "premiums widened after a week of thin liquidity and revised export-licence guidance."
    )
    highlights = tuple(
        f"Point {n}: offtake volumes, price formulas and qualification timelines in one line "
        "long enough to wrap twice in a narrow mail client." for n in range(1, 5)
    )  # fmt: skip
    return tuple(
        Article(
            id=f"sample-{n}",
            title=f"Sample headline {n}: magnet-grade NdPr offtake signed as separation "
            "capacity outside China keeps growing",
            link=f"https://example.com/2026/11/28/sample-article-{n}-with-a-long-descriptive-slug/",
            author="Sample Author",
            published=noon - timedelta(minutes=7 * n),
            summary_html=f"<p>{summary}</p>",
            summary_text=summary,
            content_html=f"<p>{summary}</p>",
            source="Sample Feed",
            highlights=highlights,
        )
        for n in range(1, count + 1)
    )


def sample_message(settings: Settings, digest: Digest | None = None) -> bytes:
    """One reader's complete message built the way a send builds it."""
    if digest is None:
        digest = DigestRenderer(settings).render(sample_articles(3), SAMPLE_DAY)
    now = datetime.combine(SAMPLE_DAY, settings.send_time, settings.timezone)
    template = MessageTemplate.build(digest, settings, SAMPLE_DAY, now)
    return template.render(SAMPLE_READER).data
