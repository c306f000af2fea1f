/* The executor's status file: JSON lines, read with bounds checks and
 * appended by atomic rename (executor_internal.h has the format).
 *
 * Reading never trusts the bytes: the file is capped at MARIN__XSTATUS_MAX,
 * each line is handed to jansson with its length (a NUL byte is a parse
 * error, not an end), and every field is type- and range-checked before it
 * is used. A bad line is MARIN_EPROTO naming the file and the line. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "marin/error.h"
#include "marin/executor.h"

#include "alloc.h"
#include "executor_internal.h"
#include "fail.h"
#include "sync.h"

const char *marin__xstatus_state_name(int state)
{
    switch (state) {
    case MARIN_STEP_WAITING:
        return "WAITING";
    case MARIN_STEP_RUNNING:
        return "RUNNING";
    case MARIN_STEP_SUCCESS:
        return "SUCCESS";
    case MARIN_STEP_FAILED:
        return "FAILED";
    default:
        return "NONE";
    }
}

static int state_from_name(const char *s)
{
    static const int states[] = {MARIN_STEP_WAITING, MARIN_STEP_RUNNING,
                                 MARIN_STEP_SUCCESS, MARIN_STEP_FAILED};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(s, marin__xstatus_state_name(states[i])) == 0)
            return states[i];
    return MARIN_STEP_NONE;
}

/* ---- parsing ---- */

/* A string field of @p o copied into @p buf (cap bytes, NUL included);
 * NULL message when fine, else why not. */
static const char *copy_string_field(json_t *o, const char *key, char *buf,
                                     size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return "missing";
    if (!json_is_string(v))
        return "not a string";
    size_t n = json_string_length(v);
    if (n >= cap)
        return "too long";
    const char *s = json_string_value(v);
    if (memchr(s, '\0', n))
        return "contains a NUL byte";
    memcpy(buf, s, n);
    buf[n] = '\0';
    return NULL;
}

/* One line (@p n bytes at @p p, no newline) into *out; @p file and
 * @p lineno only for the message. */
static int parse_line(const char *file, size_t lineno, const char *p, size_t n,
                      marin__xstatus *out)
{
    if (n == 0)
        return marin__err(MARIN_EPROTO, "%s:%zu: empty line", file, lineno);
    json_error_t jerr;
    json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return marin__err(MARIN_EPROTO, "%s:%zu: not JSON (column %d: %s)",
                          file, lineno, jerr.column, jerr.text);
    int rc = MARIN_OK;
    const char *why;
    char state[16];
    if (!json_is_object(o)) {
        rc = marin__err(MARIN_EPROTO, "%s:%zu: not a JSON object", file,
                        lineno);
        goto done;
    }
    if ((why = copy_string_field(o, "state", state, sizeof state)) != NULL) {
        rc = marin__err(MARIN_EPROTO, "%s:%zu: \"state\" %s", file, lineno,
                        why);
        goto done;
    }
    int st = state_from_name(state);
    if (st == MARIN_STEP_NONE) {
        rc = marin__err(MARIN_EPROTO,
                        "%s:%zu: \"state\" is \"%s\", not WAITING, RUNNING, "
                        "SUCCESS or FAILED",
                        file, lineno, state);
        goto done;
    }
    json_t *a = json_object_get(o, "attempt");
    if (!a || !json_is_integer(a) || json_integer_value(a) < 0 ||
        json_integer_value(a) > INT_MAX) {
        rc = marin__err(MARIN_EPROTO,
                        "%s:%zu: \"attempt\" %s", file, lineno,
                        !a ? "missing"
                           : !json_is_integer(a)
                                 ? "not an integer"
                                 : "out of range (0 to 2147483647)");
        goto done;
    }
    if ((why = copy_string_field(o, "time", out->time, sizeof out->time))) {
        rc = marin__err(MARIN_EPROTO, "%s:%zu: \"time\" %s", file, lineno,
                        why);
        goto done;
    }
    if ((why = copy_string_field(o, "owner", out->owner,
                                 sizeof out->owner))) {
        rc = marin__err(MARIN_EPROTO, "%s:%zu: \"owner\" %s", file, lineno,
                        why);
        goto done;
    }
    out->state = st;
    out->attempt = (int)json_integer_value(a);
done:
    json_decref(o);
    return rc;
}

