/*
 * W4, libmongocrypt from C: whole-document decryption of the shared fixture (bench/fixtures/w4),
 * driving the system libmongocrypt directly (no Python), with the data key cached by the handle.
 *
 *   ./w4 [--dir bench/fixtures/w4] [--seconds 5] [--threads 1]
 *
 * Per document: mongocrypt_ctx_decrypt_init, then the state machine (NEED_MONGO_KEYS: feed the key
 * document, mongo_done; READY: finalize), then destroy the ctx. After the first document the
 * mongocrypt_t's key cache holds the unwrapped data key, so NEED_MONGO_KEYS is not entered again.
 * Each thread owns its mongocrypt_t (handles are not thread-safe); docs/s are summed over threads.
 * The last stdout line is JSON.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bson/bson.h>
#include <mongocrypt.h>

typedef struct {
  uint8_t *data;
  size_t len;
} buf_t;

static buf_t doc, plain, key_doc, master_key;
static double seconds = 5.0;
static pthread_barrier_t start_line;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "w4: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(1);
}

static buf_t read_file(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open %s", path);
  buf_t b = {0};
  size_t cap = 1 << 16;
  b.data = malloc(cap);
  size_t n;
  while ((n = fread(b.data + b.len, 1, cap - b.len, f)) > 0) {
    b.len += n;
    if (b.len == cap) b.data = realloc(b.data, cap *= 2);
  }
  fclose(f);
  return b;
}

/* Standard base64 (with padding, whitespace ignored). */
static buf_t base64_decode(const buf_t in) {
  buf_t out = {malloc(in.len), 0};
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < in.len; i++) {
    int c = in.data[i], v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else continue; /* '=', newlines */
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.data[out.len++] = (uint8_t)(acc >> bits);
    }
  }
  return out;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail_status(const char *what, mongocrypt_status_t *st) {
  const char *msg = mongocrypt_status_message(st, NULL);
  fprintf(stderr, "w4: %s failed: %s\n", what, msg ? msg : "(no message)");
  exit(1);
}

static mongocrypt_t *new_crypt(void) {
  mongocrypt_t *crypt = mongocrypt_new();
  mongocrypt_binary_t *key = mongocrypt_binary_new_from_data(master_key.data, (uint32_t)master_key.len);
  mongocrypt_status_t *st = mongocrypt_status_new();
  if (!mongocrypt_setopt_kms_provider_local(crypt, key)) {
    mongocrypt_status(crypt, st);
    fail_status("mongocrypt_setopt_kms_provider_local", st);
  }
  mongocrypt_binary_destroy(key);
  if (!mongocrypt_init(crypt)) {
    mongocrypt_status(crypt, st);
    fail_status("mongocrypt_init", st);
  }
  mongocrypt_status_destroy(st);
  return crypt;
}

/*
 * Decrypt the fixture document once. If `check` is set, compare the result with plaintext.bson.
 * Returns how many times the key document was requested (0 once the key is cached).
 */
static int decrypt_one(mongocrypt_t *crypt, bool check) {
  int key_requests = 0;
  mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
  mongocrypt_status_t *st = mongocrypt_status_new();
  mongocrypt_binary_t *in = mongocrypt_binary_new_from_data(doc.data, (uint32_t)doc.len);
  if (!mongocrypt_ctx_decrypt_init(ctx, in)) {
    mongocrypt_ctx_status(ctx, st);
    fail_status("mongocrypt_ctx_decrypt_init", st);
  }
  mongocrypt_binary_destroy(in);
  for (bool done = false; !done;) {
    switch (mongocrypt_ctx_state(ctx)) {
    case MONGOCRYPT_CTX_NEED_MONGO_KEYS: {
      /* The key-vault find would return this one document. */
      key_requests++;
      mongocrypt_binary_t *reply = mongocrypt_binary_new_from_data(key_doc.data, (uint32_t)key_doc.len);
      if (!mongocrypt_ctx_mongo_feed(ctx, reply)) {
        mongocrypt_ctx_status(ctx, st);
        fail_status("mongocrypt_ctx_mongo_feed", st);
      }
      mongocrypt_binary_destroy(reply);
      if (!mongocrypt_ctx_mongo_done(ctx)) {
        mongocrypt_ctx_status(ctx, st);
        fail_status("mongocrypt_ctx_mongo_done", st);
      }
      break;
    }
    case MONGOCRYPT_CTX_READY: {
      mongocrypt_binary_t *out = mongocrypt_binary_new();
      if (!mongocrypt_ctx_finalize(ctx, out)) {
        mongocrypt_ctx_status(ctx, st);
        fail_status("mongocrypt_ctx_finalize", st);
      }
      if (check) {
        bson_t got, want;
        if (!bson_init_static(&got, mongocrypt_binary_data(out), mongocrypt_binary_len(out)) ||
            !bson_init_static(&want, plain.data, plain.len))
          die("%s", "invalid BSON");
        if (!bson_equal(&got, &want)) die("%s", "decryption does not give plaintext.bson");
      }
      mongocrypt_binary_destroy(out);
      break;
    }
    case MONGOCRYPT_CTX_DONE:
      done = true;
      break;
    case MONGOCRYPT_CTX_ERROR:
      mongocrypt_ctx_status(ctx, st);
      fail_status("decryption", st);
      break;
    default:
      die("unexpected context state %s (a local master key needs no KMS or collection info)", "");
    }
  }
  mongocrypt_status_destroy(st);
  mongocrypt_ctx_destroy(ctx);
  return key_requests;
}

