/*
 * Batch decryption and encryption for AEAD_AES_256_CBC_HMAC_SHA_512 (MongoDB CSFLE), called once
 * per data key per document or request by src/crypto/aead-native.ts. Node's own crypto costs a few
 * microseconds per HMAC or cipher object, which dominates many small fields; here the keys are set
 * up once per batch and each field costs a few SHA-512 blocks and one AES call. OpenSSL is the copy
 * statically linked into (and exported by) the node binary. One source file: the Docker build
 * stage and scripts/test know it by name.
 *
 * decryptMany(key, input, layout, out, results)
 *   key     Uint8Array, at least 64 bytes: MAC key (32) | AES key (32) [| IV key, unused]
 *   input   Uint8Array: item 0's AD, item 0's ciphertext, item 1's AD, ... back to back
 *   layout  Int32Array(2n): AD length, ciphertext length of each item
 *   out     Uint8Array, at least as long as input: plaintexts are written here
 *   results Int32Array(2n): per item, offset in out and plaintext length, or -1 as length on failure
 * encryptMany(key, input, layout, ivs, out)
 *   key     Uint8Array, 96 bytes: MAC key (32) | AES key (32) | IV key (32)
 *   input   Uint8Array: item 0's AD, item 0's plaintext, item 1's AD, ... back to back
 *   layout  Int32Array(3n): AD length, plaintext length, 1 for deterministic or 0 for random
 *   ivs     Uint8Array(16n): the IV of each random item (the caller draws them, in one call);
 *           ignored for deterministic items, whose IV is derived from the plaintext
 *   out     Uint8Array: for each item in turn AD | IV | AES-256-CBC(PKCS#7(P)) | tag, which is the
 *           CSFLE payload when AD is its first 18 bytes; must hold exactly what the layout implies
 * ciphertext       = IV (16) | AES-256-CBC(PKCS#7(P)) | HMAC-SHA-512(MAC key, AD | IV | S | AL)[0..32]
 * deterministic IV = HMAC-SHA-512(IV key, AD | AL | P)[0..16]
 */
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define KEY_HALF 32
#define IV_LEN 16
#define TAG_LEN 32
#define BLOCK 16

/* HMAC-SHA-512 (RFC 2104) keyed once per batch: the states after the ipad and opad blocks are
 * copied for every item instead of being recomputed. SHA512_CTX is plain data, so a copy is exact. */
typedef struct {
  SHA512_CTX inner;
  SHA512_CTX outer;
} hmac_keyed;

static void hmac_init(hmac_keyed *h, const uint8_t *key) {
  uint8_t pad[SHA512_CBLOCK];
  memset(pad, 0x36, sizeof pad);
  for (int i = 0; i < KEY_HALF; i++) pad[i] ^= key[i];
  SHA512_Init(&h->inner);
  SHA512_Update(&h->inner, pad, sizeof pad);
  memset(pad, 0x5c, sizeof pad);
  for (int i = 0; i < KEY_HALF; i++) pad[i] ^= key[i];
  SHA512_Init(&h->outer);
  SHA512_Update(&h->outer, pad, sizeof pad);
  OPENSSL_cleanse(pad, sizeof pad);
}

/* The AL field of the construction: the bit length of AD, 8 bytes big-endian. */
static void ad_bit_length(size_t ad_len, uint8_t al[8]) {
  uint64_t bits = (uint64_t)ad_len * 8;
  for (int i = 7; i >= 0; i--, bits >>= 8) al[i] = (uint8_t)bits;
}

/* HMAC over the concatenation of three parts (any may be empty). */
static void hmac3(const hmac_keyed *h, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                         const uint8_t *c, size_t c_len, uint8_t digest[SHA512_DIGEST_LENGTH]) {
  SHA512_CTX ctx = h->inner;
  SHA512_Update(&ctx, a, a_len);
  SHA512_Update(&ctx, b, b_len);
  SHA512_Update(&ctx, c, c_len);
  SHA512_Final(digest, &ctx);
  ctx = h->outer;
  SHA512_Update(&ctx, digest, SHA512_DIGEST_LENGTH);
  SHA512_Final(digest, &ctx);
  OPENSSL_cleanse(&ctx, sizeof ctx);
}

/* The tag input is AD | IV | S | AL. */
static void hmac_tag(const hmac_keyed *h, const uint8_t *ad, size_t ad_len, const uint8_t *iv_and_s, size_t len,
                            uint8_t digest[SHA512_DIGEST_LENGTH]) {
  uint8_t al[8];
  ad_bit_length(ad_len, al);
  hmac3(h, ad, ad_len, iv_and_s, len, al, sizeof al, digest);
}

