/* Per-runtime logging; see marin_runtime_set_logger in runtime.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fail.h"
#include "runtime_impl.h"

int marin__log_level_from_env(const char *v)
{
    if (!v || !*v || !strcasecmp(v, "0") || !strcasecmp(v, "off") || !strcasecmp(v, "none"))
        return 0;
    if (!strcasecmp(v, "error")) return MARIN_LOG_ERROR;
    if (!strcasecmp(v, "warn") || !strcasecmp(v, "warning")) return MARIN_LOG_WARN;
    if (!strcasecmp(v, "info")) return MARIN_LOG_INFO;
    if (!strcasecmp(v, "debug")) return MARIN_LOG_DEBUG;
    if (v[0] >= '1' && v[0] <= '4' && !v[1]) return v[0] - '0';
    return MARIN_LOG_WARN; /* set to something unknown: warnings and errors */
}

int marin__log_enabled(marin_runtime_t *rt, int level)
{
    return rt && level <= atomic_load_explicit(&rt->log_level, memory_order_relaxed);
}

static const char *level_name(int level)
{
    switch (level) {
    case MARIN_LOG_ERROR: return "error";
    case MARIN_LOG_WARN: return "warn";
    case MARIN_LOG_INFO: return "info";
    default: return "debug";
    }
}

void marin__log(marin_runtime_t *rt, int level, const char *fmt, ...)
{
    if (!marin__log_enabled(rt, level))
        return; /* formatting is skipped for filtered levels */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&rt->log_mu);
    marin_log_fn fn = rt->log_fn;
    void *ud = rt->log_userdata;
    pthread_mutex_unlock(&rt->log_mu);
    if (fn)
        fn(level, msg, ud);
    else
        fprintf(stderr, "marin[%s] %s\n", level_name(level), msg);
}

int marin_runtime_set_logger(marin_runtime_t *rt, marin_log_fn fn, int level,
                             void *userdata)
{
    MARIN__CHECK_ARG(rt, "marin_runtime_set_logger", "runtime must not be NULL");
    if (level < 0 || level > MARIN_LOG_DEBUG)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_runtime_set_logger: level %d is outside 0..%d (0: nothing, "
            "MARIN_LOG_ERROR=1 .. MARIN_LOG_DEBUG=4)", level, MARIN_LOG_DEBUG));
    pthread_mutex_lock(&rt->log_mu);
    rt->log_fn = fn;
    rt->log_userdata = userdata;
    pthread_mutex_unlock(&rt->log_mu);
    atomic_store(&rt->log_level,
                 fn ? level : rt->env_log_level);
    return marin__api_exit(MARIN_OK);
}
