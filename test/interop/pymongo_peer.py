"""A real MongoDB CSFLE client (pymongo + libmongocrypt) for the interop tests.

Reads one JSON request on stdin, writes one JSON answer on stdout. Values travel as canonical
Extended JSON, ciphertexts as base64 of the subtype-6 payload.
  {"op": "createKey", "uri", "keyVault", "localKey", "keyAltNames": [...]}  -> {"id": "<uuid>"}
  {"op": "encrypt", ..., "items": [{"value", "algorithm", "keyId"|"keyAltName"}]} -> {"items": [b64]}
  {"op": "decrypt", ..., "items": [b64]} -> {"items": [value]}
  {"op": "readAll", ..., "db", "coll"} -> {"items": [document]}   (automatic decryption)
  {"op": "insertExplicit", ..., "db", "coll", "items": [{"document", "encrypt": {field: {"algorithm", "keyAltName"}}}]}

Providers: "local" when "localKey" is given (null leaves it out); "aws" when "aws" is given:
  "aws": {"accessKeyId", "secretAccessKey", "caFile", "tlsEndpoint": "127.0.0.1:PORT"}
KMS is reached over TLS, trusting only the CA in "caFile" (kms_tls_options). A data key naming no
endpoint makes libmongocrypt call the region's public host, kms.<region>.amazonaws.com:443: the
connection to that host (and only that one) is opened to "tlsEndpoint" instead, through pymongo's
kms_connect_callback, and TLS is still verified against the public host name. Every answer carries
"kmsHosts": the host:port libmongocrypt asked to reach, in order.
  {"op": "createKey", ..., "provider": "aws", "masterKey": {"region", "key", "endpoint"?}} -> {"id"}
"""
import base64
import json
import re
import socket
import sys
import uuid

import pymongo
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo.encryption import Algorithm, ClientEncryption
from pymongo.encryption_options import AutoEncryptionOpts

ALGORITHMS = {
    "deterministic": Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Deterministic,
    "random": Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random,
}


def kms_settings(req, kms_hosts):
    """kms_providers, and the keyword arguments that take KMS over TLS to the test's endpoint."""
    providers = {}
    if req.get("localKey"):
        providers["local"] = {"key": base64.b64decode(req["localKey"])}
    aws = req.get("aws")
    if not aws:
        return providers, {}
    providers["aws"] = {"accessKeyId": aws["accessKeyId"], "secretAccessKey": aws["secretAccessKey"]}
    endpoint_host, endpoint_port = aws["tlsEndpoint"].rsplit(":", 1)

    def connect(ctx):
        kms_hosts.append(f"{ctx.host}:{ctx.port}")
        if re.fullmatch(r"kms\.[a-z0-9-]+\.amazonaws\.com", ctx.host) and ctx.port == 443:
            address = (endpoint_host, int(endpoint_port))
        else:
            address = (ctx.host, ctx.port)
        return socket.create_connection(address, timeout=ctx.timeout)

    return providers, {"kms_tls_options": {"aws": {"tlsCAFile": aws["caFile"]}}, "kms_connect_callback": connect}


def main():
    req = json.load(sys.stdin)
    client = pymongo.MongoClient(req["uri"])
    opts = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)
    kms_hosts = []
    providers, tls = kms_settings(req, kms_hosts)
    ce = ClientEncryption(providers, req["keyVault"], client, opts, **tls)
    try:
        if req["op"] == "createKey":
            key_id = ce.create_data_key(req.get("provider", "local"), master_key=req.get("masterKey"), key_alt_names=req.get("keyAltNames"))
            out = {"id": str(key_id.as_uuid())}
        elif req["op"] == "encrypt":
            items = []
            for item in req["items"]:
                value = json_util.loads(json.dumps({"v": item["value"]}))["v"]
                kwargs = {"key_alt_name": item["keyAltName"]} if "keyAltName" in item else {"key_id": Binary.from_uuid(uuid.UUID(item["keyId"]))}
                items.append(base64.b64encode(bytes(ce.encrypt(value, ALGORITHMS[item["algorithm"]], **kwargs))).decode())
            out = {"items": items}
        elif req["op"] == "decrypt":
            values = [ce.decrypt(Binary(base64.b64decode(b64), 6)) for b64 in req["items"]]
            out = {"items": [json.loads(json_util.dumps({"v": v}, json_options=CANONICAL_JSON_OPTIONS))["v"] for v in values]}
        elif req["op"] == "readAll":
            # Automatic decryption of whatever is read; bypass_auto_encryption needs no mongocryptd.
            opts = AutoEncryptionOpts(providers, req["keyVault"], bypass_auto_encryption=True, **tls)
            auto = pymongo.MongoClient(req["uri"], auto_encryption_opts=opts)
            try:
                docs = list(auto[req["db"]][req["coll"]].find({}).sort("_id", 1))
            finally:
                auto.close()
            out = {"items": [json.loads(json_util.dumps(d, json_options=CANONICAL_JSON_OPTIONS)) for d in docs]}
        elif req["op"] == "insertExplicit":
            coll = client[req["db"]][req["coll"]]
            ids = []
            for item in req["items"]:
                doc = json_util.loads(json.dumps(item["document"]))
                for field, how in item["encrypt"].items():
                    doc[field] = ce.encrypt(doc[field], ALGORITHMS[how["algorithm"]], key_alt_name=how["keyAltName"])
                ids.append(str(coll.insert_one(doc).inserted_id))
            out = {"items": ids}
        else:
            raise SystemExit(f"unknown op {req['op']}")
    finally:
        ce.close()
        client.close()
    json.dump({**out, "kmsHosts": kms_hosts}, sys.stdout)


if __name__ == "__main__":
    main()
