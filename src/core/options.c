/* Task options: a mutable object whose state is an immutable, shared
 * snapshot. Setters replace the snapshot (copy on write), so a submission
 * only retains the current one: no copying per task. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "fail.h"

struct marin_task_options {
    marin__topts *snap;
};

void marin__topts_retain(marin__topts *o)
{
    if (o)
        atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

static void topts_free(marin__topts *o)
{
    for (size_t i = 0; i < o->nenv; i++) {
        marin__free(o->env_keys[i]);
        marin__free(o->env_values[i]);
    }
    marin__free(o->env_keys);
    marin__free(o->env_values);
    marin__free(o->label);
    marin__free(o);
}

void marin__topts_release(marin__topts *o)
{
    if (o && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
        topts_free(o);
}

static marin__topts *topts_new_default(void)
{
    marin__topts *o = marin__calloc(1, sizeof *o);
    if (!o)
        return NULL;
    atomic_init(&o->refs, 1);
    o->res.n = 1;
    strcpy(o->res.e[0].name, "cpus");
    o->res.e[0].amount = MARIN__RES_SCALE;
    o->max_retries = 3;
    return o;
}

int marin__topts_default(marin__topts **out)
{
    *out = topts_new_default();
    return *out ? MARIN_OK
                : marin__err(MARIN_ENOMEM, "out of memory making default task options");
}

/* Deep copy, so a setter can change the copy and swap it in. */
static marin__topts *topts_clone(const marin__topts *src)
{
    marin__topts *o = marin__calloc(1, sizeof *o);
    if (!o)
        return NULL;
    atomic_init(&o->refs, 1);
    o->res = src->res;
    o->max_retries = src->max_retries;
    o->retry_exceptions = src->retry_exceptions;
    o->timeout_ms = src->timeout_ms;
    if (src->label && !(o->label = marin__strdup(src->label)))
        goto fail;
    if (src->nenv) {
        o->env_keys = marin__calloc(src->nenv, sizeof(char *));
        o->env_values = marin__calloc(src->nenv, sizeof(char *));
        if (!o->env_keys || !o->env_values)
            goto fail;
        for (size_t i = 0; i < src->nenv; i++, o->nenv++) {
            o->env_keys[i] = marin__strdup(src->env_keys[i]);
            o->env_values[i] = marin__strdup(src->env_values[i]);
            if (!o->env_keys[i] || !o->env_values[i]) {
                o->nenv++;
                goto fail;
            }
        }
    }
    return o;
fail:
    topts_free(o);
    return NULL;
}

marin__topts *marin__task_options_snapshot(const marin_task_options_t *o)
{
    marin__topts_retain(o->snap);
    return o->snap;
}

int marin__task_options_clone(const marin_task_options_t *src,
                              marin_task_options_t **out)
{
    marin_task_options_t *o = marin__calloc(1, sizeof *o);
    if (!o)
        return MARIN_ENOMEM;
    o->snap = marin__task_options_snapshot(src);
    *out = o;
    return MARIN_OK;
}

int marin_task_options_create(marin_task_options_t **out)
{
    MARIN__CHECK_ARG(out, "marin_task_options_create", "out must not be NULL");
    *out = NULL;
    marin_task_options_t *o = marin__calloc(1, sizeof *o);
    if (!o || !(o->snap = topts_new_default())) {
        marin__free(o);
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_task_options_create: out of memory"));
    }
    *out = o;
    return marin__api_exit(MARIN_OK);
}

void marin_task_options_destroy(marin_task_options_t *o)
{
    if (!o)
        return;
    marin__topts_release(o->snap);
    marin__free(o);
}

/* Begin a change: a private copy the setter may edit. */
static marin__topts *begin_change(marin_task_options_t *o, const char *fn)
{
    marin__topts *c = topts_clone(o->snap);
    if (!c)
        marin__err(MARIN_ENOMEM, "%s: out of memory", fn);
    return c;
}

static void commit_change(marin_task_options_t *o, marin__topts *c)
{
    marin__topts_release(o->snap);
    o->snap = c;
}

