/* The local backend's process pool (`local://?processes=N`): tasks are
 * scheduled as always, but the worker thread that runs an attempt hands it
 * to one of N worker processes over a socket (codec frames, see
 * src/core/worker_serve.c) and waits for its result, so CPU-bound work in
 * one interpreter (Python) uses every core.
 *
 * Supervision: a worker that dies mid-task (crash, OOM killer, kill -9)
 * fails the attempt as a system failure, MARIN_EWORKER, which the usual
 * retry budget covers; the dead process is reaped and a new one started
 * when a task next needs it. One that died while idle is replaced before
 * the next task is sent, without charging that task. Reads go in 100 ms
 * slices that look at cancellation and at the worker's exit, so a stalled
 * worker cannot hold a thread (or the runtime's close). A cancelled or timed-out attempt kills its
 * worker (the only way to stop foreign code) and is replaced the same way.
 *
 * The worker command is `worker=CMD` (split on spaces; Python passes its
 * interpreter and `-m marin.worker`), else this program itself again
 * (/proc/self/exe with the same arguments): its marin_runtime_open() sees
 * MARIN_LOCAL_WORKER_FD and serves instead of returning, so C programs must
 * register their tasks before they open the runtime. */
#define _GNU_SOURCE 1
#define MARIN_EXPERIMENTAL 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "codec.h"
#include "fail.h"
#include "local_internal.h"

extern char **environ;

#define WORKER_FD 3
#define HELLO_TIMEOUT_MS 60000
#define POLL_SLICE_MS 100
#define RESULT_CAP ((size_t)1 << 30)

typedef struct proc {
    pid_t pid;      /* 0: not running */
    int fd;
    int busy;
} proc;

struct local_procs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    proc *p;
    size_t n;
    char **argv;    /* the worker command, NULL-terminated */
    uint64_t next_id;
    int stopping;
};

/* ---- the worker command ---- */

static void free_argv(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++)
        marin__free(argv[i]);
    marin__free(argv);
}

static char **split_cmd(const char *cmd)
{
    size_t n = 0, cap = 8;
    char **argv = marin__calloc(cap, sizeof *argv);
    for (const char *p = cmd; argv && *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        if (n + 2 > cap) {
            char **grown = marin__realloc(argv, 2 * cap * sizeof *argv);
            if (!grown)
                goto oom;
            argv = grown;
            memset(argv + cap, 0, cap * sizeof *argv);
            cap *= 2;
        }
        if (!(argv[n] = marin__malloc((size_t)(end - p) + 1)))
            goto oom;
        memcpy(argv[n], p, (size_t)(end - p));
        argv[n++][end - p] = '\0';
        p = end;
    }
    return argv;
oom:
    free_argv(argv);
    return NULL;
}

/* This program again: /proc/self/exe with the arguments it was started with. */
static char **self_cmd(void)
{
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (!f)
        return NULL;
    size_t n = 0, cap = 8;
    char **argv = marin__calloc(cap, sizeof *argv);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while (argv && (got = getdelim(&line, &lcap, '\0', f)) > 0) {
        if (n + 2 > cap) {
            char **grown = marin__realloc(argv, 2 * cap * sizeof *argv);
            if (!grown) {
                free_argv(argv);
                argv = NULL;
                break;
            }
            argv = grown;
            memset(argv + cap, 0, cap * sizeof *argv);
            cap *= 2;
        }
        if (!(argv[n] = marin__strdup(n == 0 ? "/proc/self/exe" : line))) {
            free_argv(argv);
            argv = NULL;
            break;
        }
        n++;
    }
    free(line);
    fclose(f);
    if (argv && n == 0) {
        free_argv(argv);
        argv = NULL;
    }
    return argv;
}

/* ---- starting and stopping workers (called with mu held) ---- */

/* The slot no longer has a worker (its process is reaped already). */
static void forget(proc *w)
{
    close(w->fd);
    w->pid = 0;
    w->fd = -1;
}

