#!/usr/bin/env python3
"""Seed, lock down and check the moto KMS/IAM server used by the tests.

Called by scripts/stack; usable by hand too:

  seed_kms.py seed    --endpoint URL   create keys, aliases, IAM users (auth must be off);
                                       prints `export NAME='value'` lines on stdout
  seed_kms.py enforce --endpoint URL   turn IAM enforcement on (POST /moto-api/reset-auth)
  seed_kms.py verify  --endpoint URL   check allowed user can Encrypt/Decrypt, the
                                       denied user gets HTTP 403 and the IAM administrator (if
                                       seeded) answers; credentials and key ARN come from the
                                       TEST_* environment variables
  seed_kms.py user    --endpoint URL --name NAME
                                       create IAM user NAME whose only policy is the JSON
                                       policy document on stdin (with IAM enforced: as the
                                       seeded IAM administrator, TEST_AWS_IAM_ADMIN_*); prints
                                       {"accessKeyId": ..., "secretAccessKey": ...}

Exit status is non-zero with a message on stderr when anything is not as expected.
"""

import argparse
import json
import os
import pathlib
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

IAM_ADMIN_USER = "proxy-test-iam-admin"

# The seeded service identity gets the policy the project ships (deploy/iam-policy.json), so the
# whole suite runs with exactly its actions. Only its Resource is widened to "*": moto's IAM
# evaluation for KMS only ever checks against resource "*", so a key-ARN resource would never
# match (test/deploy/iam-policy.test.ts states what that leaves unproven, and checks the ARNs).
SHIPPED_POLICY = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "iam-policy.json"


def service_policy():
    shipped = json.loads(SHIPPED_POLICY.read_text())
    return {**shipped, "Statement": [{**st, "Resource": "*"} for st in shipped["Statement"]]}


# Only for tests that need identities of their own (e.g. one holding exactly a given policy):
# creating IAM users once IAM is enforced needs an identity allowed to.
IAM_ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}],
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


def create_user(iam, name, policy):
    """An IAM user with `policy` (a dict) as its only, inline policy; returns its access key."""
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="proxy-kms", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


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

    policies = {SERVICE_USER: service_policy(), DENIED_USER: None, IAM_ADMIN_USER: IAM_ADMIN_POLICY}
    creds = {user: create_user(iam, user, policy) for user, policy in policies.items()}

    out = {
        "TEST_KMS_KEY_ARN": arns[PRIMARY_ALIAS],
        "TEST_KMS_KEY_ARN_2": arns[SECONDARY_ALIAS],
        "TEST_KMS_ALIAS": PRIMARY_ALIAS,
        "TEST_AWS_ACCESS_KEY_ID": creds[SERVICE_USER][0],
        "TEST_AWS_SECRET_ACCESS_KEY": creds[SERVICE_USER][1],
        "TEST_AWS_DENIED_ACCESS_KEY_ID": creds[DENIED_USER][0],
        "TEST_AWS_DENIED_SECRET_ACCESS_KEY": creds[DENIED_USER][1],
        "TEST_AWS_IAM_ADMIN_ACCESS_KEY_ID": creds[IAM_ADMIN_USER][0],
        "TEST_AWS_IAM_ADMIN_SECRET_ACCESS_KEY": creds[IAM_ADMIN_USER][1],
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

    # A stack seeded before the IAM administrator existed stays healthy (restarting a stack others
    # use would break their runs); only the tests that create identities need it, and say so.
    admin = (os.environ.get("TEST_AWS_IAM_ADMIN_ACCESS_KEY_ID"), os.environ.get("TEST_AWS_IAM_ADMIN_SECRET_ACCESS_KEY"))
    if all(admin):
        try:
            client("iam", endpoint, *admin).get_user(UserName=SERVICE_USER)
        except ClientError as e:
            fail(f"the IAM administrator cannot read IAM: {e}")


def user(endpoint, name):
    try:
        admin = (os.environ["TEST_AWS_IAM_ADMIN_ACCESS_KEY_ID"], os.environ["TEST_AWS_IAM_ADMIN_SECRET_ACCESS_KEY"])
    except KeyError as e:
        fail(f"user needs {e.args[0]} in the environment (a stack seeded by an older seed_kms.py: restart it)")
    policy = json.load(sys.stdin)
    try:
        key_id, secret = create_user(client("iam", endpoint, *admin), name, policy)
    except ClientError as e:
        fail(f"could not create IAM user {name}: {e}")
    json.dump({"accessKeyId": key_id, "secretAccessKey": secret}, sys.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["seed", "enforce", "verify", "user"])
    p.add_argument("--endpoint", required=True, help="moto URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--name", help="user: the IAM user name to create")
    args = p.parse_args()
    if args.action == "user":
        if not args.name:
            p.error("user needs --name")
        user(args.endpoint, args.name)
    else:
        {"seed": seed, "enforce": enforce, "verify": verify}[args.action](args.endpoint)


if __name__ == "__main__":
    main()
