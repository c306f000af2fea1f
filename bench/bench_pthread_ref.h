/* The raw pthread reference that marin-bench runs beside marin in the same
 * process: a mutex+condvar FIFO of heap items served by a fixed set of
 * threads, each item running a no-op. Its figures are named ref.*. */
#ifndef MARIN_BENCH_PTHREAD_REF_H
#define MARIN_BENCH_PTHREAD_REF_H

#include <pthread.h>
#include <stddef.h>

typedef struct ref_item ref_item;  /* one submitted call */

typedef struct ref_pool {
    pthread_mutex_t mu;       /* queue */
    pthread_cond_t cv;
    ref_item *head, *tail;
    int nidle, stop;
    pthread_mutex_t done_mu;  /* completion */
    pthread_cond_t done_cv;
    pthread_t *threads;
    long nthreads;
} ref_pool;

/* Start @p nthreads workers; -1 when not all started. ref_stop undoes a
 * partial start too. */
int ref_start(ref_pool *pool, long nthreads);
void ref_stop(ref_pool *pool);

/* The reference figures; each returns 0 or MARIN_ENOMEM (printed).
 * Submit n, then wait for each in order; @p items has room for n. */
int ref_submit_get(ref_pool *pool, ref_item **items, size_t n, double *rate);
/* n calls, at most WINDOW in flight, waited for oldest first. */
int ref_window(ref_pool *pool, size_t n, double *rate);
/* Prints ref.NAME_p50 and ref.NAME_p99 of the submit latency. */
int ref_latency(ref_pool *pool, size_t iters, long pause_us, const char *name);

#endif
