"""Credentials against a moto server that enforces SigV4 auth: the standard variables, profiles,
the per-call override, and 'access denied' said without a secret."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba
from tests.object_storage.conftest import moto_available, start_moto, stop_moto

pytest.importorskip("boto3", reason="boto3 creates the IAM users (pip install -e '.[test]')")

POLICIES = {
    "rw": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    },
    "ro": {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
        ],
    },
}


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A moto of its own (enforcing auth is server-wide): users rw and ro, a bucket with data."""
    if not moto_available():
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    import boto3

    proc, url = start_moto(tmp_path_factory.mktemp("auth-moto") / "moto.log")
    try:
        setup = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "bootstrap",
            "aws_secret_access_key": "bootstrap",
        }
        iam = boto3.client("iam", **setup)
        keys = {}
        for user, policy in POLICIES.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        boto3.client("s3", **setup).create_bucket(Bucket="locked")
        seed = ba.sync.create_source(
            "s3://locked/a.zarr",
            shape=(8, 8),
            dtype="uint8",
            chunks=(4, 4),
            storage=ba.StorageOptions(endpoint_url=url, anonymous=True),
        )
        seed[...] = EXPECTED
        request = urllib.request.Request(
            url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=5).read()
        yield {"url": url, "keys": keys}
    finally:
        stop_moto(proc)


@pytest.fixture
def locked(aws_env: pytest.MonkeyPatch, auth_moto: dict[str, object]) -> dict[str, object]:
    aws_env.setenv("AWS_ENDPOINT_URL", str(auth_moto["url"]))
    return auth_moto


def use_keys(env: pytest.MonkeyPatch, key_id: str, secret: str) -> None:
    env.setenv("AWS_ACCESS_KEY_ID", key_id)
    env.setenv("AWS_SECRET_ACCESS_KEY", secret)


EXPECTED = np.arange(64, dtype=np.uint8).reshape(8, 8)


async def test_environment_keys_read_and_write(locked, aws_env):
    use_keys(aws_env, *locked["keys"]["rw"])
    src = await ba.open_source("s3://locked/a.zarr")
    np.testing.assert_array_equal(await src.read(), EXPECTED)
    out = await ba.create_source("s3://locked/b.zarr", shape=(8, 8), dtype="uint8", chunks=(4, 4))
    await ba.copy(src, out)
    np.testing.assert_array_equal(await out.read(), EXPECTED)


@pytest.mark.parametrize("wrong", ["secret", "key id"])
async def test_wrong_credentials_say_access_denied_with_the_key_id_start_only(
    locked, aws_env, wrong
):
    key_id, secret = locked["keys"]["rw"]
    if wrong == "secret":
        use_keys(aws_env, key_id, "not-the-secret-value")
        code = "SignatureDoesNotMatch"
    else:
        key_id = "AKIAUNKNOWNKEYID0000"
        use_keys(aws_env, key_id, secret)
        code = "InvalidAccessKeyId"
    started = time.monotonic()
    with pytest.raises(ba.StorageError, match="access denied") as caught:
        await ba.open_source("s3://locked/a.zarr")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert code in message and key_id[:6] in message and key_id not in message
    assert secret not in message and "not-the-secret-value" not in message
    assert "tensorstore_spec" not in message and len(message) < 600


async def test_a_read_only_user_cannot_create(locked, aws_env):
    use_keys(aws_env, *locked["keys"]["ro"])
    np.testing.assert_array_equal(
        await (await ba.open_source("s3://locked/a.zarr")).read(), EXPECTED
    )
    with pytest.raises(ba.StorageError, match="access denied.*AccessDenied"):
        await ba.create_source("s3://locked/c.zarr", shape=(8,), dtype="uint8", chunks=(4,))


def write_credentials(path: Path, profiles: dict[str, tuple[str, str]]) -> None:
    path.write_text(
        "".join(
            f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n"
            for name, (key, secret) in profiles.items()
        )
    )


async def test_profiles_from_the_credentials_file(locked, aws_env, tmp_path):
    credentials = tmp_path / "credentials"
    write_credentials(credentials, {"default": ("AKIAWRONG", "wrong"), "lab": locked["keys"]["rw"]})
    aws_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    with pytest.raises(ba.StorageError, match="profile 'default'"):
        await ba.open_source("s3://locked/a.zarr")  # no AWS_PROFILE: the default profile
    aws_env.setenv("AWS_PROFILE", "lab")
    src = await ba.open_source("s3://locked/a.zarr")
    np.testing.assert_array_equal(await src.read(), EXPECTED)
    aws_env.delenv("AWS_PROFILE")
    use_keys(aws_env, "AKIAWRONGENV", "wrong")  # a profile named per call wins over env keys
    lab = await ba.open_source("s3://locked/a.zarr", storage=ba.StorageOptions(profile="lab"))
    np.testing.assert_array_equal(await lab.read(), EXPECTED)
    assert lab.to_spec().to_json()["params"]["storage"]["profile"] == "lab"
    again = await ba.from_spec(lab.to_spec())  # reopened with this process's credentials
    np.testing.assert_array_equal(await again.read(), EXPECTED)
