/* marin-bench's pthread reference (bench_pthread_ref.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <marin/marin.h>

#include "bench_pthread_ref.h"
#include "bench_util.h"

struct ref_item {
    struct ref_item *next;
    int (*fn)(void *arg);
    void *arg;
    int result;
    int done;     /* guarded by ref_pool.done_mu */
    int waiting;  /* the submitter sleeps on done_cv for this item */
};

static int ref_noop(void *arg)
{
    (void)arg;
    return 0;
}

static int (*volatile ref_fn)(void *) = ref_noop;

static void *ref_worker(void *p)
{
    ref_pool *pool = p;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->head && !pool->stop) {
            pool->nidle++;
            pthread_cond_wait(&pool->cv, &pool->mu);
            pool->nidle--;
        }
        if (!pool->head)
            break;
        ref_item *it = pool->head;
        pool->head = it->next;
        if (!pool->head)
            pool->tail = NULL;
        pthread_mutex_unlock(&pool->mu);

        int result = it->fn(it->arg);

        pthread_mutex_lock(&pool->done_mu);
        it->result = result;
        it->done = 1;
        if (it->waiting)
            pthread_cond_signal(&pool->done_cv);
        pthread_mutex_unlock(&pool->done_mu);
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int ref_start(ref_pool *pool, long nthreads)
{
    memset(pool, 0, sizeof *pool);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pthread_mutex_init(&pool->done_mu, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    pool->threads = calloc((size_t)nthreads, sizeof *pool->threads);
    if (!pool->threads)
        return -1;
    for (long i = 0; i < nthreads; i++) {
        if (pthread_create(&pool->threads[i], NULL, ref_worker, pool) != 0)
            break;
        pool->nthreads++;
    }
    return pool->nthreads == nthreads ? 0 : -1;
}

void ref_stop(ref_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->stop = 1;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (long i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->done_mu);
    pthread_cond_destroy(&pool->done_cv);
}

static ref_item *ref_submit(ref_pool *pool)
{
    ref_item *it = malloc(sizeof *it);
    if (!it)
        return NULL;
    it->next = NULL;
    it->fn = ref_fn;
    it->arg = NULL;
    it->result = 0;
    it->done = 0;
    it->waiting = 0;
    pthread_mutex_lock(&pool->mu);
    if (pool->tail)
        pool->tail->next = it;
    else
        pool->head = it;
    pool->tail = it;
    if (pool->nidle > 0)
        pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return it;
}

static int ref_wait(ref_pool *pool, ref_item *it)
{
    pthread_mutex_lock(&pool->done_mu);
    while (!it->done) {
        it->waiting = 1;
        pthread_cond_wait(&pool->done_cv, &pool->done_mu);
    }
    pthread_mutex_unlock(&pool->done_mu);
    int result = it->result;
    free(it);
    return result;
}

int ref_submit_get(ref_pool *pool, ref_item **items, size_t n, double *rate)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        if (!(items[i] = ref_submit(pool))) {
            for (size_t j = 0; j < i; j++)
                ref_wait(pool, items[j]);
            fprintf(stderr, "marin-bench: out of memory\n");
            return MARIN_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++)
        ref_wait(pool, items[i]);
    *rate = (double)n / (now_s() - t0);
    return 0;
}

int ref_window(ref_pool *pool, size_t n, double *rate)
{
    ref_item *ring[WINDOW];
    size_t head = 0; /* oldest in flight */
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        if (i - head == WINDOW) {
            ref_wait(pool, ring[head % WINDOW]);
            head++;
        }
        if (!(ring[i % WINDOW] = ref_submit(pool))) {
            for (; head < i; head++)
                ref_wait(pool, ring[head % WINDOW]);
            fprintf(stderr, "marin-bench: out of memory\n");
            return MARIN_ENOMEM;
        }
    }
    for (; head < n; head++)
        ref_wait(pool, ring[head % WINDOW]);
    *rate = (double)n / (now_s() - t0);
    return 0;
}

/* The reference's submit latency, measured like marin_latency(). */
int ref_latency(ref_pool *pool, size_t iters, long pause_us, const char *name)
{
    int64_t *sub = malloc(iters * sizeof *sub);
    char buf[96];
    if (!sub) {
        fprintf(stderr, "marin-bench: out of memory\n");
        return MARIN_ENOMEM;
    }
    size_t warm = iters / 10;
    for (size_t i = 0; i < warm + iters; i++) {
        if (pause_us > 0) {
            struct timespec ts = {0, pause_us * 1000};
            nanosleep(&ts, NULL);
        }
        int64_t t0 = now_ns();
        ref_item *it = ref_submit(pool);
        int64_t t1 = now_ns();
        if (!it) {
            free(sub);
            fprintf(stderr, "marin-bench: out of memory\n");
            return MARIN_ENOMEM;
        }
        ref_wait(pool, it);
        if (i >= warm)
            sub[i - warm] = t1 - t0;
    }
    qsort(sub, iters, sizeof *sub, cmp_i64);
    snprintf(buf, sizeof buf, "ref.%s_p50", name);
    figure(buf, (double)sub[iters / 2] / 1e3, 2, "us");
    snprintf(buf, sizeof buf, "ref.%s_p99", name);
    figure(buf, (double)sub[iters * 99 / 100] / 1e3, 2, "us");
    free(sub);
    return 0;
}
