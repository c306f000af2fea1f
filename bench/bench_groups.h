/* marin-bench groups beyond tasks: actors, leases, the executor
 * (bench_actor.c). Each prints its figures and returns 0 or a marin code. */
#ifndef MARIN_BENCH_GROUPS_H
#define MARIN_BENCH_GROUPS_H

#include <stddef.h>

#include <marin/marin.h>

/* Sync round trips (n_sync, beside a condvar ping-pong), pipelined calls
 * (n_pipe through one handle), and ncpu callers to ncpu actors. */
int bench_actors(marin_runtime_t *rt, size_t n_sync, size_t n_pipe, long ncpu,
                 int no_ref);
/* Lease acquire+release pairs: in memory (n) and file-backed (n/20). */
int bench_leases(marin_runtime_t *rt, size_t n);
/* Executor overhead per step over a chain of nsteps no-op steps. */
int bench_executor(marin_runtime_t *rt, size_t nsteps);
/* The redis backend end to end (bench_redis.c): its own redis-server, two
 * marin-worker processes, n no-op tasks per throughput run, lat_samples
 * sequential round trips, and the redis-benchmark XADD and Celery
 * references. Skipped (0, with a `#` line) when redis-server is missing. */
int bench_redis(size_t n, size_t lat_samples);

#endif
