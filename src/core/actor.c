/* Actors, the front: class builders and their process-wide registry, actor
 * options, handles, and the public calls that check arguments and hand the
 * work to the backend's actor ops. */
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"

/* ---- class builders ---- */

struct marin_actor_class {
    marin__actor_class_entry e; /* what registration copies */
    size_t cap;
};

static int check_name(const char *name, const char *fn, const char *what)
{
    if (!name)
        return marin__err(MARIN_EINVAL, "%s: %s must not be NULL", fn, what);
    size_t n = strnlen(name, MARIN_NAME_MAX + 1);
    if (n == 0 || n > MARIN_NAME_MAX)
        return marin__err(MARIN_EINVAL, "%s: %s must be 1 to %d bytes", fn, what,
                          MARIN_NAME_MAX);
    return MARIN_OK;
}

int marin_actor_class_create(const char *name, marin_actor_init_fn init,
                             marin_actor_fini_fn fini, marin_actor_class_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(init && out, "marin_actor_class_create",
                     "init and out must not be NULL");
    int rc = check_name(name, "marin_actor_class_create", "the class name");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    marin_actor_class_t *c = marin__calloc(1, sizeof *c);
    char *copy = marin__strdup(name);
    if (!c || !copy) {
        marin__free(c);
        marin__free(copy);
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_class_create: out "
                                          "of memory for class '%s'", name));
    }
    c->e.name = copy;
    c->e.init = init;
    c->e.fini = fini;
    *out = c;
    return marin__api_exit(MARIN_OK);
}

const marin__actor_method *marin__actor_class_method(const marin__actor_class_entry *c,
                                                     const char *name)
{
    for (size_t i = 0; i < c->nmethods; i++)
        if (strcmp(c->methods[i].name, name) == 0)
            return &c->methods[i];
    return NULL;
}

int marin_actor_class_add_method(marin_actor_class_t *c, const char *name,
                                 marin_method_fn fn, unsigned flags)
{
    MARIN__CHECK_ARG(c && fn, "marin_actor_class_add_method",
                     "class and fn must not be NULL");
    int rc = check_name(name, "marin_actor_class_add_method", "the method name");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    if (flags & ~(unsigned)MARIN_METHOD_IDEMPOTENT)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_class_add_method: "
                                          "unknown flags 0x%x for method '%s'", flags,
                                          name));
    if (marin__actor_class_method(&c->e, name))
        return marin__api_exit(marin__err(MARIN_EEXIST, "marin_actor_class_add_method: "
                                          "class '%s' already has a method '%s'",
                                          c->e.name, name));
    if (c->e.nmethods == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        marin__actor_method *m = marin__realloc(c->e.methods, cap * sizeof *m);
        if (!m)
            return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_class_add_method: "
                                              "out of memory"));
        c->e.methods = m;
        c->cap = cap;
    }
    char *copy = marin__strdup(name);
    if (!copy)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_class_add_method: "
                                          "out of memory"));
    c->e.methods[c->e.nmethods++] = (marin__actor_method){copy, fn, flags};
    return marin__api_exit(MARIN_OK);
}

int marin_actor_class_set_checkpoint(marin_actor_class_t *c, marin_checkpoint_fn save,
                                     marin_restore_fn restore)
{
    MARIN__CHECK_ARG(c, "marin_actor_class_set_checkpoint", "class must not be NULL");
    if (!save != !restore)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_class_set_checkpoint: "
                                          "give both save and restore, or neither "
                                          "(class '%s')", c->e.name));
    c->e.save = save;
    c->e.restore = restore;
    return marin__api_exit(MARIN_OK);
}

static void entry_free(marin__actor_class_entry *e)
{
    for (size_t i = 0; i < e->nmethods; i++)
        marin__free(e->methods[i].name);
    marin__free(e->methods);
    marin__free(e->name);
}

void marin_actor_class_destroy(marin_actor_class_t *c)
{
    if (!c)
        return;
    entry_free(&c->e);
    marin__free(c);
}

/* ---- the class registry (process-wide; entries are never freed) ---- */

typedef struct class_node {
    struct class_node *next;
    marin__actor_class_entry e;
} class_node;