int marin__xstatus_parse(const char *file, const char *data, size_t len,
                         marin__xstatus *out)
{
    memset(out, 0, sizeof *out);
    out->state = MARIN_STEP_NONE;
    marin__xstatus cur = *out;
    size_t lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        lineno++;
        int rc = parse_line(file, lineno, data + pos, n, &cur);
        if (rc != MARIN_OK)
            return rc;
        pos += n + (nl ? 1 : 0);
    }
    cur.lines = lineno;
    *out = cur;
    return MARIN_OK;
}

/* ---- reading ---- */

/* The whole of @p file in *data (marin__free; NUL-terminated) and *len;
 * a missing file gives *data NULL, *len 0 and MARIN_OK. */
static int slurp(const char *file, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return MARIN_OK;
        return marin__err(MARIN_EUNAVAILABLE, "%s: cannot open: %s", file,
                          strerror(errno));
    }
    int rc = MARIN_OK;
    struct stat sb;
    char *buf = NULL;
    if (fstat(fd, &sb) != 0) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot stat: %s", file,
                        strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: not a regular file", file);
        goto done;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > MARIN__XSTATUS_MAX) {
        rc = marin__err(MARIN_EPROTO,
                        "%s: %lld bytes, over the %zu-byte limit of a status "
                        "file",
                        file, (long long)sb.st_size, MARIN__XSTATUS_MAX);
        goto done;
    }
    /* Read up to the cap plus one byte, whatever size fstat said, so a file
     * that grows meanwhile is still bounded. */
    size_t cap = (size_t)sb.st_size + 1;
    if (!(buf = marin__malloc(cap + 1))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory reading %zu bytes",
                        file, cap);
        goto done;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > MARIN__XSTATUS_MAX) {
                rc = marin__err(MARIN_EPROTO,
                                "%s: over the %zu-byte limit of a status file",
                                file, MARIN__XSTATUS_MAX);
                goto done;
            }
            size_t ncap = cap * 2 > MARIN__XSTATUS_MAX + 1
                              ? MARIN__XSTATUS_MAX + 1
                              : cap * 2;
            char *nb = marin__realloc(buf, ncap + 1);
            if (!nb) {
                rc = marin__err(MARIN_ENOMEM, "%s: out of memory", file);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot read: %s", file,
                            strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
done:
    marin__free(buf);
    close(fd);
    return rc;
}

int marin__xstatus_read(const char *file, marin__xstatus *out)
{
    char *data;
    size_t len;
    memset(out, 0, sizeof *out);
    out->state = MARIN_STEP_NONE;
    int rc = slurp(file, &data, &len);
    if (rc != MARIN_OK)
        return rc;
    rc = marin__xstatus_parse(file, data ? data : "", len, out);
    marin__free(data);
    return rc;
}

/* ---- writing ---- */

/* UTC "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static void format_time(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* A JSON string of @p s; bytes that are not valid UTF-8 become '?' (jansson
 * takes only UTF-8). NULL when out of memory. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = marin__strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    marin__free(copy);
    return v;
}

static int set_new(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

char *marin__xstatus_format(const char *step, int state, int attempt,
                            const char *owner, uint64_t token,
                            const char *error)
{
    char when[MARIN__XSTATUS_TIME_CAP];
    format_time(when, sizeof when);
    json_t *o = json_object();
    if (!o) {
        marin__note_oom();
        return NULL;
    }
    char *line = NULL;
    char *text = NULL;
    if (set_new(o, "state", json_string(marin__xstatus_state_name(state))) ||
        set_new(o, "attempt", json_integer(attempt)) ||
        set_new(o, "time", json_string(when)) ||
        set_new(o, "owner", json_text(owner)) ||
        set_new(o, "step", json_text(step)))
        goto done;
    if (token && token <= (uint64_t)INT64_MAX &&
        set_new(o, "token", json_integer((json_int_t)token)))
        goto done;
    if (error && set_new(o, state == MARIN_STEP_FAILED ? "error" : "note",
                         json_text(error)))
        goto done;
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        goto done;
    size_t n = strlen(text);
    if ((line = marin__malloc(n + 2))) {
        memcpy(line, text, n);
        line[n] = '\n';
        line[n + 1] = '\0';
    }
done:
    if (!line)
        marin__note_oom();
    free(text); /* jansson allocated it with malloc */
    json_decref(o);
    return line;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding @p file, so the rename is durable. */
