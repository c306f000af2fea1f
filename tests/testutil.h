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
/* Open a runtime on @p uri (mapped for the backend under test, see
 * marin_test_map_uri), failing the test if it does not open. */
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

/* Run a suite in fork mode; returns the process exit code. Calls
 * marin_test_backend_setup first. */
int marin_test_run(Suite *s);

/* ---- the backend under test: MARIN_TEST_BACKEND ----
 *
 * Unset or "local": runtimes open on the URIs the tests give. "redis": the
 * same suites run again on Redis ("the same program on another backend is
 * tested, not claimed"). marin_test_backend_setup (called by
 * marin_test_run, in the suite's main process before Check forks the
 * cases) starts one redis-server on a free loopback port
 * (tests/redis_fixture.h) and stops it at exit; every case, being a child
 * of that process, shares it, each runtime in a namespace of its own.
 * open_rt and marin_test_runtime_open then map local URIs:
 *
 *   local, local://?resources=SPEC
 *     -> redis://127.0.0.1:PORT?namespace=<unique>&worker_resources=SPEC&
 *        MARIN_TEST_REDIS_TIMINGS
 *        (SPEC: what local would detect on this machine when not given;
 *        worker_resources= makes the runtime its own in-process worker)
 *   local://?state=DIR[&resources=SPEC]
 *     -> the same with namespace=st-<hash of DIR>: runtimes (and processes)
 *        opening one state directory share one namespace, as they share
 *        one store on local
 *
 * Any other local:// parameter (max_threads, processes, ...) cannot be
 * mapped: the open fails, naming it (mark such cases SKIP_UNLESS_LOCAL).
 * Other URIs, and NULL, pass unchanged. MARIN_TEST_VERBOSE=1 prints each
 * mapping on stderr.
 *
 * Setup exits 77 (meson: skipped), with the reason printed, when
 * redis-server or hiredis is missing, or when libmarin was built without
 * the redis backend (MARIN_TEST_REDIS_FORCE=1 runs anyway: every open then
 * fails with MARIN_ENOBACKEND). */

/* Short timings for the test runs (URI parameters of redis://). */
#define MARIN_TEST_REDIS_TIMINGS                                              \
    "heartbeat_ms=100&worker_ttl_ms=600&reclaim_ms=200&grace_ms=1500&block_ms=100"

/* 1 when MARIN_TEST_BACKEND=redis. */
int marin_test_backend_is_redis(void);
/* See above; idempotent. Exits on an unusable setting (1) or a skip (77). */
void marin_test_backend_setup(void);
/* Map @p uri for the backend under test into buf: 1 mapped, 0 unchanged
 * (buf holds a copy; "" for NULL), -1 cannot be mapped (buf says why). */
int marin_test_map_uri(const char *uri, char *buf, size_t cap);
/* marin_runtime_open on the mapped URI (for code outside a Check case, such
 * as forked children, that cannot use open_rt). Under redis it starts the
 * server on first use when setup has not (stopped at this process's exit).
 * An unmappable URI: MARIN_EINVAL (*out NULL), the reason printed on
 * stderr. */
int marin_test_runtime_open(const char *uri, marin_runtime_t **out);
/* Print "SKIP <case>: <reason>" on stderr (@p fn: __func__ of the case). */
void marin_test_skip(const char *fn, const char *reason);

/* The reason shared by the OOM loops: marin__test_fail_alloc_after counts
 * allocations process-wide, and on redis the backend's own threads
 * (connections, heartbeats, stream reads) take from that count, so the
 * exact outcomes these loops assert are local's. */
#define SKIP_REASON_OOM                                                       \
    "allocation fault injection is process-wide: on redis the backend's "    \
    "own threads take from the count"

/* At the top of a case that is inherently about the local backend: under
 * MARIN_TEST_BACKEND=redis it prints why and returns (the case passes). */
#define SKIP_UNLESS_LOCAL(reason)                                             \
    do {                                                                      \
        if (marin_test_backend_is_redis()) {                                  \
            marin_test_skip(__func__, (reason));                              \
            return;                                                           \
        }                                                                     \
    } while (0)

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
