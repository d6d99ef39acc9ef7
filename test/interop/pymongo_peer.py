"""A real MongoDB CSFLE client (pymongo + libmongocrypt) for the interop tests.

Reads one JSON request on stdin, writes one JSON answer on stdout. Values travel as canonical
Extended JSON, ciphertexts as base64 of the subtype-6 payload.
  {"op": "createKey", "uri", "keyVault", "localKey", "keyAltNames": [...]}  -> {"id": "<uuid>"}
  {"op": "encrypt", ..., "items": [{"value", "algorithm", "keyId"|"keyAltName"}]} -> {"items": [b64]}
  {"op": "decrypt", ..., "items": [b64]} -> {"items": [value]}
  {"op": "readAll", ..., "db", "coll"} -> {"items": [document]}   (automatic decryption)
  {"op": "insertExplicit", ..., "db", "coll", "items": [{"document", "encrypt": {field: {"algorithm", "keyAltName"}}}]}
"""
import base64
import json
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


def main():
    req = json.load(sys.stdin)
    client = pymongo.MongoClient(req["uri"])
    opts = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)
    ce = ClientEncryption({"local": {"key": base64.b64decode(req["localKey"])}}, req["keyVault"], client, opts)
    try:
        if req["op"] == "createKey":
            key_id = ce.create_data_key("local", key_alt_names=req.get("keyAltNames"))
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
            opts = AutoEncryptionOpts({"local": {"key": base64.b64decode(req["localKey"])}}, req["keyVault"], bypass_auto_encryption=True)
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
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