static void reap(proc *w, char *why, size_t cap)
{
    if (!w->pid)
        return;
    int st = 0;
    pid_t r = waitpid(w->pid, &st, WNOHANG);
    if (r == 0) { /* still running (its socket broke): make sure */
        kill(w->pid, SIGKILL);
        r = waitpid(w->pid, &st, 0);
    }
    if (why && r == w->pid) {
        if (WIFSIGNALED(st))
            snprintf(why, cap, "worker process %d was killed by signal %d (%s)", w->pid,
                     WTERMSIG(st), strsignal(WTERMSIG(st)));
        else if (WIFEXITED(st))
            snprintf(why, cap, "worker process %d exited with status %d", w->pid,
                     WEXITSTATUS(st));
    }
    forget(w);
}

/* Wait for the worker's HELLO frame, so a worker that cannot start (a bad
 * command, a missing module) is reported at once. */
static int await_hello(local_state *s, proc *w)
{
    struct pollfd pfd = {w->fd, POLLIN, 0};
    int r;
    do
        r = poll(&pfd, 1, HELLO_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        int pid = w->pid;
        reap(w, NULL, 0);
        return marin__err(MARIN_EUNAVAILABLE, "local backend: worker process %d did not "
                          "start within %d s (command: %s)", pid, HELLO_TIMEOUT_MS / 1000,
                          s->procs->argv[0]);
    }
    uint8_t type = 0;
    void *payload = NULL;
    size_t len = 0;
    int rc = marin__frame_read_fd(w->fd, 1024, &type, &payload, &len);
    marin__free(payload);
    if (rc == MARIN_OK && type != MARIN__FRAME_HELLO)
        rc = marin__err(MARIN_EPROTO, "local backend: worker process %d spoke first with a "
                        "frame of type %u, not hello", w->pid, type);
    if (rc != MARIN_OK) {
        char why[256] = "";
        char detail[512];
        snprintf(detail, sizeof detail, "%s", marin__err_msg());
        reap(w, why, sizeof why);
        return marin__err(MARIN_EUNAVAILABLE, "local backend: a worker process (command: "
                          "%s) did not start: %s%s%s", s->procs->argv[0], detail,
                          why[0] ? "; " : "", why);
    }
    return MARIN_OK;
}

static int spawn_worker(local_state *s, proc *w)
{
    struct local_procs *ps = s->procs;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return marin__err(MARIN_EUNAVAILABLE, "local backend: socketpair for a worker "
                          "process: %s", strerror(errno));
    if (sv[1] == WORKER_FD) { /* dup2 onto itself would keep close-on-exec */
        int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1);
        close(sv[1]);
        sv[1] = moved;
    }
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = marin__calloc(nenv + 2, sizeof *envp);
    char fdvar[64];
    snprintf(fdvar, sizeof fdvar, "MARIN_LOCAL_WORKER_FD=%d", WORKER_FD);
    posix_spawn_file_actions_t fa;
    int fa_ok = posix_spawn_file_actions_init(&fa) == 0;
    int rc = MARIN_OK;
    if (!envp || !fa_ok || sv[1] < 0) {
        rc = marin__err(MARIN_ENOMEM, "local backend: out of memory starting a worker");
    } else {
        size_t k = 0;
        for (size_t i = 0; i < nenv; i++)
            if (strncmp(environ[i], "MARIN_LOCAL_WORKER_FD=", 22) != 0)
                envp[k++] = environ[i];
        envp[k] = fdvar;
        posix_spawn_file_actions_adddup2(&fa, sv[1], WORKER_FD);
        /* the driver's input is not the worker's to read */
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        pid_t pid;
        int err = posix_spawn(&pid, ps->argv[0], &fa, NULL, ps->argv, envp);
        if (err != 0) {
            rc = marin__err(MARIN_EUNAVAILABLE, "local backend: cannot start the worker "
                            "command '%s': %s", ps->argv[0], strerror(err));
        } else {
            w->pid = pid;
            w->fd = sv[0];
            sv[0] = -1;
        }
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    marin__free(envp);
    if (sv[1] >= 0)
        close(sv[1]);
    if (sv[0] >= 0)
        close(sv[0]);
    if (rc != MARIN_OK)
        return rc;
    return await_hello(s, w);
}