typedef struct {
  int id;
  long docs;
  double elapsed;
  int key_requests_first, key_requests_after;
  double *lat; /* seconds per document */
  size_t nlat, caplat;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  mongocrypt_t *crypt = new_crypt();
  w->key_requests_first = decrypt_one(crypt, true); /* fetches and unwraps the key once; checks output */
  w->key_requests_after = 0;
  for (int i = 0; i < 5; i++) w->key_requests_after += decrypt_one(crypt, i == 0);
  pthread_barrier_wait(&start_line);
  double start = now(), deadline = start + seconds, t1;
  do {
    double t0 = now();
    w->key_requests_after += decrypt_one(crypt, false);
    t1 = now();
    if (w->nlat == w->caplat) w->lat = realloc(w->lat, (w->caplat = w->caplat ? w->caplat * 2 : 4096) * sizeof(double));
    w->lat[w->nlat++] = t1 - t0;
    w->docs++;
  } while (t1 < deadline);
  w->elapsed = t1 - start;
  mongocrypt_destroy(crypt);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/*
 * Does this libmongocrypt do its crypto natively? libmongocrypt >= 1.8 answers directly
 * (mongocrypt_is_crypto_available); older ones (Debian's 1.7) do not have the call, so look for
 * the OpenSSL symbols its crypto uses in the process (pulled in only by libmongocrypt here) and
 * name the library they come from. Either way no crypto hooks are set, so a successful
 * decryption above already proves the crypto ran in C.
 */
static bool native_crypto(char *backend, size_t n) {
  snprintf(backend, n, "unknown");
  bool (*avail)(void) = (bool (*)(void))dlsym(RTLD_DEFAULT, "mongocrypt_is_crypto_available");
  void *evp = dlsym(RTLD_DEFAULT, "EVP_DecryptUpdate");
  Dl_info info;
  if (evp && dladdr(evp, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    const char *(*ver)(int) = (const char *(*)(int))dlsym(RTLD_DEFAULT, "OpenSSL_version");
    snprintf(backend, n, "OpenSSL (%s%s%s)", slash ? slash + 1 : info.dli_fname, ver ? ", " : "", ver ? ver(0) : "");
  }
  if (avail) return avail();
  return evp != NULL;
}

int main(int argc, char **argv) {
  const char *dir = "bench/fixtures/w4";
  int threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--dir DIR] [--seconds S] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  if (threads < 1 || threads > 64 || !(seconds > 0)) die("%s", "bad --threads or --seconds");

  doc = read_file(dir, "document.bson");
  plain = read_file(dir, "plaintext.bson");
  key_doc = read_file(dir, "key-document.bson");
  master_key = base64_decode(read_file(dir, "local-master-key.b64"));
  if (master_key.len != 96) die("%s", "local-master-key.b64 must hold 96 bytes");
  bson_t d;
  if (!bson_init_static(&d, doc.data, doc.len)) die("%s", "document.bson is not BSON");
  int fields = (int)bson_count_keys(&d) - 1; /* all but _id */

  worker_t *ws = calloc((size_t)threads, sizeof *ws);
  pthread_t *tids = calloc((size_t)threads, sizeof *tids);
  pthread_barrier_init(&start_line, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) {
    ws[i].id = i;
    if (pthread_create(&tids[i], NULL, worker, &ws[i])) die("%s", "pthread_create failed");
  }
  for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);

  double dps = 0;
  size_t nall = 0;
  int first = 0, after = 0;
  for (int i = 0; i < threads; i++) {
    dps += ws[i].docs / ws[i].elapsed;
    nall += ws[i].nlat;
    first += ws[i].key_requests_first;
    after += ws[i].key_requests_after;
  }
  double *all = malloc(nall * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof(double));
    k += ws[i].nlat;
  }
  qsort(all, nall, sizeof(double), cmp_double);
  size_t i99 = (size_t)(nall * 0.99);
  if (i99 >= nall) i99 = nall - 1;

  char backend[256];
  bool native = native_crypto(backend, sizeof backend);
  printf("{\"threads\":%d,\"fields\":%d,\"docsPerSec\":%.3f,\"p50Ms\":%.4f,\"p99Ms\":%.4f,"
         "\"libmongocryptVersion\":\"%s\",\"nativeCrypto\":%s,\"cryptoBackend\":\"%s\","
         "\"keyRequestsFirstDoc\":%d,\"keyRequestsAfter\":%d,\"workers\":[",
         threads, fields, dps, all[nall / 2] * 1000, all[i99] * 1000, mongocrypt_version(NULL), native ? "true" : "false", backend,
         first, after);
  for (int i = 0; i < threads; i++)
    printf("%s{\"docs\":%ld,\"seconds\":%.4f,\"docsPerSec\":%.3f}", i ? "," : "", ws[i].docs, ws[i].elapsed, ws[i].docs / ws[i].elapsed);
  printf("]}\n");
  return 0;
}
