#!/usr/bin/env python3
"""Seed, lock down and check the moto KMS/IAM server used by the tests.

Called by scripts/stack; usable by hand too:

  seed_kms.py seed    --endpoint URL   create keys, aliases, IAM users (auth must be off);
                                       prints `export NAME='value'` lines on stdout
  seed_kms.py enforce --endpoint URL   turn IAM enforcement on (POST /moto-api/reset-auth)
  seed_kms.py verify  --endpoint URL   check allowed user can Encrypt/Decrypt and the
                                       denied user gets HTTP 403; credentials and key ARN
                                       come from the TEST_* environment variables

Exit status is non-zero with a message on stderr when anything is not as expected.
"""

import argparse
import json
import os
import shlex
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
PRIMARY_ALIAS = "alias/proxy-test-primary"
SECONDARY_ALIAS = "alias/proxy-test-secondary"
SERVICE_USER = "proxy-service"
DENIED_USER = "proxy-denied"

SERVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "kms:DescribeKey",
            ],
            # moto's IAM evaluation for KMS only ever checks against resource "*",
            # so a key-ARN resource here would never match.
            "Resource": "*",
        }
    ],
}

# No retries: a 403 must surface at once, and a dead server should not be hammered.
BOTO_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=15)


def client(service, endpoint, key_id="seed", secret="seed"):
    # While auth is off moto accepts any credentials; pass them explicitly so that
    # whatever AWS_* variables or ~/.aws files the caller has are never used.
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=BOTO_CONFIG,
    )


def fail(msg):
    print(f"seed_kms: {msg}", file=sys.stderr)
    sys.exit(1)


def seed(endpoint):
    kms = client("kms", endpoint)
    iam = client("iam", endpoint)

    arns = {}
    for alias in (PRIMARY_ALIAS, SECONDARY_ALIAS):
        key = kms.create_key(
            Description=f"proxy test key ({alias})",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        arns[alias] = key["Arn"]

    creds = {}
    for user in (SERVICE_USER, DENIED_USER):
        iam.create_user(UserName=user)
        if user == SERVICE_USER:
            iam.put_user_policy(
                UserName=user,
                PolicyName="proxy-kms",
                PolicyDocument=json.dumps(SERVICE_POLICY),
            )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        creds[user] = (key["AccessKeyId"], key["SecretAccessKey"])

    out = {
        "TEST_KMS_KEY_ARN": arns[PRIMARY_ALIAS],
        "TEST_KMS_KEY_ARN_2": arns[SECONDARY_ALIAS],
        "TEST_KMS_ALIAS": PRIMARY_ALIAS,
        "TEST_AWS_ACCESS_KEY_ID": creds[SERVICE_USER][0],
        "TEST_AWS_SECRET_ACCESS_KEY": creds[SERVICE_USER][1],
        "TEST_AWS_DENIED_ACCESS_KEY_ID": creds[DENIED_USER][0],
        "TEST_AWS_DENIED_SECRET_ACCESS_KEY": creds[DENIED_USER][1],
    }
    for name, value in out.items():
        print(f"export {name}={shlex.quote(value)}")


def enforce(endpoint):
    # The body is moto's INITIAL_NO_AUTH_ACTION_COUNT: how many further requests
    # are let through unauthenticated before IAM checks start. 0 = enforce now.
    req = urllib.request.Request(
        endpoint.rstrip("/") + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "ok":
        fail(f"reset-auth answered {body!r}")


def verify(endpoint):
    try:
        key_arn = os.environ["TEST_KMS_KEY_ARN"]
        ok_id = os.environ["TEST_AWS_ACCESS_KEY_ID"]
        ok_secret = os.environ["TEST_AWS_SECRET_ACCESS_KEY"]
        bad_id = os.environ["TEST_AWS_DENIED_ACCESS_KEY_ID"]
        bad_secret = os.environ["TEST_AWS_DENIED_SECRET_ACCESS_KEY"]
    except KeyError as e:
        fail(f"verify needs {e.args[0]} in the environment")

    plaintext = b"stack self-check"
    ok = client("kms", endpoint, ok_id, ok_secret)
    try:
        blob = ok.encrypt(KeyId=key_arn, Plaintext=plaintext)["CiphertextBlob"]
        back = ok.decrypt(CiphertextBlob=blob)["Plaintext"]
    except ClientError as e:
        fail(f"service user could not Encrypt/Decrypt with {key_arn}: {e}")
    if back != plaintext:
        fail("Decrypt did not return the plaintext")

    bad = client("kms", endpoint, bad_id, bad_secret)
    try:
        bad.encrypt(KeyId=key_arn, Plaintext=plaintext)
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 403:
            fail(f"denied user got HTTP {status}, expected 403: {e}")
    else:
        fail("denied user was allowed to Encrypt: IAM is not enforced")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["seed", "enforce", "verify"])
    p.add_argument("--endpoint", required=True, help="moto URL, e.g. http://127.0.0.1:5000")
    args = p.parse_args()
    {"seed": seed, "enforce": enforce, "verify": verify}[args.action](args.endpoint)


if __name__ == "__main__":
    main()
