/*
 * The native floor of chunk decode (issue 14): the same chunk blobs the benchmark restores, decoded on one core
 * with libzstd, OpenSSL SHA-256 and zlib CRC32 - the libraries a C restore tool would use. Built and run by
 * bench/PbsRestore.Bench (WritePathBench); not part of the module.
 *
 * Input file: records of [u32 blob length][u8 kind: 0 stored, 1 zstd][u32 stored CRC][32-byte SHA-256 digest][blob].
 * For each: CRC32 of the blob after its 12-byte header == stored CRC; payload decoded (zstd streaming, frames
 * without a content size included); SHA-256 of the plaintext == digest. Prints: "<plain bytes> <seconds>" of the
 * best of N passes over the records held in memory.
 *
 * gcc -O2 -o native-floor native-floor.c -lzstd -lcrypto -lz
 */
#define _GNU_SOURCE
#include <openssl/sha.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

typedef struct { uint32_t len; uint8_t kind; uint32_t crc; uint8_t digest[32]; uint8_t *blob; } rec_t;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: native-floor FILE [passes]\n"); return 2; }
    int passes = argc > 2 ? atoi(argv[2]) : 3;
    cpu_set_t one; CPU_ZERO(&one); CPU_SET(0, &one); sched_setaffinity(0, sizeof one, &one); /* one core */
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    size_t cap = 1024, n = 0; rec_t *r = malloc(cap * sizeof *r);
    for (;;) {
        rec_t x; uint8_t hdr[4 + 1 + 4 + 32];
        if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr) break;
        memcpy(&x.len, hdr, 4); x.kind = hdr[4]; memcpy(&x.crc, hdr + 5, 4); memcpy(x.digest, hdr + 9, 32);
        x.blob = malloc(x.len);
        if (fread(x.blob, 1, x.len, f) != x.len) { fprintf(stderr, "truncated\n"); return 2; }
        if (n == cap) r = realloc(r, (cap *= 2) * sizeof *r);
        r[n++] = x;
    }
    fclose(f);
    size_t outCap = 16u << 20; uint8_t *out = malloc(outCap);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    double best = 1e30; unsigned long long plainTotal = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = now(); unsigned long long plain = 0;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *payload = r[i].blob + 12; size_t plen = r[i].len - 12;
            if ((uint32_t)crc32(0L, payload, (uInt)plen) != r[i].crc) { fprintf(stderr, "crc mismatch at %zu\n", i); return 1; }
            size_t m;
            if (r[i].kind == 1) {
                ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
                ZSTD_inBuffer in = { payload, plen, 0 }; ZSTD_outBuffer o = { out, outCap, 0 };
                while (in.pos < in.size) {
                    size_t rc = ZSTD_decompressStream(dctx, &o, &in);
                    if (ZSTD_isError(rc)) { fprintf(stderr, "zstd: %s at %zu\n", ZSTD_getErrorName(rc), i); return 1; }
                    if (rc == 0 && in.pos < in.size) ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only); /* next frame */
                }
                m = o.pos;
            } else { memcpy(out, payload, plen); m = plen; }
            uint8_t d[32]; SHA256(out, m, d);
            if (memcmp(d, r[i].digest, 32) != 0) { fprintf(stderr, "digest mismatch at %zu\n", i); return 1; }
            plain += m;
        }
        double s = now() - t0; if (s < best) best = s; plainTotal = plain;
    }
    printf("%llu %.6f\n", plainTotal, best);
    return 0;
}
