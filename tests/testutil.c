#include "testutil.h"

#include <stdlib.h>
#include <time.h>

int marin_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int wait_for(atomic_int *v, int want, int64_t timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

int arg_int(const void *arg, size_t len)
{
    int v = 0;
    if (arg && len == sizeof v)
        memcpy(&v, arg, sizeof v);
    return v;
}

int noop_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return 0;
}

marin_runtime_t *open_rt(const char *uri)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open(uri, &rt), MARIN_OK);
    ck_assert_ptr_nonnull(rt);
    return rt;
}

marin_task_options_t *opts_with_resources(const char *spec)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse(spec, &r), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    marin_resources_destroy(r);
    return o;
}

static uint32_t xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 16);
}

void fuzz_input(char *buf, size_t cap, const char *const *seeds, size_t nseeds,
                const char *alphabet, uint64_t *state)
{
    size_t nalpha = strlen(alphabet), n;
    if (xorshift(state) % 3 == 0) {
        n = xorshift(state) % (cap - 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = xorshift(state) % 8 == 0 ? (char)(xorshift(state) % 255 + 1)
                                              : alphabet[xorshift(state) % nalpha];
        buf[n] = '\0';
        return;
    }
    const char *s = seeds[xorshift(state) % nseeds];
    n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int edits = (int)(xorshift(state) % 6) + 1;
    for (int e = 0; e < edits; e++) {
        size_t at = n ? xorshift(state) % (n + 1) : 0;
        switch (xorshift(state) % 4) {
        case 0: /* insert */
            if (n + 2 < cap) {
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = alphabet[xorshift(state) % nalpha];
                n++;
            }
            break;
        case 1: /* delete */
            if (at < n) {
                memmove(buf + at, buf + at + 1, n - at);
                n--;
            }
            break;
        case 2: /* replace */
            if (at < n)
                buf[at] = (char)(xorshift(state) % 255 + 1);
            break;
        default: /* duplicate a tail */
            if (n + (n - at) + 1 < cap) {
                memcpy(buf + n, buf + at, n - at);
                n += n - at;
                buf[n] = '\0';
            }
            break;
        }
    }
}

marin_future_t *submit_opts(marin_runtime_t *rt, const char *task, const void *arg,
                            size_t len, const marin_task_options_t *o)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, task, arg, len, o, &f), MARIN_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}
