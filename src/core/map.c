/* Ordered map: bounded in-flight work, results in submission order.
 *
 * Written against the public API only (marin_submit, marin_future_get,
 * marin_future_cancel, marin_future_release), so it runs unchanged on every
 * backend; the one internal read is the runtime's MARIN_PROGRESS flag.
 * The window is a ring of futures: fill it from next(), block on the head
 * future, deliver it, release it, refill. Nothing is allocated per
 * item beyond what marin_submit does, and the only per-item system calls are
 * the waits on the head future.
 *
 * Failures are seen in index order, when they reach the head of the window:
 * a later index that fails while an earlier one still runs is noticed once
 * every earlier index has been delivered (the window keeps being refilled
 * until then; what was submitted after it is cancelled). */
#include "marin/map.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "marin/error.h"
#include "marin/future.h"
#include "marin/task.h"

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h" /* only for progress_env (MARIN_PROGRESS at open) */
#include "sync.h"

#define DEFAULT_MAX_IN_FLIGHT 1000
/* The ring starts at min(max_in_flight, RING_START) slots and doubles up to
 * max_in_flight, so a huge max_in_flight costs memory only when used. */
#define RING_START 1024
#define MSG_CAP 1024
#define BAR_PERIOD_NS 100000000LL /* at most ~10 redraws a second */
#define BAR_WIDTH 24
#define TEXT_MAX 127 /* '\r' and the text of one bar line */
#define LINE_CAP (2 * TEXT_MAX + 2) /* plus padding and '\n' */

struct marin_map_options {
    size_t max_in_flight;
    int continue_on_error;
    int progress_bar;
    marin_progress_fn progress;
    void *progress_userdata;
    marin_task_options_t *task_options; /* our own copy, or NULL */
};

/* ---- options ---- */

int marin_map_options_create(marin_map_options_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(out, "marin_map_options_create", "out is NULL");
    marin_map_options_t *o = marin__calloc(1, sizeof *o);
    if (!o)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM,
            "marin_map_options_create: out of memory allocating %zu bytes",
            sizeof *o));
    o->max_in_flight = DEFAULT_MAX_IN_FLIGHT;
    *out = o;
    return marin__api_exit(MARIN_OK);
}

int marin_map_options_set_max_in_flight(marin_map_options_t *o, size_t n)
{
    MARIN__CHECK_ARG(o, "marin_map_options_set_max_in_flight",
                     "options are NULL");
    MARIN__CHECK_ARG(n > 0, "marin_map_options_set_max_in_flight",
                     "max_in_flight must be at least 1, got 0");
    o->max_in_flight = n;
    return marin__api_exit(MARIN_OK);
}

int marin_map_options_set_continue_on_error(marin_map_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_map_options_set_continue_on_error",
                     "options are NULL");
    o->continue_on_error = on != 0;
    return marin__api_exit(MARIN_OK);
}

int marin_map_options_set_task_options(marin_map_options_t *o,
                                       const marin_task_options_t *t)
{
    MARIN__CHECK_ARG(o, "marin_map_options_set_task_options",
                     "options are NULL");
    marin_task_options_t *copy = NULL;
    if (t && marin__task_options_clone(t, &copy) != MARIN_OK)
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_map_options_set_task_options: out of memory"));
    marin_task_options_destroy(o->task_options);
    o->task_options = copy;
    return marin__api_exit(MARIN_OK);
}

int marin_map_options_set_progress(marin_map_options_t *o,
                                   marin_progress_fn fn, void *userdata)
{
    MARIN__CHECK_ARG(o, "marin_map_options_set_progress", "options are NULL");
    o->progress = fn;
    o->progress_userdata = fn ? userdata : NULL;
    return marin__api_exit(MARIN_OK);
}

int marin_map_options_set_progress_bar(marin_map_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_map_options_set_progress_bar",
                     "options are NULL");
    o->progress_bar = on != 0;
    return marin__api_exit(MARIN_OK);
}

void marin_map_options_destroy(marin_map_options_t *o)
{
    if (!o)
        return;
    marin_task_options_destroy(o->task_options);
    marin__free(o);
}

/* ---- progress bar ---- */

typedef struct {
    int on;          /* drawing at all: asked for and stderr is a terminal */
    int64_t start_ns;
    int64_t last_ns; /* last redraw */
    size_t last_len; /* visible length of the last line, for padding */
} bar_t;

/* Asked for by the options or by MARIN_PROGRESS=1 (read once, by
 * marin_runtime_open: STYLE.md keeps every getenv there), and drawn only
 * when stderr is a terminal. */
static void bar_init(bar_t *b, int asked)
{
    memset(b, 0, sizeof *b);
    if (!asked || !isatty(STDERR_FILENO))
        return;
    b->on = 1;
    b->start_ns = b->last_ns = marin__now_ns();
}

