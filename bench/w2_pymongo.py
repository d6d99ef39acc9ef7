"""W2 baseline: pymongo's explicit ClientEncryption.encrypt / decrypt, one value per call, in a loop.

    python3 bench/w2_pymongo.py --uri mongodb://127.0.0.1:27017/ --db bench_xyz --seconds 5

Creates a data key wrapped by a fresh local master key in <db>.__keyVault (the same MongoDB the
service uses), warms up (first call fetches and caches the key), then encrypts the same kind of
value the service's W2 batch encrypts (a ~20-byte string, deterministic) for --seconds, then
decrypts those ciphertexts for --seconds. Prints one JSON line: values/s for each.
"""
import argparse
import json
import os
import time

from bson.codec_options import CodecOptions
from bson.binary import STANDARD
from pymongo import MongoClient
from pymongo.encryption import Algorithm, ClientEncryption


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--algorithm", choices=["deterministic", "random"], default="deterministic")
    a = p.parse_args()

    client = MongoClient(a.uri)
    kms = {"local": {"key": os.urandom(96)}}
    ce = ClientEncryption(kms, f"{a.db}.__keyVault_py", client, CodecOptions(uuid_representation=STANDARD))
    key_id = ce.create_data_key("local")
    algo = (Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Deterministic if a.algorithm == "deterministic"
            else Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random)

    # Warm-up: the first call reads the key vault and unwraps the key; later calls use libmongocrypt's cache.
    for i in range(200):
        ce.decrypt(ce.encrypt(f"value-{i:06d}-abcdefgh", algo, key_id=key_id))

    cts = []
    n = 0
    start = time.perf_counter()
    deadline = start + a.seconds
    while True:
        for _ in range(100):
            cts.append(ce.encrypt(f"value-{n:06d}-abcdefgh", algo, key_id=key_id))
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    enc_rate = n / (now - start)

    m = 0
    start = time.perf_counter()
    deadline = start + a.seconds
    while True:
        for _ in range(100):
            ce.decrypt(cts[m % len(cts)])
            m += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    dec_rate = m / (now - start)
    ce.close()
    client.drop_database(a.db) if a.db.startswith("bench_") else None
    client.close()
    print(json.dumps({"encryptValuesPerSec": enc_rate, "decryptValuesPerSec": dec_rate,
                      "encrypted": n, "decrypted": m, "algorithm": a.algorithm}))


if __name__ == "__main__":
    main()
