"""Plain ``smtplib`` email: any SMTP relay, with no TLS, STARTTLS or implicit TLS, and optional login.

(Dagster's built-in email sensor insists on TLS and a login, so it cannot use a plain local relay.)
Errors never carry the password: they name the host, the port and what went wrong.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType
from typing import Literal

Security = Literal["none", "starttls", "ssl"]
SECURITIES: tuple[Security, ...] = ("none", "starttls", "ssl")
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "ssl": 465}


class MailConfigError(ValueError):
    """The SMTP settings are unusable; the message names the setting."""


class MailError(RuntimeError):
    """The SMTP server could not be reached or refused the message."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""
    port: int = 0
    security: str = "none"
    username: str = ""
    password: str = ""
    sender: str = "marketcov@localhost"
    recipients: tuple[str, ...] = ()
    timeout: float = 10.0

    @property
    def configured(self) -> bool:
        """Email is on when a host and at least one recipient are set."""
        return bool(self.host and self.recipients)

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS.get(self.security, 25)

    def validate(self) -> None:
        if self.security not in SECURITIES:
            raise MailConfigError(f"SMTP security {self.security!r} is not one of {list(SECURITIES)}")
        if not 0 <= self.port <= 65535:
            raise MailConfigError(f"SMTP port {self.port} is out of range")
        for address in (self.sender, *self.recipients):
            if "@" not in address or any(c.isspace() for c in address):
                raise MailConfigError(f"{address!r} is not an email address")
        if self.password and not self.username:
            raise MailConfigError("an SMTP password is set without a user name")

    def describe(self) -> str:
        return f"{self.host}:{self.effective_port} ({self.security})"


def parse_recipients(value: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in value.replace(";", ",").split(",") if a.strip())


class Mailer:
    """One SMTP connection, opened on the first ``send`` and reused until ``close``."""

    def __init__(self, settings: SmtpSettings) -> None:
        settings.validate()
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            smtp: smtplib.SMTP
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.effective_port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.effective_port, timeout=s.timeout)
                if s.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as e:
            raise MailError(f"SMTP {s.describe()} refused the login of {s.username!r}: {e.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as e:
            raise MailError(f"SMTP {s.describe()} unreachable: {type(e).__name__}: {e}") from None
        return smtp

    def send(self, subject: str, body: str, message_id: str) -> None:
        """Send one plain-text message to every recipient. ``message_id`` is stable per alert, so
        a mail client can tell a rare redelivery (a crash between sending and recording) apart."""
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.recipients)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id
        msg.set_content(body)
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            raise MailError(f"SMTP {s.describe()} did not accept the message: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None


# the environment variables the email resource reads (see docs/configuration.md)
SMTP_HOST_ENV = "MARKETCOV_SMTP_HOST"
SMTP_PORT_ENV = "MARKETCOV_SMTP_PORT"
SMTP_SECURITY_ENV = "MARKETCOV_SMTP_SECURITY"
SMTP_USER_ENV = "MARKETCOV_SMTP_USER"
SMTP_PASSWORD_ENV = "MARKETCOV_SMTP_PASSWORD"
ALERT_FROM_ENV = "MARKETCOV_ALERT_FROM"
ALERT_TO_ENV = "MARKETCOV_ALERT_TO"
ALERT_SUBJECT_PREFIX_ENV = "MARKETCOV_ALERT_SUBJECT_PREFIX"
UI_URL_ENV = "MARKETCOV_UI_URL"