/* Redraw at most every BAR_PERIOD_NS; @p final always draws and ends the
 * line. Before next() has ended the total is unknown: count, rate and
 * elapsed time. Once it is known (ended): a bar, done/total, percent, rate
 * and ETA. The line is composed first and written with one fwrite (stderr
 * is unbuffered). */
static void bar_draw(bar_t *b, size_t done, size_t submitted, size_t failed,
                     int ended, int final)
{
    int64_t now = marin__now_ns();
    if (!final && now - b->last_ns < BAR_PERIOD_NS)
        return;
    b->last_ns = now;
    double elapsed = (double)(now - b->start_ns) / 1e9;
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    char line[LINE_CAP];
    size_t n = 0;
#define BAR_PUT(...)                                                          \
    do {                                                                      \
        if (n < sizeof line) {                                                \
            int w_ = snprintf(line + n, sizeof line - n, __VA_ARGS__);        \
            if (w_ > 0)                                                       \
                n += (size_t)w_;                                              \
        }                                                                     \
    } while (0)
    BAR_PUT("\r");
    if (ended && submitted > 0) {
        double frac = (double)done / (double)submitted;
        size_t fill = (size_t)(frac * BAR_WIDTH);
        char bar[BAR_WIDTH + 1];
        for (size_t i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        BAR_PUT("[%s] %zu/%zu %3.0f%% %.1f/s", bar, done, submitted,
                frac * 100.0, rate);
        if (final)
            BAR_PUT(" %.1fs", elapsed);
        else if (rate > 0)
            BAR_PUT(" ETA %.1fs", (double)(submitted - done) / rate);
    } else {
        BAR_PUT("%zu done, %zu submitted %.1f/s %.1fs", done, submitted,
                rate, elapsed);
    }
    if (failed)
        BAR_PUT(" (%zu failed)", failed);
#undef BAR_PUT
    if (n > TEXT_MAX)
        n = TEXT_MAX;
    size_t visible = n - 1; /* without the '\r' */
    /* Blank what is left of a longer previous line (last_len < TEXT_MAX,
     * so this and the newline fit in LINE_CAP). */
    for (size_t i = visible; i < b->last_len; i++)
        line[n++] = ' ';
    if (final)
        line[n++] = '\n';
    b->last_len = visible;
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}

/* ---- the window ---- */

typedef struct {
    marin_future_t **ring;
    size_t cap;   /* slots */
    size_t head;  /* slot of the oldest undelivered future */
    size_t count; /* futures in flight: submitted - delivered */
} window_t;

/* Double the ring (at most to @p max slots), keeping the order. */
static int window_grow(window_t *w, size_t max)
{
    size_t cap = w->cap > max / 2 ? max : w->cap * 2;
    marin_future_t **ring = marin__malloc(cap * sizeof *ring);
    if (!ring)
        return marin__err(MARIN_ENOMEM,
                          "marin_map_ordered: out of memory growing the "
                          "window to %zu futures",
                          cap);
    for (size_t i = 0; i < w->count; i++)
        ring[i] = w->ring[(w->head + i) % w->cap];
    marin__free(w->ring);
    w->ring = ring;
    w->cap = cap;
    w->head = 0;
    return MARIN_OK;
}

/* Cancel and release every future still in flight, oldest first (backends
 * start pending work oldest first, so this stops the most of it). */
static void window_cancel_all(window_t *w)
{
    for (size_t i = 0; i < w->count; i++) {
        marin_future_t *f = w->ring[(w->head + i) % w->cap];
        (void)marin_future_cancel(f); /* MARIN_ESTATE: already finished */
        marin_future_release(f);
    }
    w->count = 0;
}

/* ---- the map ---- */

/* Semantics beyond the header:
 * - next() returning > 0 counts as an item (1 is the documented value).
 * - next() returning < 0 aborts at once: nothing more is delivered (indices
 *   already submitted are cancelled, not drained), the code is returned
 *   and the message says next aborted.
 * - on_result() returning nonzero aborts the same way and its value is
 *   returned as is.
 * - In default mode the failed index is delivered after what is still in
 *   flight has been cancelled; whatever on_result returns for it, the
 *   task's status is returned, with the task's error as the message.
 * - A failing marin_submit() (MARIN_ENOTFOUND, MARIN_EINFEASIBLE,
 *   MARIN_ESTATE, ...) aborts in both modes with its code and message.
 * - The progress callback runs after each delivery, failed ones included.
 * - MARIN_PROGRESS=1 in the environment when the runtime was opened
 *   switches the progress bar on, as the option does. */
int marin_map_ordered(marin_runtime_t *rt, const char *task,
                      marin_next_fn next, marin_result_fn on_result,
                      const marin_map_options_t *opts, void *userdata)
{
    MARIN__CHECK_ARG(rt, "marin_map_ordered", "runtime is NULL");
    MARIN__CHECK_ARG(task, "marin_map_ordered", "task name is NULL");
    MARIN__CHECK_ARG(next, "marin_map_ordered", "next is NULL");
    MARIN__CHECK_ARG(on_result, "marin_map_ordered", "on_result is NULL");

    size_t max = opts ? opts->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    int keep_going = opts ? opts->continue_on_error : 0;
    const marin_task_options_t *topts = opts ? opts->task_options : NULL;
    marin_progress_fn progress = opts ? opts->progress : NULL;
    void *progress_ud = opts ? opts->progress_userdata : NULL;

    window_t w = {NULL, max < RING_START ? max : RING_START, 0, 0};
    w.ring = marin__malloc(w.cap * sizeof *w.ring);
    if (!w.ring)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM,
            "marin_map_ordered: out of memory allocating a window of %zu "
            "futures",
            w.cap));

    bar_t bar;
    bar_init(&bar, (opts && opts->progress_bar) || rt->progress_env);

    size_t submitted = 0, delivered = 0, failed = 0;
    int ended = 0, rc = MARIN_OK, first_failure = MARIN_OK;
    char msg[MSG_CAP];
    msg[0] = '\0';

    for (;;) {
        /* Fill the window. */
        while (!ended && w.count < max) {
            const void *arg = NULL;
            size_t len = 0;
            int nr = next(&arg, &len, userdata);
            if (nr == 0) {
                ended = 1;
                break;
            }
            if (nr < 0) {
                rc = nr;
                snprintf(msg, sizeof msg,
                         "marin_map_ordered: next returned %d (%s) before "
                         "index %zu of task '%s'; aborted",
                         nr, marin_strerror(nr), submitted, task);
                goto abort;
            }
            if (w.count == w.cap && (rc = window_grow(&w, max)) != MARIN_OK) {
                snprintf(msg, sizeof msg, "%s", marin_last_error());
                goto abort;
            }
            marin_future_t *f = NULL;
            rc = marin_submit(rt, task, arg, len, topts, &f);
            if (rc != MARIN_OK) {
                snprintf(msg, sizeof msg,
                         "marin_map_ordered: submitting index %zu: %s",
                         submitted, marin_last_error());
                goto abort;
            }
            w.ring[(w.head + w.count) % w.cap] = f;
            w.count++;
            submitted++;
        }
        if (w.count == 0)
            break;

        /* Deliver the head. */
        marin_future_t *f = w.ring[w.head];
        w.head = w.head + 1 == w.cap ? 0 : w.head + 1;
        w.count--;
        const void *data = NULL;
        size_t len = 0;
        int status = marin_future_get(f, -1, &data, &len);
        size_t index = delivered;
        if (status != MARIN_OK) {
            data = NULL;
            len = 0;
            failed++;
            if (first_failure == MARIN_OK) {
                const char *why = marin_future_error(f);
                snprintf(msg, sizeof msg,
                         "marin_map_ordered: task '%s' failed at index %zu: "
                         "%s",
                         task, index, why && why[0] ? why
                                                    : marin_strerror(status));
                first_failure = status;
            }
            if (!keep_going) {
                window_cancel_all(&w);
                /* on_result may read marin_last_error(): the failure's. */
                marin__err(status, "%s", msg);
                (void)on_result(index, status, NULL, 0, userdata);
                marin_future_release(f);
                delivered++;
                if (progress)
                    progress(delivered, submitted, failed, progress_ud);
                rc = status;
                goto out;
            }
        }
        int ur = on_result(index, status, data, len, userdata);
        marin_future_release(f);
        delivered++;
        if (progress)
            progress(delivered, submitted, failed, progress_ud);
        if (bar.on)
            bar_draw(&bar, delivered, submitted, failed, ended, 0);
        if (ur != 0) {
            rc = ur;
            snprintf(msg, sizeof msg,
                     "marin_map_ordered: on_result returned %d at index %zu "
                     "of task '%s'; aborted",
                     ur, index, task);
            goto abort;
        }
    }
    rc = first_failure;
    goto out;

abort:
    window_cancel_all(&w);
out:
    marin__free(w.ring);
    if (bar.on)
        bar_draw(&bar, delivered, submitted, failed, ended, 1);
    if (rc == MARIN_OK)
        return marin__api_exit(MARIN_OK);
    /* The calls above (cancel, release, the callbacks) may have replaced
     * this thread's message: set it again from the saved copy. */
    return marin__api_exit(marin__err(rc, "%s", msg));
}
