/* Payloads of the redis backend's stream entries (layouts in
 * redis_internal.h), on the codec's frames. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "fail.h"
#include "redis_internal.h"

int marin__rtask_encode(marin_runtime_t *rt, const struct marin__task *t, int64_t cap,
                        void **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    char id[64], shape[512];
    marin__task_format_id(rt, t, id, sizeof id);
    marin_resources_format(&t->opts->res, shape, sizeof shape);
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_str(&w, id);
    marin__wbuf_str(&w, t->name);
    marin__wbuf_str(&w, t->opts->label);
    marin__wbuf_bytes(&w, t->arg, t->arg_len);
    marin__wbuf_u32(&w, (uint32_t)t->opts->nenv);
    for (size_t i = 0; i < t->opts->nenv; i++) {
        marin__wbuf_str(&w, t->opts->env_keys[i]);
        marin__wbuf_str(&w, t->opts->env_values[i]);
    }
    marin__wbuf_u32(&w, (uint32_t)t->ndeps);
    for (size_t i = 0; i < t->ndeps; i++)
        marin__wbuf_bytes(&w, t->deps[i]->result, t->deps[i]->result_len);
    marin__wbuf_str(&w, shape);
    marin__wbuf_i32(&w, t->opts->max_retries);
    marin__wbuf_u8(&w, (uint8_t)(t->opts->retry_exceptions != 0));
    marin__wbuf_u64(&w, (uint64_t)(t->opts->timeout_ms > 0 ? t->opts->timeout_ms : 0));
    if (w.failed) {
        marin__wbuf_free(&w);
        return marin__err(MARIN_ENOMEM, "out of memory encoding task '%s' (%s)", t->name, id);
    }
    if ((int64_t)w.len > cap) {
        size_t n = w.len;
        marin__wbuf_free(&w);
        return marin__err(MARIN_ETOOBIG, "task '%s' (%s): its argument and dependencies "
                          "take %zu bytes, over the cap of %lld bytes (the URI's "
                          "max_payload=)", t->name, id, n, (long long)cap);
    }
    int rc = marin__frame_encode(MARIN__FRAME_RTASK, w.data, w.len, out, len);
    marin__wbuf_free(&w);
    return rc;
}

void marin__rtask_msg_free(marin__rtask_msg *m)
{
    for (size_t i = 0; i < m->nenv; i++) {
        if (m->env_keys)
            marin__free(m->env_keys[i]);
        if (m->env_values)
            marin__free(m->env_values[i]);
    }
    marin__free(m->env_keys);
    marin__free(m->env_values);
    marin__free(m->dep_data);
    marin__free(m->dep_len);
    marin__free(m->task_id);
    marin__free(m->name);
    marin__free(m->label);
    marin_resources_destroy(m->res);
    marin__free(m->payload);
    memset(m, 0, sizeof *m);
}

int marin__rtask_decode(const void *frame, size_t len, int64_t cap, marin__rtask_msg *m)
{
    memset(m, 0, sizeof *m);
    uint8_t type = 0;
    size_t plen = 0;
    int rc = marin__frame_decode(frame, len, (size_t)cap, &type, &m->payload, &plen);
    if (rc != MARIN_OK)
        return rc;
    if (type != MARIN__FRAME_RTASK) {
        rc = marin__err(MARIN_EPROTO, "task entry: the frame is of type %u, not a task (%u)",
                        type, MARIN__FRAME_RTASK);
        goto fail;
    }
    marin__rbuf r;
    marin__rbuf_init(&r, m->payload, plen, "task frame");
    uint32_t nenv = 0, ndeps = 0;
    char *shape = NULL;
    if ((rc = marin__rbuf_str(&r, "task id", &m->task_id)) != MARIN_OK ||
        (rc = marin__rbuf_str(&r, "name", &m->name)) != MARIN_OK ||
        (rc = marin__rbuf_str(&r, "label", &m->label)) != MARIN_OK ||
        (rc = marin__rbuf_bytes(&r, "arg", &m->arg, &m->arg_len)) != MARIN_OK ||
        (rc = marin__rbuf_count(&r, "nenv", 8, &nenv)) != MARIN_OK)
        goto fail;
    if (nenv && (!(m->env_keys = marin__calloc(nenv, sizeof *m->env_keys)) ||
                 !(m->env_values = marin__calloc(nenv, sizeof *m->env_values)))) {
        rc = marin__err(MARIN_ENOMEM, "out of memory decoding a task frame");
        goto fail;
    }
    for (uint32_t i = 0; i < nenv; i++) {
        if ((rc = marin__rbuf_str(&r, "env key", &m->env_keys[i])) != MARIN_OK ||
            (rc = marin__rbuf_str(&r, "env value", &m->env_values[i])) != MARIN_OK) {
            m->nenv = i + 1;
            goto fail;
        }
    }
    m->nenv = nenv;
    if ((rc = marin__rbuf_count(&r, "ndeps", 4, &ndeps)) != MARIN_OK)
        goto fail;
    if (ndeps && (!(m->dep_data = marin__calloc(ndeps, sizeof *m->dep_data)) ||
                  !(m->dep_len = marin__calloc(ndeps, sizeof *m->dep_len)))) {
        rc = marin__err(MARIN_ENOMEM, "out of memory decoding a task frame");
        goto fail;
    }
    for (uint32_t i = 0; i < ndeps; i++)
        if ((rc = marin__rbuf_bytes(&r, "dependency", &m->dep_data[i], &m->dep_len[i])) !=
            MARIN_OK)
            goto fail;
    m->ndeps = ndeps;
    if ((rc = marin__rbuf_str(&r, "resources", &shape)) != MARIN_OK)
        goto fail;
    rc = marin_resources_parse(shape[0] ? shape : "cpus=0", &m->res);
    marin__free(shape);
    if (rc != MARIN_OK) {
        rc = marin__err(MARIN_EPROTO, "task frame: bad resources: %s", marin_last_error());
        goto fail;
    }
    uint64_t timeout = 0;
    if ((rc = marin__rbuf_i32(&r, "max_retries", &m->max_retries)) != MARIN_OK ||
        (rc = marin__rbuf_u8(&r, "retry_exceptions", &m->retry_exceptions)) != MARIN_OK ||
        (rc = marin__rbuf_u64(&r, "timeout_ms", &timeout)) != MARIN_OK ||
        (rc = marin__rbuf_end(&r)) != MARIN_OK)
        goto fail;
    m->timeout_ms = timeout;
    if (!m->name[0]) {
        rc = marin__err(MARIN_EPROTO, "task frame: the task name is empty");
        goto fail;
    }
    return MARIN_OK;
fail:
    marin__rtask_msg_free(m);
    return rc;
}

int marin__rresult_encode(const void *data, size_t len, int died, void **out, size_t *olen)
{
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_bytes(&w, data, len);
    marin__wbuf_u8(&w, (uint8_t)died);
    if (w.failed) {
        marin__wbuf_free(&w);
        return marin__err(MARIN_ENOMEM, "out of memory encoding a result");
    }
    int rc = marin__frame_encode(MARIN__FRAME_RRESULT, w.data, w.len, out, olen);
    marin__wbuf_free(&w);
    return rc;
}

int marin__rresult_decode(const void *frame, size_t len, int64_t cap, void **payload,
                          const void **data, size_t *dlen, int *died)
{
    uint8_t type = 0, d = 0;
    size_t plen = 0;
    *payload = NULL;
    int rc = marin__frame_decode(frame, len, (size_t)cap, &type, payload, &plen);
    if (rc != MARIN_OK)
        return rc;
    if (type != MARIN__FRAME_RRESULT) {
        rc = marin__err(MARIN_EPROTO, "result entry: the frame is of type %u, not a "
                        "result (%u)", type, MARIN__FRAME_RRESULT);
        goto fail;
    }
    marin__rbuf r;
    marin__rbuf_init(&r, *payload, plen, "result frame");
    if ((rc = marin__rbuf_bytes(&r, "result", data, dlen)) != MARIN_OK ||
        (rc = marin__rbuf_u8(&r, "died", &d)) != MARIN_OK ||
        (rc = marin__rbuf_end(&r)) != MARIN_OK)
        goto fail;
    *died = d; /* 1: the place it ran died; 2: the actor it called is dead */
    return MARIN_OK;
fail:
    marin__free(*payload);
    *payload = NULL;
    return rc;
}

int marin__rtask_encode_raw(const char *name, const void *arg, size_t len, void **out,
                            size_t *olen)
{
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_str(&w, "");
    marin__wbuf_str(&w, name);
    marin__wbuf_str(&w, NULL);
    marin__wbuf_bytes(&w, arg, len);
    marin__wbuf_u32(&w, 0);
    marin__wbuf_u32(&w, 0);
    marin__wbuf_str(&w, "");
    marin__wbuf_i32(&w, 0);
    marin__wbuf_u8(&w, 0);
    marin__wbuf_u64(&w, 0);
    if (w.failed) {
        marin__wbuf_free(&w);
        return marin__err(MARIN_ENOMEM, "out of memory encoding a control call");
    }
    int rc = marin__frame_encode(MARIN__FRAME_RTASK, w.data, w.len, out, olen);
    marin__wbuf_free(&w);
    return rc;
}