int marin__local_procs_start(local_state *s, long long n, const char *cmd)
{
    if (n < 1 || n > 1024)
        return marin__err(MARIN_EINVAL, "marin_runtime_open: processes=%lld is outside "
                          "1..1024", n);
    struct local_procs *ps = marin__calloc(1, sizeof *ps);
    if (!ps)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cv, NULL);
    s->procs = ps;
    ps->n = (size_t)n;
    ps->p = marin__calloc(ps->n, sizeof *ps->p);
    ps->argv = cmd && *cmd ? split_cmd(cmd) : self_cmd();
    if (!ps->p || !ps->argv || !ps->argv[0])
        return marin__err(cmd ? MARIN_EINVAL : MARIN_EUNAVAILABLE,
                          "marin_runtime_open: no worker command for processes=%lld%s", n,
                          cmd ? ": worker= is empty" : " (cannot read /proc/self/cmdline)");
    for (size_t i = 0; i < ps->n; i++)
        ps->p[i].fd = -1;
    /* Start them all now: a command that cannot serve fails the open. */
    for (size_t i = 0; i < ps->n; i++) {
        int rc = spawn_worker(s, &ps->p[i]);
        if (rc != MARIN_OK)
            return rc;
    }
    return MARIN_OK;
}

void marin__local_procs_stop(local_state *s)
{
    struct local_procs *ps = s->procs;
    if (!ps)
        return;
    pthread_mutex_lock(&ps->mu);
    ps->stopping = 1;
    /* Closing the sockets tells idle workers to exit; give them a moment. */
    for (size_t i = 0; ps->p && i < ps->n; i++)
        if (ps->p[i].pid && ps->p[i].fd >= 0)
            shutdown(ps->p[i].fd, SHUT_WR);
    int64_t deadline = marin__now_ms() + 2000;
    for (size_t i = 0; ps->p && i < ps->n; i++) {
        proc *w = &ps->p[i];
        while (w->pid && waitpid(w->pid, NULL, WNOHANG) == 0 && marin__now_ms() < deadline) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        reap(w, NULL, 0); /* kills what is still there */
    }
    pthread_mutex_unlock(&ps->mu);
}

void marin__local_procs_free(local_state *s)
{
    struct local_procs *ps = s->procs;
    if (!ps)
        return;
    marin__local_procs_stop(s);
    free_argv(ps->argv);
    marin__free(ps->p);
    pthread_mutex_destroy(&ps->mu);
    pthread_cond_destroy(&ps->cv);
    marin__free(ps);
    s->procs = NULL;
}

/* ---- running an attempt in a worker ---- */

static int encode_task(struct marin__task *t, marin_task_ctx_t *ctx, uint64_t id,
                       marin__wbuf *w)
{
    marin__wbuf_init(w);
    marin__wbuf_u64(w, id);
    marin__wbuf_str(w, t->name);
    marin__wbuf_str(w, t->opts->label);
    marin__wbuf_bytes(w, t->arg, t->arg_len);
    marin__wbuf_u32(w, (uint32_t)t->attempt);
    marin__wbuf_u32(w, (uint32_t)t->opts->nenv);
    for (size_t i = 0; i < t->opts->nenv; i++) {
        marin__wbuf_str(w, t->opts->env_keys[i]);
        marin__wbuf_str(w, t->opts->env_values[i]);
    }
    marin__wbuf_u32(w, (uint32_t)t->ndeps);
    for (size_t i = 0; i < t->ndeps; i++)
        marin__wbuf_bytes(w, t->deps[i]->result, t->deps[i]->result_len);
    int ids[MARIN__MAX_GPUS];
    size_t ngpus = 0;
    if (marin_task_gpu_ids(ctx, ids, MARIN__MAX_GPUS, &ngpus) != MARIN_OK)
        ngpus = 0;
    marin__wbuf_u32(w, (uint32_t)ngpus);
    for (size_t i = 0; i < ngpus; i++)
        marin__wbuf_i32(w, ids[i]);
    if (w->failed)
        return marin__err(MARIN_ENOMEM, "out of memory sending task '%s' to a worker "
                          "process", t->name);
    return MARIN_OK;
}