static pthread_rwlock_t classes_lock = PTHREAD_RWLOCK_INITIALIZER;
static class_node *classes;

static const marin__actor_class_entry *find_class_locked(const char *name)
{
    for (class_node *n = classes; n; n = n->next)
        if (strcmp(n->e.name, name) == 0)
            return &n->e;
    return NULL;
}

const marin__actor_class_entry *marin__registry_find_actor_class(const char *name)
{
    pthread_rwlock_rdlock(&classes_lock);
    const marin__actor_class_entry *e = find_class_locked(name);
    pthread_rwlock_unlock(&classes_lock);
    return e;
}

void marin__registry_each_actor_class(void (*fn)(const char *name, void *ud), void *ud)
{
    pthread_rwlock_rdlock(&classes_lock);
    for (class_node *n = classes; n; n = n->next)
        fn(n->e.name, ud);
    pthread_rwlock_unlock(&classes_lock);
}

int marin_register_actor_class(const marin_actor_class_t *c)
{
    MARIN__CHECK_ARG(c, "marin_register_actor_class", "class must not be NULL");
    class_node *n = marin__calloc(1, sizeof *n);
    if (!n)
        goto oom;
    n->e = c->e;
    n->e.name = marin__strdup(c->e.name);
    n->e.methods = NULL;
    n->e.nmethods = 0;
    if (!n->e.name)
        goto oom;
    if (c->e.nmethods &&
        !(n->e.methods = marin__calloc(c->e.nmethods, sizeof *n->e.methods)))
        goto oom;
    for (size_t i = 0; i < c->e.nmethods; i++) {
        n->e.methods[i] = c->e.methods[i];
        if (!(n->e.methods[i].name = marin__strdup(c->e.methods[i].name)))
            goto oom;
        n->e.nmethods++;
    }
    pthread_rwlock_wrlock(&classes_lock);
    int taken = find_class_locked(c->e.name) != NULL;
    if (!taken) {
        n->next = classes;
        classes = n;
    }
    pthread_rwlock_unlock(&classes_lock);
    if (taken) {
        entry_free(&n->e);
        marin__free(n);
        return marin__api_exit(marin__err(MARIN_EEXIST, "marin_register_actor_class: an "
                                          "actor class named '%s' is already registered "
                                          "in this process", c->e.name));
    }
    return marin__api_exit(MARIN_OK);
oom:
    if (n) {
        entry_free(&n->e);
        marin__free(n);
    }
    return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_register_actor_class: out of "
                                      "memory registering '%s'", c->e.name));
}

/* ---- options ---- */

struct marin_actor_options {
    marin__actor_spec spec;
};

int marin_actor_options_create(marin_actor_options_t **out)
{
    MARIN__CHECK_ARG(out, "marin_actor_options_create", "out must not be NULL");
    *out = marin__calloc(1, sizeof **out);
    if (!*out)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_options_create: out "
                                          "of memory"));
    (*out)->spec.max_concurrency = 1;
    return marin__api_exit(MARIN_OK);
}

void marin_actor_options_destroy(marin_actor_options_t *o)
{
    if (!o)
        return;
    marin__free(o->spec.name);
    marin__free(o);
}

int marin_actor_options_set_name(marin_actor_options_t *o, const char *name)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_name", "options must not be NULL");
    char *copy = NULL;
    if (name) {
        int rc = check_name(name, "marin_actor_options_set_name", "the actor name");
        if (rc != MARIN_OK)
            return marin__api_exit(rc);
        if (!(copy = marin__strdup(name)))
            return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_options_set_name: "
                                              "out of memory"));
    }
    marin__free(o->spec.name);
    o->spec.name = copy;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_resources(marin_actor_options_t *o, const marin_resources_t *r)
{
    MARIN__CHECK_ARG(o && r, "marin_actor_options_set_resources",
                     "options and resources must not be NULL");
    o->spec.res = *r;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_max_restarts(marin_actor_options_t *o, int n)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_max_restarts", "options must not be NULL");
    if (n < -1)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_options_set_max_"
                                          "restarts: %d is not -1 (unlimited) or >= 0", n));
    o->spec.max_restarts = n;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_max_concurrency(marin_actor_options_t *o, int n)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_max_concurrency",
                     "options must not be NULL");
    if (n < 1 || n > 1024)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_options_set_max_"
                                          "concurrency: %d is outside 1..1024", n));
    o->spec.max_concurrency = n;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_get_if_exists(marin_actor_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_get_if_exists", "options must not be NULL");
    o->spec.get_if_exists = on != 0;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_detached(marin_actor_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_detached", "options must not be NULL");
    o->spec.detached = on != 0;
    return marin__api_exit(MARIN_OK);
}

int marin_actor_options_set_checkpoint_every(marin_actor_options_t *o, int64_t n)
{
    MARIN__CHECK_ARG(o, "marin_actor_options_set_checkpoint_every",
                     "options must not be NULL");
    if (n < 0)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_options_set_"
                                          "checkpoint_every: %lld is negative",
                                          (long long)n));
    o->spec.checkpoint_every = n;
    return marin__api_exit(MARIN_OK);
}

