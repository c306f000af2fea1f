/* The executor's status file (executor_status.c), shared with executor.c,
 * executor_run.c and the tests; and the executor's objects, shared by
 * executor.c (the API, names, hashing, plan/DOT/Mermaid text) and
 * executor_run.c (the run). Private.
 *
 * <output>/.executor_status holds one JSON object per line, the last line
 * being the step's current state:
 *   {"state":"RUNNING","attempt":2,"time":"2026-11-26T08:30:00.123Z",
 *    "owner":"host:4242:9f3c2a1b","step":"tokenize","token":7}
 * plus "error" on FAILED lines ("note" on others, e.g. a repaired
 * SUCCESS). Lines are appended by rewriting the whole file into a
 * temporary file in the same directory, fsync, rename, fsync of the
 * directory, so a reader sees the old or the new file, never a torn
 * one. docs/executor.md describes the format. */
#ifndef MARIN_CORE_EXECUTOR_INTERNAL_H
#define MARIN_CORE_EXECUTOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "marin/common.h"
#include "marin/executor.h"

/* Name of the status file inside a step's output directory. */
#define MARIN__XSTATUS_FILE ".executor_status"
/* Largest status file read (bytes); a larger one is reported corrupt. */
#define MARIN__XSTATUS_MAX ((size_t)4 << 20)
/* Room for the time field: "2026-11-26T08:30:00.123Z" and NUL. */
#define MARIN__XSTATUS_TIME_CAP 32

/* The last line of a status file. */
typedef struct marin__xstatus {
    int state;    /* MARIN_STEP_*; MARIN_STEP_NONE for no file / no lines */
    int attempt;  /* 0 with no status */
    size_t lines; /* lines in the file */
    char time[MARIN__XSTATUS_TIME_CAP];
    char owner[MARIN_NAME_MAX + 1];
} marin__xstatus;

/* "WAITING", "RUNNING", "SUCCESS", "FAILED" ("NONE" for MARIN_STEP_NONE). */
const char *marin__xstatus_state_name(int state);

/* Parse the bytes of a status file (@p file only names it in messages).
 * Every line must be a JSON object with "state" (one of the four names),
 * "attempt" (an integer 0..INT_MAX), "time" and "owner" (strings); other
 * fields are allowed and ignored. The final newline may be missing.
 * @return MARIN_OK with the last line in *out (state NONE for no bytes);
 * MARIN_EPROTO with the message "FILE:LINE: why". Never reads past
 * @p len; any bytes are safe. */
int marin__xstatus_parse(const char *file, const char *data, size_t len,
                         marin__xstatus *out);

/* Read and parse @p file; a missing file is MARIN_OK with state NONE.
 * @return as parse; MARIN_EUNAVAILABLE when it cannot be read (the message
 * names the file and why); MARIN_EPROTO also for a file over
 * MARIN__XSTATUS_MAX bytes; MARIN_ENOMEM. */
int marin__xstatus_read(const char *file, marin__xstatus *out);

/* One status line (with its newline) in a new buffer (marin__free).
 * @p error (may be NULL) is written as "error" on a FAILED line and as
 * "note" on the others; @p token 0 leaves "token" out. NULL when out of
 * memory. */
char *marin__xstatus_format(const char *step, int state, int attempt,
                            const char *owner, uint64_t token,
                            const char *error);

/* Append a line to @p file (read it, check it, write FILE.tmp.PID.NS in
 * the same directory, fsync, rename over FILE, fsync the directory; the two
 * fsyncs only for SUCCESS and FAILED lines: WAITING and RUNNING are atomic
 * but not durable).
 * @return MARIN_OK; MARIN_EPROTO when the file present is corrupt (it is
 * left as it is); MARIN_EUNAVAILABLE (the message names the file and the
 * system error); MARIN_ENOMEM. */
int marin__xstatus_append(const char *file, const char *step, int state,
                          int attempt, const char *owner, uint64_t token,
                          const char *error);

/* The canonical encoding that a step's HASH8 is computed over (see
 * docs/executor.md), in a new buffer (marin__free) of *len bytes; NULL when
 * out of memory. @p deps are the dependencies' output paths relative to the
 * prefix ("NAME-HASH8"). */
unsigned char *marin__xstep_encode(const char *name, const void *config,
                                   size_t config_len, const char *version,
                                   const char *const *deps, size_t ndeps,
                                   size_t *len);

/* ---- the executor's objects (executor.c, executor_run.c) ---- */

/* Option defaults (marin_executor_options_create, and a run without
 * options). */
#define MARIN__XDEFAULT_TTL_MS 30000
#define MARIN__XDEFAULT_POLL_MS 500

struct marin_step {
    marin_executor_t *ex;
    size_t index; /* in ex->steps */
    char *name;
    char *task;
    void *config;
    size_t config_len;
    char *version;
    marin_step_t **deps; /* borrowed from ex; NULL when ndeps == 0 */
    size_t ndeps;
    marin_task_options_t *opts; /* the caller's, plus the MARIN_* env */
    char *path;         /* PREFIX/NAME-HASH8 */
    const char *rel;    /* NAME-HASH8, inside path */
    char *status_file;  /* path/.executor_status */
    char *lease_key;
    char *commit_key;
};

struct marin_executor {
    marin_runtime_t *rt;
    char *prefix;
    marin_step_t **steps; /* in the order added: dependencies first */
    size_t nsteps, cap;
};

struct marin_executor_options {
    int dry_run;
    int force;
    int64_t ttl_ms;
    int64_t poll_ms;
    size_t max_parallel;
    char *owner; /* NULL: HOST:PID:RANDOM per run */
};

/* What a run does with a step (the plan's RUN, SKIP, STOP). */
enum { MARIN__XACT_RUN, MARIN__XACT_SKIP, MARIN__XACT_STOP };

/* What a run would do with @p s: into *act (MARIN__XACT_*); its status into
 * *st. @return MARIN_OK or the error reading the status or the KV store
 * (executor_run.c). */
int marin__xstep_action(marin_executor_t *ex, const marin_step_t *s,
                        int force, int *act, marin__xstatus *st);

/* The dry run: print the plan (as marin_executor_plan with @p force) to
 * stdout. @return MARIN_OK or the error (executor.c). */
int marin__xprint_plan(marin_executor_t *ex, int force);

#endif
