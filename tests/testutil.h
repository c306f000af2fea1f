/* Helpers shared by the Check suites. */
#ifndef MARIN_TESTUTIL_H
#define MARIN_TESTUTIL_H

#include <check.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "marin/marin.h"

/* Sleep, and the monotonic clock in ms. */
void sleep_ms(long ms);
int64_t now_ms(void);
/* Poll until *v >= want or timeout_ms passes; 1 when reached. */
int wait_for(atomic_int *v, int want, int64_t timeout_ms);
/* The int a test passed as a task argument (0 when absent). */
int arg_int(const void *arg, size_t len);
/* Open a runtime on @p uri, failing the test if it does not open. */
marin_runtime_t *open_rt(const char *uri);
/* Task options asking for the resources in @p spec ("cpus=1,TPU=4"). */
marin_task_options_t *opts_with_resources(const char *spec);
/* Submit, failing the test unless it is accepted. */
marin_future_t *submit_opts(marin_runtime_t *rt, const char *task, const void *arg,
                            size_t len, const marin_task_options_t *o);
/* A task that does nothing. */
int noop_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud);

/* Fill buf (cap bytes, cap >= 2) with a random string over @p alphabet (a
 * third of the time) or one of @p seeds after 1-6 random edits (insert,
 * delete, replace, duplicate a tail). Deterministic for a given *state
 * (xorshift64, nonzero). For the parsers' fuzz loops. */
void fuzz_input(char *buf, size_t cap, const char *const *seeds, size_t nseeds,
                const char *alphabet, uint64_t *state);

/* Run a suite in fork mode; returns the process exit code. */
int marin_test_run(Suite *s);

/* ck_assert that a marin call returned @p want; prints marin_last_error. */
#define ck_assert_marin(call, want)                                           \
    do {                                                                      \
        int rc_ = (call);                                                     \
        ck_assert_msg(rc_ == (want), "%s returned %d (%s), wanted %d: %s",    \
                      #call, rc_, marin_strerror(rc_), (int)(want),           \
                      marin_last_error());                                    \
    } while (0)

/* ck_assert that marin_last_error() contains @p needle. */
#define ck_assert_lasterr_has(needle)                                         \
    ck_assert_msg(strstr(marin_last_error(), (needle)) != NULL,               \
                  "last error '%s' lacks '%s'", marin_last_error(), (needle))

#endif
