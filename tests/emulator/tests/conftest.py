"""Fixtures: a prodemu server (started here on a free 127.0.0.1 port, or the one in
PRODACCESS_AWS_ENDPOINT) and a fresh AWS account per test (sts:AssumeRole into
a random 12-digit account id; moto isolates state per account)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config

EMU_DIR = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
BOOT = {"aws_access_key_id": "AKIABOOTSTRAP0000000", "aws_secret_access_key": "bootstrap-secret"}
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    env = os.environ.get("PRODACCESS_AWS_ENDPOINT")
    if env:
        yield env.rstrip("/")
        return
    port = _free_port()
    log = open(os.environ.get("PRODEMU_TEST_LOG", "/tmp/prodemu-test-%d.log" % port), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prodemu", "--host", "127.0.0.1", "--port", str(port)],
        cwd=str(EMU_DIR),
        env={**os.environ, "PYTHONPATH": str(EMU_DIR)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_prodemu/health", timeout=1).read()
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("prodemu exited early; see log")
            time.sleep(0.1)
    else:
        proc.terminate()
        raise RuntimeError("prodemu did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


class Control:
    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_prodemu/" + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")


@pytest.fixture(scope="session")
def control(endpoint: str) -> Control:
    return Control(endpoint)


class Account:
    def __init__(self, endpoint: str, account_id: str, creds: dict[str, str]):
        self.endpoint = endpoint
        self.id = account_id
        self.creds = creds

    def client(self, service: str, config: Config | None = None, **creds: Any) -> Any:
        c = creds or self.creds
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, config=config or NO_RETRY, **c)


def new_account(endpoint: str) -> Account:
    account_id = "".join(random.choice("0123456789") for _ in range(12))
    if account_id[0] == "0":
        account_id = "1" + account_id[1:]
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint, **BOOT)
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/x", RoleSessionName="prodemu-test")["Credentials"]
    creds = {
        "aws_access_key_id": c["AccessKeyId"],
        "aws_secret_access_key": c["SecretAccessKey"],
        "aws_session_token": c["SessionToken"],
    }
    return Account(endpoint, account_id, creds)


@pytest.fixture
def acct(endpoint: str) -> Account:
    return new_account(endpoint)


@pytest.fixture
def other_acct(endpoint: str) -> Account:
    return new_account(endpoint)


@pytest.fixture
def enforcement(control: Control) -> Iterator[None]:
    before = control.call("GET", "enforcement")["enabled"]
    control.call("POST", "enforcement", {"enabled": True})
    yield
    control.call("POST", "enforcement", {"enabled": before})