/* Apply a RESULT frame to ctx; returns the task's code. */
static int apply_result(marin_task_ctx_t *ctx, const void *payload, size_t len,
                        uint64_t id, int *died, int *bad)
{
    marin__rbuf r;
    marin__rbuf_init(&r, payload, len, "result frame");
    uint64_t rid;
    int32_t status;
    const void *data;
    size_t dlen;
    uint8_t d;
    int rc;
    if ((rc = marin__rbuf_u64(&r, "id", &rid)) != MARIN_OK ||
        (rc = marin__rbuf_i32(&r, "status", &status)) != MARIN_OK ||
        (rc = marin__rbuf_bytes(&r, "data", &data, &dlen)) != MARIN_OK ||
        (rc = marin__rbuf_u8(&r, "died", &d)) != MARIN_OK ||
        (rc = marin__rbuf_end(&r)) != MARIN_OK) {
        *bad = 1;
        return rc;
    }
    if (rid != id) {
        *bad = 1;
        return marin__err(MARIN_EPROTO, "result frame for task %llu where %llu was "
                          "expected", (unsigned long long)rid, (unsigned long long)id);
    }
    if (status == MARIN_OK)
        return marin_task_return(ctx, data, dlen);
    if (status > 0)
        status = MARIN_ETASK;
    char *msg = marin__malloc(dlen + 1);
    if (!msg)
        return marin__err(MARIN_ENOMEM, "out of memory reading a task's failure");
    memcpy(msg, data, dlen);
    msg[dlen] = '\0';
    if (d) {
        *died = 1;
        rc = marin__err(MARIN_EWORKER, "%s", msg);
    } else if (status == MARIN_ETASK) {
        rc = marin_task_fail(ctx, msg);
    } else {
        rc = marin__err(status, "%s", msg);
    }
    marin__free(msg);
    return rc;
}

/* Has the worker exited (reaped here when so)? Called by its slot's owner. */
static int exited(proc *w)
{
    return w->pid && waitpid(w->pid, NULL, WNOHANG) == w->pid;
}

/* Read exactly @p n bytes, in slices, giving up when the attempt is
 * cancelled or the worker exits: a worker that stalls mid-frame must not
 * hold the thread (and the runtime's close) forever. */
static int read_exact(proc *w, marin_task_ctx_t *ctx, void *buf, size_t n, int *cancelled)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {w->fd, POLLIN, 0};
        int r = poll(&pfd, 1, POLL_SLICE_MS);
        if (r < 0 && errno != EINTR)
            return marin__err(MARIN_EUNAVAILABLE, "poll on worker process %d: %s", w->pid,
                              strerror(errno));
        if (r > 0) {
            ssize_t k = read(w->fd, (char *)buf + got, n - got);
            if (k > 0) {
                got += (size_t)k;
                continue;
            }
            if (k == 0)
                return marin__err(MARIN_EUNAVAILABLE, "worker process %d closed its socket "
                                  "after %zu of %zu bytes", w->pid, got, n);
            if (errno != EINTR && errno != EAGAIN)
                return marin__err(MARIN_EUNAVAILABLE, "reading from worker process %d: %s",
                                  w->pid, strerror(errno));
            continue;
        }
        if (marin_task_cancelled(ctx)) {
            *cancelled = 1;
            return MARIN_ECANCELED;
        }
        if (exited(w)) {
            w->pid = -w->pid; /* reaped: remember it for the message */
            return marin__err(MARIN_EUNAVAILABLE, "worker process %d exited", -w->pid);
        }
    }
    return MARIN_OK;
}

/* One RESULT frame, read in slices (see read_exact). */
static int read_result(proc *w, marin_task_ctx_t *ctx, void **payload, size_t *plen,
                       int *cancelled)
{
    unsigned char hdr[MARIN__FRAME_HEADER];
    uint8_t type;
    size_t stored;
    int rc = read_exact(w, ctx, hdr, sizeof hdr, cancelled);
    if (rc == MARIN_OK)
        rc = marin__frame_header(hdr, RESULT_CAP, &type, &stored);
    if (rc == MARIN_OK && type != MARIN__FRAME_RESULT)
        rc = marin__err(MARIN_EPROTO, "worker process %d answered with a frame of type %u",
                        w->pid, type);
    if (rc != MARIN_OK)
        return rc;
    unsigned char *frame = marin__malloc(sizeof hdr + stored);
    if (!frame)
        return marin__err(MARIN_ENOMEM, "out of memory for a result of %zu bytes", stored);
    memcpy(frame, hdr, sizeof hdr);
    rc = read_exact(w, ctx, frame + sizeof hdr, stored, cancelled);
    if (rc == MARIN_OK)
        rc = marin__frame_decode(frame, sizeof hdr + stored, RESULT_CAP, &type, payload,
                                 plen);
    marin__free(frame);
    return rc;
}