/* ---- handles ---- */

static const marin__actor_ops *actor_ops(marin_runtime_t *rt, const char *fn)
{
    if (!rt->backend->actor) {
        marin__err(MARIN_EUNSUPPORTED, "%s: the %s backend has no actors yet", fn,
                   rt->backend->name);
        return NULL;
    }
    if (atomic_load(&rt->closing)) {
        marin__err(MARIN_ESTATE, "%s: the runtime is closed or closing", fn);
        return NULL;
    }
    return rt->backend->actor;
}

static int failed_ops(marin_runtime_t *rt)
{
    return rt->backend->actor ? MARIN_ESTATE : MARIN_EUNSUPPORTED;
}

static marin_actor_t *handle_new(marin_runtime_t *rt)
{
    marin_actor_t *a = marin__calloc(1, sizeof *a);
    if (!a)
        return NULL;
    atomic_init(&a->refs, 1);
    a->rt = rt;
    marin__runtime_retain(rt); /* the handle may outlive close */
    return a;
}

static void handle_free(marin_actor_t *a)
{
    marin_runtime_t *rt = a->rt;
    if (a->impl && rt->backend->actor)
        rt->backend->actor->release(rt->bstate, a);
    marin__runtime_release(rt);
    marin__free(a);
}

void marin_actor_retain(marin_actor_t *a)
{
    if (a)
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

void marin_actor_release(marin_actor_t *a)
{
    if (a && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        handle_free(a);
}

const char *marin_actor_id(const marin_actor_t *a)
{
    return a ? a->id : "";
}

int marin_actor_create(marin_runtime_t *rt, const char *cls, const void *arg, size_t len,
                       const marin_actor_options_t *opts, marin_actor_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(rt && out, "marin_actor_create", "runtime and out must not be NULL");
    MARIN__CHECK_ARG(arg || !len, "marin_actor_create", "arg is NULL but len is not 0");
    int rc = check_name(cls, "marin_actor_create", "the class name");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    const marin__actor_ops *ops = actor_ops(rt, "marin_actor_create");
    if (!ops)
        return marin__api_exit(failed_ops(rt));
    const marin__actor_class_entry *c = marin__registry_find_actor_class(cls);
    if (!c)
        return marin__api_exit(marin__err(MARIN_ENOTFOUND, "marin_actor_create: no actor "
                                          "class named '%s' is registered in this process "
                                          "(register it with marin_register_actor_class)",
                                          cls));
    static const marin__actor_spec defaults = {.max_concurrency = 1};
    const marin__actor_spec *spec = opts ? &opts->spec : &defaults;
    if (spec->checkpoint_every > 0 && !c->save)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_create: checkpoint_"
                                          "every is %lld but class '%s' has no checkpoint "
                                          "hooks (marin_actor_class_set_checkpoint)",
                                          (long long)spec->checkpoint_every, cls));
    marin_actor_t *a = handle_new(rt);
    if (!a)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_create: out of "
                                          "memory"));
    if ((rc = ops->create(rt->bstate, c, spec, arg, len, a)) != MARIN_OK) {
        handle_free(a);
        return marin__api_exit(rc);
    }
    *out = a;
    return marin__api_exit(MARIN_OK);
}

