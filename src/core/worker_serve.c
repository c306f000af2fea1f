/* The worker side of the local backend's process pool
 * (`local://?processes=N`): a process started by its driver with a socket
 * on a file descriptor reads TASK frames, runs each registered task on this
 * thread and writes back a RESULT frame, until the driver closes the socket.
 *
 *   TASK   u64 id, str name, str label, bytes arg, u32 attempt,
 *          u32 nenv, nenv x (str key, str value), u32 ndeps, ndeps x bytes,
 *          u32 ngpus, ngpus x i32
 *   RESULT u64 id, i32 status, bytes (the result when status is 0, else the
 *          failure's message), u8 died (marin_test_kill_worker was called)
 *   HELLO  u32 pid (once, first)
 */
#define _GNU_SOURCE 1
#define MARIN_EXPERIMENTAL 1
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "alloc.h"
#include "backend.h"
#include "codec.h"
#include "fail.h"

/* Frames a worker accepts: the driver's payloads are bounded by the KV and
 * argument sizes users pass; 1 GiB keeps a corrupt length from exhausting
 * memory. */
#define WORKER_FRAME_CAP ((size_t)1 << 30)

typedef struct task_msg {
    uint64_t id;
    marin__detached_task d;
    char *name, *label;
    char **keys, **values;
    const void **dep_data;
    size_t *dep_len;
    int *gpus;
} task_msg;

static void task_msg_free(task_msg *m)
{
    for (size_t i = 0; i < m->d.nenv; i++) {
        marin__free(m->keys[i]);
        marin__free(m->values[i]);
    }
    marin__free(m->keys);
    marin__free(m->values);
    marin__free(m->dep_data);
    marin__free(m->dep_len);
    marin__free(m->gpus);
    marin__free(m->name);
    marin__free(m->label);
}

static int decode_task(const void *payload, size_t len, task_msg *m)
{
    marin__rbuf r;
    marin__rbuf_init(&r, payload, len, "task frame");
    memset(m, 0, sizeof *m);
    uint32_t attempt = 0, nenv = 0, ndeps = 0, ngpus = 0;
    int rc;
    if ((rc = marin__rbuf_u64(&r, "id", &m->id)) != MARIN_OK ||
        (rc = marin__rbuf_str(&r, "name", &m->name)) != MARIN_OK ||
        (rc = marin__rbuf_str(&r, "label", &m->label)) != MARIN_OK ||
        (rc = marin__rbuf_bytes(&r, "arg", &m->d.arg, &m->d.arg_len)) != MARIN_OK ||
        (rc = marin__rbuf_u32(&r, "attempt", &attempt)) != MARIN_OK ||
        (rc = marin__rbuf_count(&r, "nenv", 8, &nenv)) != MARIN_OK)
        return rc;
    m->keys = marin__calloc(nenv ? nenv : 1, sizeof *m->keys);
    m->values = marin__calloc(nenv ? nenv : 1, sizeof *m->values);
    if (!m->keys || !m->values)
        return marin__err(MARIN_ENOMEM, "out of memory decoding a task frame");
    for (uint32_t i = 0; i < nenv; i++) {
        if ((rc = marin__rbuf_str(&r, "env key", &m->keys[i])) != MARIN_OK ||
            (rc = marin__rbuf_str(&r, "env value", &m->values[i])) != MARIN_OK) {
            m->d.nenv = i + 1; /* free what was read */
            return rc;
        }
        m->d.nenv = i + 1;
    }
    if ((rc = marin__rbuf_count(&r, "ndeps", 4, &ndeps)) != MARIN_OK)
        return rc;
    m->dep_data = marin__calloc(ndeps ? ndeps : 1, sizeof *m->dep_data);
    m->dep_len = marin__calloc(ndeps ? ndeps : 1, sizeof *m->dep_len);
    if (!m->dep_data || !m->dep_len)
        return marin__err(MARIN_ENOMEM, "out of memory decoding a task frame");
    for (uint32_t i = 0; i < ndeps; i++)
        if ((rc = marin__rbuf_bytes(&r, "dependency", &m->dep_data[i], &m->dep_len[i])) !=
            MARIN_OK)
            return rc;
    if ((rc = marin__rbuf_count(&r, "ngpus", 4, &ngpus)) != MARIN_OK)
        return rc;
    m->gpus = marin__calloc(ngpus ? ngpus : 1, sizeof *m->gpus);
    if (!m->gpus)
        return marin__err(MARIN_ENOMEM, "out of memory decoding a task frame");
    for (uint32_t i = 0; i < ngpus; i++) {
        int32_t g;
        if ((rc = marin__rbuf_i32(&r, "gpu id", &g)) != MARIN_OK)
            return rc;
        m->gpus[i] = g;
    }
    if ((rc = marin__rbuf_end(&r)) != MARIN_OK)
        return rc;
    m->d.name = m->name;
    m->d.label = m->label;
    m->d.attempt = (int)attempt;
    m->d.env_keys = (const char *const *)m->keys;
    m->d.env_values = (const char *const *)m->values;
    m->d.ndeps = ndeps;
    m->d.dep_data = m->dep_data;
    m->d.dep_len = m->dep_len;
    m->d.gpu_ids = m->gpus;
    m->d.ngpus = ngpus;
    return MARIN_OK;
}

