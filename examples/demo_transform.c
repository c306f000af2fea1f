/* demo_transform.c — demo_pipeline's registered task: read one input shard
 * and normalise, filter, drop duplicates within the shard, count tokens and
 * encode the kept records as the task's result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "demo_pipeline.h"

/* Normalise valid UTF-8 @p s into @p o (room for n bytes): ASCII lowercase;
 * control characters (C0 other than whitespace, DEL, C1 U+0080..U+009F)
 * dropped; runs of whitespace made one space; trimmed. Returns the length;
 * *chars gets the number of code points and *tokens the number of
 * whitespace-separated words. */
static size_t normalise(const unsigned char *s, size_t n, unsigned char *o,
                        size_t *chars, size_t *tokens)
{
    size_t k = 0, nc = 0, nt = 0;
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
            c == '\r') {
            space = k > 0;
            continue;
        }
        if (c < 0x20 || c == 0x7F)
            continue;
        if (c == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F) {
            i++;
            continue;
        }
        if (space) {
            o[k++] = ' ';
            nc++;
            space = 0;
        }
        if (k == 0 || o[k - 1] == ' ')
            nt++;
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        o[k++] = (unsigned char)c;
        if ((c & 0xC0) != 0x80)
            nc++;
    }
    *chars = nc;
    *tokens = nt;
    return k;
}

/* An application error (not retried): the message reaches the driver. */
static int task_fail(marin_task_ctx_t *ctx, int shard, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "shard %05d: %s", shard, what);
    return marin_task_fail(ctx, msg);
}

/* A system failure (retried within max_retries): log why, return @p code. */
static int task_transient(marin_task_ctx_t *ctx, int shard, const char *why,
                          int code)
{
    char msg[512];
    snprintf(msg, sizeof msg, "shard %05d: %s (attempt %d)", shard, why,
             marin_task_attempt(ctx));
    marin_task_log(ctx, MARIN_LOG_WARN, msg);
    return code;
}

/* Argument: {"shard": I, "path": "/abs/OUT/input/shard-I.jsonl.zst",
 * "min_chars": N}. Result (bytes, little endian):
 *   "MDP1", u32 shard, u64 docs_in, u64 filtered, u64 duplicates within the
 *   shard, u64 text bytes in, u64 record count; then per kept document
 *   u64 XXH3-64 of the normalised text, u64 tokens, u64 text bytes,
 *   u32 length, and that many bytes: the output JSON line (no newline). */
int transform_shard(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *userdata)
{
    (void)userdata;
    json_error_t jerr;
    json_t *a = json_loadb(arg, len, JSON_REJECT_DUPLICATES, &jerr);
    json_int_t shard_i = -1, min_chars = -1;
    const char *path = NULL;
    if (!a || json_unpack(a, "{s:I, s:s, s:I}", "shard", &shard_i, "path",
                          &path, "min_chars", &min_chars) != 0 ||
        shard_i < 0 || shard_i >= MAX_SHARDS || min_chars < 0) {
        json_decref(a);
        return marin_task_fail(ctx, "bad argument: want {\"shard\": I, "
                                    "\"path\": S, \"min_chars\": N}");
    }
    int shard = (int)shard_i;
    int rc = 0;
    zreader_t r;
    buf_t res = {0}, norm = {0};
    hset_t seen = {0};
    uint64_t docs = 0, filtered = 0, dups = 0, bytes_in = 0, nrec = 0;
    size_t lineno = 0;

    if (zr_open(&r, path) < 0) {
        rc = r.transient ? task_transient(ctx, shard, r.err, MARIN_EUNAVAILABLE)
                         : task_fail(ctx, shard, r.err);
        goto done;
    }
    if (buf_reserve(&res, RESULT_HEADER) < 0) {
        rc = MARIN_ENOMEM;
        goto done;
    }
    res.len = RESULT_HEADER; /* filled in at the end */
    for (;;) {
        const unsigned char *line;
        size_t n;
        int got = zr_getline(&r, &line, &n);
        if (got < 0) {
            char why[320];
            snprintf(why, sizeof why, "line %zu: %s", lineno + 1, r.err);
            rc = r.transient ? task_transient(ctx, shard, why,
                                              MARIN_EUNAVAILABLE)
                             : task_fail(ctx, shard, why);
            goto done;
        }
        if (got == 0)
            break;
        lineno++;
        if ((lineno & 255) == 0 && marin_task_cancelled(ctx)) {
            rc = MARIN_ECANCELED;
            goto done;
        }
        json_t *doc = json_loadb((const char *)line, n,
                                 JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                                 &jerr);
        json_t *jid, *jsrc, *jtext;
        if (!doc || !json_is_object(doc) ||
            !json_is_string(jid = json_object_get(doc, "id")) ||
            !json_is_string(jsrc = json_object_get(doc, "source")) ||
            !json_is_string(jtext = json_object_get(doc, "text"))) {
            char why[320];
            snprintf(why, sizeof why, "line %zu: %s", lineno,
                     doc ? "want an object with string id, source, text"
                         : jerr.text);
            json_decref(doc);
            rc = task_fail(ctx, shard, why);
            goto done;
        }
        const unsigned char *text =
            (const unsigned char *)json_string_value(jtext);
        size_t tlen = json_string_length(jtext);
        docs++;
        bytes_in += tlen;
        norm.len = 0;
        if (buf_reserve(&norm, tlen + 1) < 0) {
            json_decref(doc);
            rc = MARIN_ENOMEM;
            goto done;
        }
        size_t chars, tokens;
        size_t nlen = normalise(text, tlen, norm.p, &chars, &tokens);
        if (chars < (uint64_t)min_chars) {
            filtered++;
            json_decref(doc);
            continue;
        }
        uint64_t h = XXH3_64bits(norm.p, nlen);
        int added = hset_add(&seen, h);
        if (added <= 0) {
            json_decref(doc);
            if (added < 0) {
                rc = MARIN_ENOMEM;
                goto done;
            }
            dups++;
            continue;
        }
        json_t *out = json_pack("{s:O, s:O, s:s%, s:I}", "id", jid, "source",
                                jsrc, "text", (const char *)norm.p, nlen,
                                "tokens", (json_int_t)tokens);
        json_decref(doc);
        char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
        json_decref(out);
        size_t slen = s ? strlen(s) : 0;
        if (!s || slen > UINT32_MAX || buf_put_le(&res, h, 8) < 0 ||
            buf_put_le(&res, tokens, 8) < 0 ||
            buf_put_le(&res, nlen, 8) < 0 ||
            buf_put_le(&res, slen, 4) < 0 || buf_put(&res, s, slen) < 0) {
            free(s);
            rc = MARIN_ENOMEM;
            goto done;
        }
        free(s);
        nrec++;
    }
    memcpy(res.p, RESULT_MAGIC, 4);
    le_store(res.p + 4, (uint64_t)shard, 4);
    le_store(res.p + 8, docs, 8);
    le_store(res.p + 16, filtered, 8);
    le_store(res.p + 24, dups, 8);
    le_store(res.p + 32, bytes_in, 8);
    le_store(res.p + 40, nrec, 8);
    rc = marin_task_return(ctx, res.p, res.len);

done:
    zr_close(&r);
    free(res.p);
    free(norm.p);
    hset_free(&seen);
    json_decref(a);
    return rc;
}