/* lookup and from_id share everything but the op and the wording. */
static int find_handle(marin_runtime_t *rt, const char *key, int by_id,
                       marin_actor_t **out)
{
    const char *fn = by_id ? "marin_actor_from_id" : "marin_actor_lookup";
    if (out)
        *out = NULL;
    if (!rt || !out)
        return marin__err(MARIN_EINVAL, "%s: runtime and out must not be NULL", fn);
    int rc = check_name(key, fn, by_id ? "the id" : "the name");
    if (rc != MARIN_OK)
        return rc;
    const marin__actor_ops *ops = actor_ops(rt, fn);
    if (!ops)
        return failed_ops(rt);
    marin_actor_t *a = handle_new(rt);
    if (!a)
        return marin__err(MARIN_ENOMEM, "%s: out of memory", fn);
    rc = by_id ? ops->from_id(rt->bstate, key, a) : ops->lookup(rt->bstate, key, a);
    if (rc != MARIN_OK) {
        handle_free(a);
        return rc;
    }
    *out = a;
    return MARIN_OK;
}

int marin_actor_lookup(marin_runtime_t *rt, const char *name, marin_actor_t **out)
{
    return marin__api_exit(find_handle(rt, name, 0, out));
}

int marin_actor_from_id(marin_runtime_t *rt, const char *id, marin_actor_t **out)
{
    return marin__api_exit(find_handle(rt, id, 1, out));
}

int marin_actor_ready(marin_actor_t *a, int64_t timeout_ms)
{
    MARIN__CHECK_ARG(a, "marin_actor_ready", "actor must not be NULL");
    if (timeout_ms < -1)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_actor_ready: timeout %lld "
                                          "is below -1", (long long)timeout_ms));
    const marin__actor_ops *ops = actor_ops(a->rt, "marin_actor_ready");
    if (!ops)
        return marin__api_exit(failed_ops(a->rt));
    return marin__api_exit(ops->ready(a->rt->bstate, a, timeout_ms));
}

int marin_actor_call(marin_actor_t *a, const char *method, const void *arg, size_t len,
                     marin_future_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(a && out, "marin_actor_call", "actor and out must not be NULL");
    MARIN__CHECK_ARG(arg || !len, "marin_actor_call", "arg is NULL but len is not 0");
    int rc = check_name(method, "marin_actor_call", "the method name");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    marin_runtime_t *rt = a->rt;
    const marin__actor_ops *ops = actor_ops(rt, "marin_actor_call");
    if (!ops)
        return marin__api_exit(failed_ops(rt));
    marin_future_t *f = marin__future_new(rt);
    if (!f)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_actor_call: out of memory"));
    struct marin__task *t = &f->task;
    t->name = marin__strdup(method);
    t->name_owned = 1;
    t->opts = rt->default_opts;
    marin__topts_retain(t->opts);
    if (len)
        t->arg = marin__memdup(arg, len);
    t->arg_len = len;
    if (!t->name || (len && !t->arg)) {
        rc = marin__err(MARIN_ENOMEM, "marin_actor_call: out of memory for a call of "
                        "'%s' (argument of %zu bytes)", method, len);
    } else if ((rc = ops->call(rt->bstate, a, t)) == MARIN_OK) {
        *out = f;
        return marin__api_exit(MARIN_OK);
    }
    atomic_store(&f->refs, 1);
    marin_future_release(f);
    return marin__api_exit(rc);
}

int marin_actor_checkpoint(marin_actor_t *a)
{
    MARIN__CHECK_ARG(a, "marin_actor_checkpoint", "actor must not be NULL");
    const marin__actor_ops *ops = actor_ops(a->rt, "marin_actor_checkpoint");
    if (!ops)
        return marin__api_exit(failed_ops(a->rt));
    return marin__api_exit(ops->checkpoint(a->rt->bstate, a));
}

int marin_actor_kill(marin_actor_t *a, int no_restart)
{
    MARIN__CHECK_ARG(a, "marin_actor_kill", "actor must not be NULL");
    const marin__actor_ops *ops = actor_ops(a->rt, "marin_actor_kill");
    if (!ops)
        return marin__api_exit(failed_ops(a->rt));
    return marin__api_exit(ops->kill(a->rt->bstate, a, no_restart));
}
