"""A notifier configured wrong does not start, and says why: an SMTP server that refuses
connections (the channel's check runs in the app's lifespan), a message template missing
(Messages.check), GRIDCALL_SMS_TEMPLATES naming a kind gridcall does not send. (A template
code the provider does not know fails its deliveries: test_notifier_sms.py.)"""

import shutil
from functools import partial
from pathlib import Path

import pytest
from jinja2 import FileSystemLoader
from pydantic import SecretStr

import notifier.bootstrap
from notifier.channels import NotReady
from notifier.messages import MessageError, Messages
from services.delivery.signing import new_secret
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.notices import sms_codes
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

TEMPLATES = Path(notifier.bootstrap.__file__).parent / "templates"


async def test_an_smtp_server_that_refuses_connections_fails_start_up(embedded_settings):
    port = free_port()  # nothing listens there
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none", "smtp_from": "noreply@lanxi.gov.cn"}
    with pytest.raises(NotReady, match=f"SMTP server 127.0.0.1:{port}"):
        async with running(embedded_settings, ["notifier"], clock=frozen_clock(), **smtp):
            pass


async def test_a_missing_template_fails_start_up(embedded_settings, tmp_path, monkeypatch):
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "en" / "resident" / "case.visit.txt").unlink()
    loader = FileSystemLoader(tmp_path / "templates")
    monkeypatch.setattr(notifier.bootstrap, "Messages", partial(Messages, loader=loader))
    with pytest.raises(MessageError, match="no template en/resident/case.visit.txt"):
        async with running(embedded_settings, ["notifier"], clock=frozen_clock()):
            pass


async def test_sms_templates_naming_an_unknown_kind_fail_start_up(embedded_settings):
    sms = {
        "sms_url": f"http://127.0.0.1:{free_port()}/sms/send",
        "sms_access_key": "key",
        "sms_access_secret": SecretStr("secret"),
        "sms_sign_name": "兰溪区12345",
        "sms_receipt_secret": SecretStr(new_secret()),
        "sms_templates": sms_codes() | {"case.teleported": "SMS_TELEPORTED"},
    }
    with pytest.raises(ValueError, match="GRIDCALL_SMS_TEMPLATES names kinds gridcall does not send: case.teleported"):
        async with running(embedded_settings, ["notifier"], clock=frozen_clock(), **sms):
            pass
