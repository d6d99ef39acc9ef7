{
  "targets": [
    {
      "target_name": "aead_native",
      "sources": ["aead_native.c"],
      "defines": ["NAPI_VERSION=8", "OPENSSL_SUPPRESS_DEPRECATED"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror"]
    }
  ]
}
