"""W4, the libmongocrypt side: whole-document decryption of a document with 1500 encrypted string
fields, through pymongocrypt's AutoEncrypter.decrypt (libmongocrypt's decryption context: the
same call pymongo makes on every auto-decrypted server reply), with the data key cached.

    # 1. fixture (needs a MongoDB for pymongo's ClientEncryption; the key vault is exported to files)
    python3 bench/w4_libmongocrypt.py generate --uri mongodb://127.0.0.1:27017/ [--out bench/fixtures/w4]
    # 2. benchmark (offline: the key document is served from the fixture, then cached by libmongocrypt)
    python3 bench/w4_libmongocrypt.py bench [--dir bench/fixtures/w4] [--seconds 5] [--procs 1]

Fixture files (both sides read the same ones; see bench/README.md):
  document.bson       the encrypted document: {_id: 1, f0000 … f1499: Binary subtype 6, random algorithm}
  plaintext.bson      the same document in plaintext, for checking a decryption
  key-document.bson   the data key document exactly as in the key vault (driver shape)
  local-master-key.b64  the 96-byte local master key wrapping it, base64
  meta.json           counts and algorithm
"""
import argparse
import base64
import json
import multiprocessing
import os
import time

import bson
from bson.binary import STANDARD
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

FIELDS = 1500


def generate(a):
    from pymongo import MongoClient
    from pymongo.encryption import Algorithm, ClientEncryption

    os.makedirs(a.out, exist_ok=True)
    master = os.urandom(96)
    db = f"bench_w4_{os.urandom(4).hex()}"
    client = MongoClient(a.uri)
    ce = ClientEncryption({"local": {"key": master}}, f"{db}.__keyVault", client, CodecOptions(uuid_representation=STANDARD))
    key_id = ce.create_data_key("local", key_alt_names=["w4"])
    plain = {"_id": 1}
    enc = {"_id": 1}
    for i in range(FIELDS):
        value = f"w4-value-{i:04d}-{os.urandom(6).hex()}"
        name = f"f{i:04d}"
        plain[name] = value
        enc[name] = ce.encrypt(value, Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random, key_id=key_id)
    key_doc = client[db]["__keyVault"].with_options(codec_options=CodecOptions(document_class=RawBSONDocument)).find_one({"_id": key_id})
    with open(os.path.join(a.out, "document.bson"), "wb") as f:
        f.write(bson.encode(enc))
    with open(os.path.join(a.out, "plaintext.bson"), "wb") as f:
        f.write(bson.encode(plain))
    with open(os.path.join(a.out, "key-document.bson"), "wb") as f:
        f.write(key_doc.raw)
    with open(os.path.join(a.out, "local-master-key.b64"), "w") as f:
        f.write(base64.b64encode(master).decode())
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump({"fields": FIELDS, "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Random", "valueType": "string",
                   "keyId": str(key_id.as_uuid() if hasattr(key_id, "as_uuid") else key_id), "generatedBy": "pymongo ClientEncryption.encrypt"}, f, indent=2)
    ce.close()
    client.drop_database(db)
    client.close()
    print(json.dumps({"out": a.out, "fields": FIELDS, "bytes": os.path.getsize(os.path.join(a.out, "document.bson"))}))


def _worker(directory, seconds, queue):
    from pymongocrypt.options import MongoCryptOptions
    from pymongocrypt.synchronous.auto_encrypter import AutoEncrypter
    from pymongocrypt.synchronous.state_machine import MongoCryptCallback

    with open(os.path.join(directory, "document.bson"), "rb") as f:
        doc = f.read()
    with open(os.path.join(directory, "plaintext.bson"), "rb") as f:
        plain = f.read()
    with open(os.path.join(directory, "key-document.bson"), "rb") as f:
        key_doc = f.read()
    with open(os.path.join(directory, "local-master-key.b64")) as f:
        master = base64.b64decode(f.read().strip())

    fetches = [0]

    class Callback(MongoCryptCallback):
        """Serves the one data key from memory (a key-vault find), counting how often it is asked."""

        def kms_request(self, kms_context):
            raise RuntimeError("no KMS with a local master key")

        def collection_info(self, database, filter):
            raise RuntimeError("not used by decryption")

        def mark_command(self, database, cmd):
            raise RuntimeError("not used by decryption")

        def fetch_keys(self, filter):
            fetches[0] += 1
            yield key_doc

        def insert_data_key(self, data_key):
            raise RuntimeError("not used")

        def bson_encode(self, doc):
            return bson.encode(doc)

        def close(self):
            pass

    enc = AutoEncrypter(Callback(), MongoCryptOptions({"local": {"key": master}}, bypass_query_analysis=True))
    out = enc.decrypt(doc)  # warm-up: fetches and unwraps the key once
    if bson.decode(out) != bson.decode(plain):
        raise SystemExit("decryption does not give the plaintext fixture")
    for _ in range(5):
        enc.decrypt(doc)
    n = 0
    times = []
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        t0 = time.perf_counter()
        enc.decrypt(doc)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        n += 1
        if t1 >= deadline:
            break
    elapsed = time.perf_counter() - start
    enc.close()
    times.sort()
    queue.put({"docs": n, "seconds": elapsed, "docsPerSec": n / elapsed, "keyFetches": fetches[0],
               "p50Ms": times[len(times) // 2] * 1000, "p99Ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000})


def bench(a):
    import pymongocrypt

    results = {}
    for procs in sorted(set([1, a.procs])):
        queue = multiprocessing.Queue()
        ps = [multiprocessing.Process(target=_worker, args=(a.dir, a.seconds, queue)) for _ in range(procs)]
        for p in ps:
            p.start()
        got = [queue.get() for _ in ps]
        for p in ps:
            p.join()
        results[f"{procs}proc"] = {"docsPerSec": sum(g["docsPerSec"] for g in got), "workers": got}
    print(json.dumps({"fields": FIELDS, "pymongocrypt": pymongocrypt.__version__,
                      "libmongocrypt": pymongocrypt.libmongocrypt_version(), "results": results}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--uri", required=True)
    g.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "w4"))
    b = sub.add_parser("bench")
    b.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "w4"))
    b.add_argument("--seconds", type=float, default=5.0)
    b.add_argument("--procs", type=int, default=1)
    a = p.parse_args()
    generate(a) if a.cmd == "generate" else bench(a)


if __name__ == "__main__":
    main()