static int sync_dir(const char *file)
{
    const char *slash = strrchr(file, '/');
    size_t n = slash == file ? 1 : (size_t)(slash - file);
    char *dir = slash ? marin__strndup(file, n) : marin__strdup(".");
    if (!dir)
        return marin__err(MARIN_ENOMEM, "%s: out of memory", file);
    int rc = MARIN_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot sync directory: %s",
                        dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    marin__free(dir);
    return rc;
}

int marin__xstatus_append(const char *file, const char *step, int state,
                          int attempt, const char *owner, uint64_t token,
                          const char *error)
{
    char *old = NULL, *line = NULL, *tmp = NULL;
    size_t old_len = 0;
    int fd = -1;
    marin__xstatus cur;
    int rc = slurp(file, &old, &old_len);
    if (rc != MARIN_OK)
        goto done;
    if ((rc = marin__xstatus_parse(file, old ? old : "", old_len, &cur)) !=
        MARIN_OK)
        goto done;
    if (!(line = marin__xstatus_format(step, state, attempt, owner, token,
                                       error))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory formatting a line",
                        file);
        goto done;
    }
    size_t cap = strlen(file) + 64;
    if (!(tmp = marin__malloc(cap))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory", file);
        goto done;
    }
    /* A name no other writer uses: pid, and a clock reading retried on
     * the rare clash (O_EXCL). */
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        snprintf(tmp, cap, "%s.tmp.%ld.%llx", file, (long)getpid(),
                 (unsigned long long)marin__now_ns() + (unsigned)tries);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot create %s: %s", file,
                        tmp, strerror(errno));
        tmp[0] = '\0'; /* not ours: never remove it */
        goto done;
    }
    /* SUCCESS and FAILED are durable (fsync of the file, then of the
     * directory after the rename); WAITING and RUNNING are only atomic:
     * after a power cut they may be missing, which reads as "not run" and
     * is what a crashed driver's RUNNING means anyway. */
    int durable = state == MARIN_STEP_SUCCESS || state == MARIN_STEP_FAILED;
    int werr = 0;
    if (old_len && write_all(fd, old, old_len))
        werr = 1;
    if (!werr && old_len && old[old_len - 1] != '\n' && write_all(fd, "\n", 1))
        werr = 1;
    if (!werr && write_all(fd, line, strlen(line)))
        werr = 1;
    if (!werr && durable && fsync(fd) != 0)
        werr = 1;
    if (werr) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot write: %s", tmp,
                        strerror(errno));
        goto done;
    }
    int cerr = close(fd);
    fd = -1;
    if (cerr != 0) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot write: %s", tmp,
                        strerror(errno));
        goto done;
    }
    if (rename(tmp, file) != 0) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: cannot rename %s over it: %s",
                        file, tmp, strerror(errno));
        goto done;
    }
    tmp[0] = '\0'; /* renamed: nothing to remove */
    if (durable)
        rc = sync_dir(file);
done:
    if (fd >= 0)
        close(fd);
    if (tmp && tmp[0] && rc != MARIN_OK)
        unlink(tmp);
    marin__free(tmp);
    marin__free(line);
    marin__free(old);
    return rc;
}