int marin_task_options_set_resources(marin_task_options_t *o,
                                     const marin_resources_t *r)
{
    MARIN__CHECK_ARG(o && r, "marin_task_options_set_resources",
                     "options and resources must not be NULL");
    marin__topts *c = begin_change(o, "marin_task_options_set_resources");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    c->res = *r;
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
}

int marin_task_options_set_max_retries(marin_task_options_t *o, int n)
{
    MARIN__CHECK_ARG(o, "marin_task_options_set_max_retries", "options must not be NULL");
    if (n < -1)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_task_options_set_max_retries: %d is not a retry count "
            "(use 0 or more, or -1 for unlimited)", n));
    marin__topts *c = begin_change(o, "marin_task_options_set_max_retries");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    c->max_retries = n;
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
}

int marin_task_options_set_retry_exceptions(marin_task_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_task_options_set_retry_exceptions",
                     "options must not be NULL");
    marin__topts *c = begin_change(o, "marin_task_options_set_retry_exceptions");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    c->retry_exceptions = on != 0;
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
}

int marin_task_options_set_timeout_ms(marin_task_options_t *o, int64_t ms)
{
    MARIN__CHECK_ARG(o, "marin_task_options_set_timeout_ms", "options must not be NULL");
    if (ms < 0)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_task_options_set_timeout_ms: %lld ms is negative "
            "(use 0 for no timeout)", (long long)ms));
    marin__topts *c = begin_change(o, "marin_task_options_set_timeout_ms");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    c->timeout_ms = ms;
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
}

static int name_ok(const char *s)
{
    size_t n = strnlen(s, MARIN_NAME_MAX + 1);
    return n > 0 && n <= MARIN_NAME_MAX;
}

int marin_task_options_set_env(marin_task_options_t *o, const char *key,
                               const char *value)
{
    MARIN__CHECK_ARG(o && key, "marin_task_options_set_env",
                     "options and key must not be NULL");
    if (!name_ok(key) || strchr(key, '='))
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_task_options_set_env: env key must be 1 to %d bytes "
            "without '='", MARIN_NAME_MAX));
    marin__topts *c = begin_change(o, "marin_task_options_set_env");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    size_t i = 0;
    while (i < c->nenv && strcmp(c->env_keys[i], key) != 0)
        i++;
    if (i < c->nenv) { /* replace or remove */
        if (value) {
            char *copy = marin__strdup(value);
            if (!copy)
                goto oom;
            marin__free(c->env_values[i]);
            c->env_values[i] = copy;
        } else {
            marin__free(c->env_values[i]);
            marin__free(c->env_keys[i]);
            c->nenv--;
            c->env_keys[i] = c->env_keys[c->nenv];
            c->env_values[i] = c->env_values[c->nenv];
        }
    } else if (value) {
        char **k = marin__realloc(c->env_keys, (c->nenv + 1) * sizeof(char *));
        if (!k)
            goto oom;
        c->env_keys = k;
        char **v = marin__realloc(c->env_values, (c->nenv + 1) * sizeof(char *));
        if (!v)
            goto oom;
        c->env_values = v;
        k[c->nenv] = marin__strdup(key);
        v[c->nenv] = marin__strdup(value);
        if (!k[c->nenv] || !v[c->nenv]) {
            marin__free(k[c->nenv]);
            marin__free(v[c->nenv]);
            goto oom;
        }
        c->nenv++;
    }
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
oom: /* c is whole at every goto: just drop it */
    marin__topts_release(c);
    return marin__api_exit(marin__err(MARIN_ENOMEM,
                                      "marin_task_options_set_env: out of memory"));
}

int marin_task_options_set_label(marin_task_options_t *o, const char *label)
{
    MARIN__CHECK_ARG(o, "marin_task_options_set_label", "options must not be NULL");
    if (label && !name_ok(label))
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_task_options_set_label: a label must be 1 to %d bytes",
            MARIN_NAME_MAX));
    marin__topts *c = begin_change(o, "marin_task_options_set_label");
    if (!c)
        return marin__api_exit(MARIN_ENOMEM);
    marin__free(c->label);
    c->label = NULL;
    if (label && !(c->label = marin__strdup(label))) {
        marin__topts_release(c);
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_task_options_set_label: out of memory"));
    }
    commit_change(o, c);
    return marin__api_exit(MARIN_OK);
}