static int send_result(int fd, uint64_t id, int status, const void *data, size_t len,
                       int died)
{
    char too_big[160];
    if (len > WORKER_FRAME_CAP - 64) { /* the driver would refuse the frame */
        snprintf(too_big, sizeof too_big, "the task's result of %zu bytes is over the "
                 "%zu-byte cap of a frame from a worker process", len,
                 (size_t)(WORKER_FRAME_CAP - 64));
        status = MARIN_ETASK;
        data = too_big;
        len = strlen(too_big);
    }
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_u64(&w, id);
    marin__wbuf_i32(&w, status);
    marin__wbuf_bytes(&w, data, len);
    marin__wbuf_u8(&w, (uint8_t)(died != 0));
    int rc = w.failed ? marin__err(MARIN_ENOMEM, "out of memory encoding a result")
                      : marin__frame_write_fd(fd, MARIN__FRAME_RESULT, w.data, w.len);
    marin__wbuf_free(&w);
    return rc;
}

int marin_worker_serve_fd(int fd)
{
    /* Leave Ctrl-C to the driver (the terminal sends SIGINT to the whole
     * process group). */
    /* The driver's death closes the socket, which ends the loop below (no
     * PDEATHSIG: it fires when the driver *thread* that started us exits).
     * Keep the socket from the task's own children, so our death is seen. */
    int fdflags = fcntl(fd, F_GETFD);
    if (fdflags >= 0)
        fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    unsetenv("MARIN_LOCAL_WORKER_FD");
    /* Nested work a task submits runs in this process. */
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open("local://?resources=cpus=1", &rt);
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_u32(&w, (uint32_t)getpid());
    rc = w.failed ? marin__err(MARIN_ENOMEM, "out of memory")
                  : marin__frame_write_fd(fd, MARIN__FRAME_HELLO, w.data, w.len);
    marin__wbuf_free(&w);
    while (rc == MARIN_OK) {
        uint8_t type;
        void *payload = NULL;
        size_t plen = 0;
        rc = marin__frame_read_fd(fd, WORKER_FRAME_CAP, &type, &payload, &plen);
        if (rc == MARIN_EUNAVAILABLE) { /* the driver closed: done */
            rc = MARIN_OK;
            break;
        }
        if (rc != MARIN_OK)
            break;
        task_msg m;
        if (type != MARIN__FRAME_TASK)
            rc = marin__err(MARIN_EPROTO, "worker: a frame of type %u where a task frame "
                            "was expected", type);
        else
            rc = decode_task(payload, plen, &m);
        if (rc != MARIN_OK) {
            if (type == MARIN__FRAME_TASK)
                task_msg_free(&m);
            marin__free(payload);
            break; /* a driver that sends garbage is not one to serve */
        }
        void *result = NULL;
        size_t len = 0;
        char *msg = NULL;
        int died = 0;
        int status = marin__task_run_here(rt, &m.d, &result, &len, &msg, &died);
        if (status != MARIN_OK && !msg) {
            const char *why = marin__err_msg();
            msg = marin__strdup(why[0] ? why : marin_strerror(status));
        }
        rc = status == MARIN_OK ? send_result(fd, m.id, status, result, len, 0)
                                : send_result(fd, m.id, status, msg, msg ? strlen(msg) : 0,
                                              died);
        marin__free(result);
        marin__free(msg);
        task_msg_free(&m);
        marin__free(payload);
    }
    marin_runtime_close(rt);
    return marin__api_exit(rc);
}
