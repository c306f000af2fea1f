/* Error table, per-thread last error and the API exit funnel. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fail.h"

#define MSG_CAP 1024

static _Thread_local char last_msg[MSG_CAP];
static _Thread_local int oom_pending;

/* A switch with no default: -Wswitch flags a code with no message. */
static const char *describe(int code)
{
    switch ((int)code) {
    case MARIN_OK: return "success";
    case MARIN_EINVAL: return "invalid argument";
    case MARIN_ENOMEM: return "out of memory";
    case MARIN_EBUSY: return "busy: held by another owner";
    case MARIN_ESTATE: return "invalid state for this operation";
    case MARIN_ECANCELED: return "cancelled";
    case MARIN_ETIMEDOUT: return "timed out waiting";
    case MARIN_ENOBACKEND: return "no such backend";
    case MARIN_EUNAVAILABLE: return "backend unavailable";
    case MARIN_ENOTFOUND: return "not found";
    case MARIN_EEXIST: return "already exists";
    case MARIN_ECONFLICT: return "conflict: compare-and-swap mismatch";
    case MARIN_EINFEASIBLE: return "infeasible: no capacity can ever fit the request";
    case MARIN_ETASK: return "the task reported an application error";
    case MARIN_EWORKER: return "the worker running the task died";
    case MARIN_EPREEMPTED: return "preempted";
    case MARIN_ETASKTIMEOUT: return "the task ran past its timeout";
    case MARIN_EPROTO: return "corrupt or foreign frame";
    case MARIN_EAUTH: return "authentication refused";
    case MARIN_EUNSUPPORTED: return "not supported by this backend";
    case MARIN_ETOOBIG: return "payload over the size cap";
    }
    return NULL;
}

const char *marin_strerror(int code)
{
    const char *s = describe(code);
    return s ? s : "unknown error";
}

const char *marin_last_error(void) { return last_msg; }

const char *marin__err_msg(void) { return last_msg; }

void marin__note_oom(void) { oom_pending = 1; }

int marin__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    return code;
}

int marin__api_exit(int rc)
{
    if (rc == MARIN_OK) {
        last_msg[0] = '\0';
        oom_pending = 0;
        return rc;
    }
    /* An allocation failure the call absorbed must not be blamed on a later,
     * unrelated failure: the flag only supplies a message for ENOMEM. */
    if (rc == MARIN_ENOMEM && (oom_pending || !last_msg[0]) && !strstr(last_msg, "memory"))
        snprintf(last_msg, sizeof last_msg, "out of memory: an allocation failed");
    oom_pending = 0;
    return rc;
}