int marin__local_procs_run(void *ud, marin_task_ctx_t *ctx, struct marin__task *t,
                           int *died)
{
    local_state *s = ud;
    struct local_procs *ps = s->procs;
    pthread_mutex_lock(&ps->mu);
    proc *w = NULL;
    while (!ps->stopping && !marin_task_cancelled(ctx)) {
        for (size_t i = 0; i < ps->n && !w; i++)
            if (!ps->p[i].busy)
                w = &ps->p[i];
        if (w)
            break;
        pthread_cond_wait(&ps->cv, &ps->mu);
    }
    if (!w) {
        pthread_mutex_unlock(&ps->mu);
        return marin__err(MARIN_ECANCELED, ps->stopping ? "the runtime is closing"
                                                        : "the task was cancelled");
    }
    w->busy = 1; /* the slot is this thread's until `done` */
    uint64_t id = ++ps->next_id;
    pthread_mutex_unlock(&ps->mu);

    marin__wbuf frame;
    int rc = encode_task(t, ctx, id, &frame);
    if (rc == MARIN_OK && frame.len > RESULT_CAP - MARIN__FRAME_HEADER) {
        marin__err(MARIN_ETOOBIG, "task '%s' with its argument and dependencies is %zu "
                   "bytes, over the %zu-byte cap of a frame to a worker process", t->name,
                   frame.len, (size_t)(RESULT_CAP - MARIN__FRAME_HEADER));
        rc = marin_task_fail(ctx, marin__err_msg()); /* retrying would not help */
        marin__wbuf_free(&frame);
        goto done;
    }
    /* A worker that died while idle is replaced, and the task sent again,
     * without charging the task an attempt: it never saw it. */
    for (int tries = 0; rc == MARIN_OK && tries < 2; tries++) {
        if (w->pid && exited(w))
            forget(w);
        if (!w->pid && (rc = spawn_worker(s, w)) != MARIN_OK)
            break;
        rc = marin__frame_write_fd(w->fd, MARIN__FRAME_TASK, frame.data, frame.len);
        if (rc == MARIN_OK)
            break;
        if (tries == 0) { /* the worker went away before reading it: once more */
            reap(w, NULL, 0);
            rc = MARIN_OK;
        }
    }
    marin__wbuf_free(&frame);
    int lost = rc != MARIN_OK && w->pid > 0;
    int cancelled = 0;
    if (rc == MARIN_OK) {
        void *payload = NULL;
        size_t plen = 0;
        rc = read_result(w, ctx, &payload, &plen, &cancelled);
        if (rc == MARIN_OK) {
            rc = apply_result(ctx, payload, plen, id, died, &lost);
        } else if (cancelled) {
            /* Cancelled or past its timeout: the future is settled already;
             * stopping foreign code means ending its process. */
            kill(w->pid, SIGKILL);
            lost = 1;
            rc = marin__err(MARIN_ECANCELED, "task '%s' was cancelled; its worker process "
                            "%d was killed", t->name, w->pid);
        } else if (rc == MARIN_ETOOBIG) {
            /* its result is not going to be read: out of step. Too big is
             * the task's own doing, not the worker's: not retried */
            lost = 1;
            rc = marin_task_fail(ctx, marin__err_msg());
        } else {
            lost = 1;
            *died = 1;
        }
        marin__free(payload);
    }
    if (lost || w->pid < 0) {
        char why[256] = "";
        int pid = w->pid < 0 ? -w->pid : w->pid;
        if (w->pid < 0) { /* reaped by read_exact */
            snprintf(why, sizeof why, "worker process %d exited", pid);
            forget(w);
        } else {
            reap(w, why, sizeof why);
        }
        if (*died)
            rc = marin__err(MARIN_EWORKER, "the worker process running it died (%s)",
                            why[0] ? why : "its connection broke");
    }
done:
    pthread_mutex_lock(&ps->mu);
    w->busy = 0;
    pthread_cond_signal(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    return rc;
}
