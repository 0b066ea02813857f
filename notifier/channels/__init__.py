"""The notifier's channels: each sends one delivery (services/delivery/sender.py) and says what
came of it, never touching the deliveries table. A delivery's body is JSON the notifier writes
in the shape of its channel's model (notifier/channels/bodies.py: `EmailBody`, `SmsBody`, `WebhookBody`, `LogBody`); a
body that is not is a permanent failure, found before anything is sent.

- `EmailSender` (smtp.py): SMTP (aiosmtplib), plain text and HTML, a Message-ID made of the delivery's
  msg_id (so a resend after a crash is recognisably the same message), RFC 8058 one-click
  unsubscribe on residents' mail; `check()` proves the configuration at start-up.
- `SmsSender` (sms.py): an HTTP gateway shaped like the Chinese providers' SendSms (Aliyun's names): a
  template code with parameters under an approved sign name, our msg_id as OutId. A send is
  not idempotent there, so an answer lost after the request left is AMBIGUOUS: the delivery
  waits for its receipt (notifier/receipts.py) instead of being sent again.
- `WebhookSender` (webhook.py): the CloudEvent as written, signed per Standard Webhooks at send time.
- `LogSender` (log.py): development's channel, one log line per message.

`configured(settings, clock)`, here, builds the ones the settings switch on."""

from collections.abc import Mapping
from typing import Any

from notifier.channels.bodies import NotReady
from notifier.channels.log import LogSender
from notifier.channels.sms import SmsSender
from notifier.channels.smtp import EmailSender
from notifier.channels.webhook import WebhookSender
from services.delivery import signing
from services.delivery.sender import Sender
from services.district.clock import Clock
from services.runtime.settings import Settings

__all__ = ["EmailSender", "LogSender", "NotReady", "SmsSender", "WebhookSender", "configured"]


def _secret(value: Any) -> str:
    return str(value.get_secret_value()) if value is not None else ""


def configured(settings: Settings, clock: Clock) -> dict[str, Sender]:
    """The channels by name: log always; email when GRIDCALL_SMTP_HOST is set, SMS when
    GRIDCALL_SMS_URL is, the webhook when GRIDCALL_NOTIFIER_WEBHOOK_URL is. NotReady naming
    the setting that is missing or wrong (settings copied without validation get here too)."""
    found: dict[str, Sender] = {"log": LogSender()}
    if settings.smtp_host:
        if not settings.smtp_from:
            raise NotReady("GRIDCALL_SMTP_FROM must be set when GRIDCALL_SMTP_HOST is")
        found["email"] = EmailSender(
            settings.smtp_host,
            settings.smtp_server_port,
            sender=settings.smtp_from,
            clock=clock,
            tls=settings.smtp_tls,
            user=settings.smtp_user,
            password=_secret(settings.smtp_password) if settings.smtp_user else None,
            timeout=settings.smtp_timeout,
        )
    if settings.sms_url:
        needed: Mapping[str, Any] = {
            "GRIDCALL_SMS_ACCESS_KEY": settings.sms_access_key,
            "GRIDCALL_SMS_ACCESS_SECRET": settings.sms_access_secret,
            "GRIDCALL_SMS_SIGN_NAME": settings.sms_sign_name,
        }
        if missing := [name for name, value in needed.items() if not value]:
            raise NotReady(f"{', '.join(missing)} must be set when GRIDCALL_SMS_URL is")
        found["sms"] = SmsSender(
            settings.sms_url,
            access_key=str(settings.sms_access_key),
            access_secret=_secret(settings.sms_access_secret),
            sign_name=str(settings.sms_sign_name),
            clock=clock,
            timeout=settings.sms_timeout,
        )
    if settings.notifier_webhook_url:
        if settings.notifier_webhook_secret is None:
            raise NotReady("GRIDCALL_NOTIFIER_WEBHOOK_SECRET must be set when GRIDCALL_NOTIFIER_WEBHOOK_URL is")
        try:
            key = signing.key_of(_secret(settings.notifier_webhook_secret))
        except signing.SecretError as exc:
            raise NotReady(f"GRIDCALL_NOTIFIER_WEBHOOK_SECRET: {exc}") from None
        found["webhook"] = WebhookSender(
            settings.notifier_webhook_url, key, clock=clock, timeout=settings.notifier_timeout
        )
    return found
