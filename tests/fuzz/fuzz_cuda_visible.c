/* libFuzzer target: the CUDA_VISIBLE_DEVICES parser.
 *
 * The input, NUL-terminated, is the value of CUDA_VISIBLE_DEVICES handed to
 * marin__detect_capacity() through its sources struct; the cgroup, /proc and
 * nvidia roots point at a directory that does not exist, so only the value
 * matters. The result must be MARIN_OK or MARIN_EINVAL; on success the ids
 * are distinct, non-negative and at most MARIN__MAX_GPUS, and "gpus" equals
 * their count; on failure the resource set is untouched. Both must match an
 * independent reading of the documented grammar: blanks around the value
 * and each entry are ignored; "", "-1" and "NoDevFiles" mean no GPU; else
 * up to 64 comma-separated distinct indices (0..INT_MAX) or GPU-/MIG- UUIDs
 * ([0-9A-Za-z/-] after the prefix), not mixed; UUIDs are numbered 0..n-1. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/capacity.h"
#include "marin/error.h"
#include "resources_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 4096
#define NOWHERE "/nonexistent/marin-fuzz"
#define CPUS 4

static const char *g_input;

__attribute__((noreturn)) static void fail(const char *what)
{
    fprintf(stderr, "fuzz_cuda_visible: %s\n  input: \"", what);
    for (const char *s = g_input; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n  last error: %s\n", marin_last_error());
    abort();
}

static int blank(char c) { return c == ' ' || c == '\t'; }

/* Reference parser: MARIN_OK with ids[0..*n), or MARIN_EINVAL. */
static int reference(const char *s, int *ids, size_t *n)
{
    size_t a = 0, b = strlen(s);
    *n = 0;
    while (a < b && blank(s[a]))
        a++;
    while (b > a && blank(s[b - 1]))
        b--;
    size_t len = b - a;
    const char *v = s + a;
    if (len == 0 || (len == 2 && memcmp(v, "-1", 2) == 0) ||
        (len == 10 && memcmp(v, "NoDevFiles", 10) == 0))
        return MARIN_OK;
    size_t count = 0, uuids = 0;
    const char *p = v, *end = v + len;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        const char *x = p, *y = e;
        while (x < y && blank(*x))
            x++;
        while (y > x && blank(y[-1]))
            y--;
        if (x == y || count == MARIN__MAX_GPUS)
            return MARIN_EINVAL;
        size_t el = (size_t)(y - x), k;
        for (k = 0; k < el && x[k] >= '0' && x[k] <= '9'; k++)
            ;
        if (k == el) {
            long long val = 0;
            for (k = 0; k < el; k++) {
                val = val * 10 + (x[k] - '0');
                if (val > INT_MAX)
                    return MARIN_EINVAL;
            }
            for (size_t j = 0; j < count; j++)
                if (ids[j] == (int)val)
                    return MARIN_EINVAL;
            ids[count] = (int)val;
        } else if (el > 4 && (memcmp(x, "GPU-", 4) == 0 ||
                              memcmp(x, "MIG-", 4) == 0)) {
            for (k = 4; k < el; k++) {
                char ch = x[k];
                if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '/'))
                    return MARIN_EINVAL;
            }
            uuids++;
        } else {
            return MARIN_EINVAL;
        }
        count++;
        if (!c)
            break;
        p = c + 1;
    }
    if (uuids && uuids != count)
        return MARIN_EINVAL;
    if (uuids)
        for (size_t j = 0; j < count; j++)
            ids[j] = (int)j;
    *n = count;
    return MARIN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *value = malloc(size + 1);
    if (!value)
        abort();
    memcpy(value, data, size);
    value[size] = '\0';
    g_input = value;

    marin__capacity_sources src = {
        .cgroup_root = NOWHERE,
        .proc_root = NOWHERE,
        .nvidia_gpus_dir = NOWHERE,
        .cuda_visible_set = 1,
        .cuda_visible = value,
        .online_cpus = CPUS,
    };
    /* A set with earlier amounts, which a failure must leave as it was. */
    marin_resources_t *r = NULL;
    if (marin_resources_parse("cpus=1.5,gpus=3,TPU=2", &r) != MARIN_OK)
        abort();
    marin_resources_t before = *r;
    int ids[MARIN__MAX_GPUS + 8];
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ids[i] = -12345;
    size_t n = 999;

    int rc = marin__detect_capacity(&src, r, ids, &n);

    int want_ids[MARIN__MAX_GPUS];
    size_t want_n = 0;
    int want = reference(value, want_ids, &want_n);
    if (rc != MARIN_OK && rc != MARIN_EINVAL)
        fail("neither MARIN_OK nor MARIN_EINVAL");
    if (rc != want)
        fail(want == MARIN_OK ? "refused a valid value"
                              : "accepted an invalid value");
    if (rc == MARIN_OK) {
        if (n > MARIN__MAX_GPUS || n != want_n)
            fail("wrong GPU count");
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] != want_ids[i])
                fail("wrong GPU id");
            for (size_t j = 0; j < i; j++)
                if (ids[i] == ids[j])
                    fail("a GPU id listed twice");
        }
        for (size_t i = n; i < sizeof ids / sizeof ids[0]; i++)
            if (ids[i] != -12345)
                fail("wrote past the GPU ids it returned");
        int64_t g = marin__res_amount(r, "gpus");
        /* n == 0 leaves the earlier gpus amount in place */
        if (n > 0 && g != (int64_t)n * MARIN__RES_SCALE)
            fail("gpus amount is not the GPU count");
        if (marin__res_amount(r, "cpus") != CPUS * MARIN__RES_SCALE)
            fail("cpus amount is not online_cpus");
    } else {
        if (n != 999 || ids[0] != -12345)
            fail("a failure wrote the GPU outputs");
        if (memcmp(&before, r, sizeof before) != 0)
            fail("a failure changed the resource set");
        if (marin_last_error()[0] == '\0')
            fail("a failure left no message");
    }
    marin_resources_destroy(r);
    free(value);
    return 0;
}
