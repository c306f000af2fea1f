/* The process-wide registry of task functions: one of the few globals
 * STYLE.md allows, since a function must be found by name in any process.
 * Entries are never removed, so lookups can hand out stable pointers. */
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "fail.h"

#define TABLE_MIN 64

static pthread_rwlock_t registry_lock = PTHREAD_RWLOCK_INITIALIZER;
static marin__task_entry **table; /* open addressing, power-of-two size */
static size_t table_size, table_count;

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static marin__task_entry *find_locked(const char *name)
{
    if (!table_size)
        return NULL;
    size_t mask = table_size - 1;
    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        if (!table[i])
            return NULL;
        if (strcmp(table[i]->name, name) == 0)
            return table[i];
    }
}

static void insert_locked(marin__task_entry *e)
{
    size_t mask = table_size - 1;
    size_t i = hash_name(e->name) & mask;
    while (table[i])
        i = (i + 1) & mask;
    table[i] = e;
    table_count++;
}

static int grow_locked(void)
{
    if ((table_count + 1) * 2 <= table_size)
        return MARIN_OK;
    size_t new_size = table_size ? table_size * 2 : TABLE_MIN;
    marin__task_entry **old = table;
    size_t old_size = table_size;
    marin__task_entry **fresh = marin__calloc(new_size, sizeof *fresh);
    if (!fresh)
        return marin__err(MARIN_ENOMEM,
                          "marin_register_task: out of memory growing the registry");
    table = fresh;
    table_size = new_size;
    table_count = 0;
    for (size_t i = 0; i < old_size; i++)
        if (old[i])
            insert_locked(old[i]);
    marin__free(old);
    return MARIN_OK;
}

int marin_register_task(const char *name, marin_task_fn fn, void *userdata)
{
    MARIN__CHECK_ARG(name && fn, "marin_register_task", "name and fn must not be NULL");
    size_t len = strnlen(name, MARIN_NAME_MAX + 1);
    if (len == 0 || len > MARIN_NAME_MAX)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_register_task: a task name must be 1 to %d bytes, got %s",
            MARIN_NAME_MAX, len ? "a longer one" : "an empty one"));
    marin__task_entry *e = marin__calloc(1, sizeof *e);
    char *copy = marin__strdup(name);
    if (!e || !copy) {
        marin__free(e);
        marin__free(copy);
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "marin_register_task: out of memory registering '%s'", name));
    }
    e->name = copy;
    e->fn = fn;
    e->userdata = userdata;
    pthread_rwlock_wrlock(&registry_lock);
    int rc = MARIN_OK;
    if (find_locked(name))
        rc = marin__err(MARIN_EEXIST,
                        "marin_register_task: a task named '%s' is already "
                        "registered in this process", name);
    else if ((rc = grow_locked()) == MARIN_OK)
        insert_locked(e);
    pthread_rwlock_unlock(&registry_lock);
    if (rc != MARIN_OK) {
        marin__free(copy);
        marin__free(e);
    }
    return marin__api_exit(rc);
}

/* The entry this thread found last: a submit loop names one task again and
 * again, and entries never move or go away, so a strcmp replaces the lock. */
static _Thread_local const marin__task_entry *last_found;

const marin__task_entry *marin__registry_find_task(const char *name)
{
    const marin__task_entry *c = last_found;
    if (c && strcmp(c->name, name) == 0)
        return c;
    pthread_rwlock_rdlock(&registry_lock);
    const marin__task_entry *e = find_locked(name);
    pthread_rwlock_unlock(&registry_lock);
    if (e)
        last_found = e;
    return e;
}

void marin__registry_each_task(void (*fn)(const char *name, void *ud), void *ud)
{
    pthread_rwlock_rdlock(&registry_lock);
    for (size_t i = 0; i < table_size; i++)
        if (table[i])
            fn(table[i]->name, ud);
    pthread_rwlock_unlock(&registry_lock);
}