static int typed_array(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length,
                              const char *message) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset) != napi_ok || type != want) {
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

/* Authenticate then decrypt one item into out (room for len - IV_LEN - TAG_LEN bytes). Returns the
 * plaintext length, or -1. Padding is looked at only after the tag passed, so it is no oracle. */
static int32_t decrypt_one(const hmac_keyed *mac, EVP_CIPHER_CTX *ecb, const uint8_t *ad, size_t ad_len,
                           const uint8_t *ct, size_t len, uint8_t *out) {
  if (len < IV_LEN + BLOCK + TAG_LEN || (len - IV_LEN - TAG_LEN) % BLOCK != 0) return -1;
  size_t n = len - IV_LEN - TAG_LEN;
  uint8_t digest[SHA512_DIGEST_LENGTH];
  hmac_tag(mac, ad, ad_len, ct, IV_LEN + n, digest);
  int tag_ok = CRYPTO_memcmp(digest, ct + IV_LEN + n, TAG_LEN) == 0;
  OPENSSL_cleanse(digest, sizeof digest);
  if (!tag_ok) return -1;
  int written = 0;
  if (EVP_DecryptUpdate(ecb, out, &written, ct + IV_LEN, (int)n) != 1 || (size_t)written != n) return -1;
  /* CBC from ECB: plaintext block k = D(C_k) xor C_(k-1), C_(-1) being the IV, 16 bytes before. */
  for (size_t b = 0; b < n; b++) out[b] ^= ct[b];
  uint8_t pad = out[n - 1];
  int pad_ok = pad >= 1 && pad <= BLOCK;
  for (size_t b = 1; pad_ok && b <= pad; b++) pad_ok = out[n - b] == pad;
  if (!pad_ok) {
    OPENSSL_cleanse(out, n);
    return -1;
  }
  return (int32_t)(n - pad);
}

static napi_value decrypt_many(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "decryptMany: expected 5 arguments");
    return NULL;
  }
  uint8_t *key, *input, *out;
  int32_t *layout, *results;
  size_t key_len, input_len, layout_len, out_len, results_len;
  if (!typed_array(env, argv[0], napi_uint8_array, (void **)&key, &key_len, "decryptMany: wrong argument types") ||
      !typed_array(env, argv[1], napi_uint8_array, (void **)&input, &input_len, "decryptMany: wrong argument types") ||
      !typed_array(env, argv[2], napi_int32_array, (void **)&layout, &layout_len, "decryptMany: wrong argument types") ||
      !typed_array(env, argv[3], napi_uint8_array, (void **)&out, &out_len, "decryptMany: wrong argument types") ||
      !typed_array(env, argv[4], napi_int32_array, (void **)&results, &results_len, "decryptMany: wrong argument types")) {
    return NULL;
  }
  if (key_len < 2 * KEY_HALF || layout_len % 2 != 0 || results_len != layout_len || out_len < input_len) {
    napi_throw_range_error(env, NULL, "decryptMany: inconsistent argument sizes");
    return NULL;
  }
  /* Every item must lie inside input; checked up front so no item is decrypted from a bad layout. */
  size_t total = 0;
  for (size_t i = 0; i < layout_len; i++) {
    if (layout[i] < 0 || (size_t)layout[i] > input_len - total) {
      napi_throw_range_error(env, NULL, "decryptMany: layout exceeds input");
      return NULL;
    }
    total += (size_t)layout[i];
  }

  EVP_CIPHER_CTX *ecb = EVP_CIPHER_CTX_new();
  if (ecb == NULL || EVP_DecryptInit_ex(ecb, EVP_aes_256_ecb(), NULL, key + KEY_HALF, NULL) != 1 ||
      EVP_CIPHER_CTX_set_padding(ecb, 0) != 1) {
    EVP_CIPHER_CTX_free(ecb);
    napi_throw_error(env, NULL, "decryptMany: cipher setup failed");
    return NULL;
  }
  hmac_keyed mac;
  hmac_init(&mac, key);

  size_t in_at = 0, out_at = 0;
  for (size_t i = 0; i < layout_len / 2; i++) {
    size_t ad_len = (size_t)layout[2 * i], ct_len = (size_t)layout[2 * i + 1];
    const uint8_t *ad = input + in_at, *ct = ad + ad_len;
    in_at += ad_len + ct_len;
    int32_t length = decrypt_one(&mac, ecb, ad, ad_len, ct, ct_len, out + out_at);
    results[2 * i] = (int32_t)out_at;
    results[2 * i + 1] = length;
    /* A body is shorter than its ciphertext, so out (as long as input) never overflows. */
    if (length >= 0) out_at += ct_len - IV_LEN - TAG_LEN;
  }

  OPENSSL_cleanse(&mac, sizeof mac);
  EVP_CIPHER_CTX_free(ecb);
  return NULL;
}

/* Encrypt one item into out: AD is already there (ad_len bytes), the rest follows it. */
static int encrypt_one(const hmac_keyed *mac, const hmac_keyed *ivmac, EVP_CIPHER_CTX *cbc, const uint8_t *ad, size_t ad_len,
                       const uint8_t *p, size_t p_len, int deterministic, const uint8_t *random_iv, uint8_t *out) {
  uint8_t digest[SHA512_DIGEST_LENGTH];
  uint8_t *iv = out + ad_len;
  uint8_t *s = iv + IV_LEN;
  size_t padded = (p_len / BLOCK + 1) * BLOCK;
  memcpy(out, ad, ad_len);
  if (deterministic) {
    uint8_t al[8];
    ad_bit_length(ad_len, al);
    hmac3(ivmac, ad, ad_len, al, sizeof al, p, p_len, digest);
    memcpy(iv, digest, IV_LEN);
  } else {
    memcpy(iv, random_iv, IV_LEN);
  }
  /* PKCS#7 by hand, then one in-place CBC pass with padding off: no final() round trip. */
  memcpy(s, p, p_len);
  memset(s + p_len, (int)(padded - p_len), padded - p_len);
  int written = 0;
  int ok = EVP_EncryptInit_ex(cbc, NULL, NULL, NULL, iv) == 1 && EVP_EncryptUpdate(cbc, s, &written, s, (int)padded) == 1 &&
           (size_t)written == padded;
  if (ok) {
    hmac_tag(mac, ad, ad_len, iv, IV_LEN + padded, digest);
    memcpy(s + padded, digest, TAG_LEN);
  }
  OPENSSL_cleanse(digest, sizeof digest);
  return ok;
}

static napi_value encrypt_many(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "encryptMany: expected 5 arguments");
    return NULL;
  }
  const char *types = "encryptMany: wrong argument types";
  uint8_t *key, *input, *ivs, *out;
  int32_t *layout;
  size_t key_len, input_len, layout_len, ivs_len, out_len;
  if (!typed_array(env, argv[0], napi_uint8_array, (void **)&key, &key_len, types) ||
      !typed_array(env, argv[1], napi_uint8_array, (void **)&input, &input_len, types) ||
      !typed_array(env, argv[2], napi_int32_array, (void **)&layout, &layout_len, types) ||
      !typed_array(env, argv[3], napi_uint8_array, (void **)&ivs, &ivs_len, types) ||
      !typed_array(env, argv[4], napi_uint8_array, (void **)&out, &out_len, types)) {
    return NULL;
  }
  size_t n = layout_len / 3;
  if (key_len != 3 * KEY_HALF || layout_len % 3 != 0 || ivs_len != n * IV_LEN) {
    napi_throw_range_error(env, NULL, "encryptMany: inconsistent argument sizes");
    return NULL;
  }
  /* Every item must come from inside input and land inside out: checked before anything is
   * written, so a bad layout encrypts nothing. Lengths are bounded by the buffers, so no overflow. */
  size_t in_total = 0, out_total = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t ad_len = layout[3 * i], p_len = layout[3 * i + 1], det = layout[3 * i + 2];
    /* The padded plaintext goes through EVP as an int: keep it one. */
    if (ad_len < 0 || p_len < 0 || p_len > INT32_MAX - 2 * BLOCK || (det != 0 && det != 1) ||
        (size_t)ad_len > input_len - in_total || (size_t)p_len > input_len - in_total - (size_t)ad_len) {
      napi_throw_range_error(env, NULL, "encryptMany: layout exceeds input");
      return NULL;
    }
    in_total += (size_t)ad_len + (size_t)p_len;
    out_total += (size_t)ad_len + IV_LEN + ((size_t)p_len / BLOCK + 1) * BLOCK + TAG_LEN;
  }
  if (out_total != out_len) {
    napi_throw_range_error(env, NULL, "encryptMany: out does not fit the layout");
    return NULL;
  }

  EVP_CIPHER_CTX *cbc = EVP_CIPHER_CTX_new();
  if (cbc == NULL || EVP_EncryptInit_ex(cbc, EVP_aes_256_cbc(), NULL, key + KEY_HALF, NULL) != 1 ||
      EVP_CIPHER_CTX_set_padding(cbc, 0) != 1) {
    EVP_CIPHER_CTX_free(cbc);
    napi_throw_error(env, NULL, "encryptMany: cipher setup failed");
    return NULL;
  }
  hmac_keyed mac, ivmac;
  hmac_init(&mac, key);
  hmac_init(&ivmac, key + 2 * KEY_HALF);

  int ok = 1;
  size_t in_at = 0, out_at = 0;
  for (size_t i = 0; ok && i < n; i++) {
    size_t ad_len = (size_t)layout[3 * i], p_len = (size_t)layout[3 * i + 1];
    const uint8_t *ad = input + in_at, *p = ad + ad_len;
    ok = encrypt_one(&mac, &ivmac, cbc, ad, ad_len, p, p_len, layout[3 * i + 2], ivs + i * IV_LEN, out + out_at);
    in_at += ad_len + p_len;
    out_at += ad_len + IV_LEN + (p_len / BLOCK + 1) * BLOCK + TAG_LEN;
  }

  OPENSSL_cleanse(&mac, sizeof mac);
  OPENSSL_cleanse(&ivmac, sizeof ivmac);
  EVP_CIPHER_CTX_free(cbc);
  if (!ok) {
    /* Never hand back a half-written batch as if it were ciphertext. */
    OPENSSL_cleanse(out, out_len);
    napi_throw_error(env, NULL, "encryptMany: cipher failed");
  }
  return NULL;
}

static int export_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!export_function(env, exports, "decryptMany", decrypt_many) || !export_function(env, exports, "encryptMany", encrypt_many)) {
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
