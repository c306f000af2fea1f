/* What this machine (or container) can give the local backend; see
 * capacity.h.
 *
 * Every file is read whole into a fixed stack buffer. A file that is
 * missing, not a regular file, too long, holds a NUL byte or does not parse
 * is skipped, so detection falls back to the next source instead of failing.
 * Nothing here allocates. */
#define _GNU_SOURCE 1
#include "capacity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fail.h"
#include "marin/error.h"

#define PATH_CAP 4096
#define SMALL_CAP 256      /* cpu.max, memory.max, cfs_*_us, limit_in_bytes */
#define MEMINFO_CAP 16384  /* /proc/meminfo is about 1.5 KiB */
#define SELF_CG_CAP 16384  /* /proc/self/cgroup: one line per hierarchy */

#define NO_LIMIT INT64_MAX

/* CPUs this process may run on: the affinity mask (taskset, cpuset
 * cgroups, --cpuset-cpus), else the online count. */
static long usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return sysconf(_SC_NPROCESSORS_ONLN);
}
/* Memory limits at or above this mean "none": cgroup v1 reports an unset
 * limit as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages). */
#define MEM_NONE_AT ((int64_t)1 << 62)
/* Clamp the CPU count so CPUs * 100 never overflows. */
#define CPUS_CAP 1000000L

/* ---- bounded file reading --------------------------------------------- */

/* Read the regular file @p path into @p buf (cap >= 2), NUL-terminated.
 * Returns its length, or -1 when it is missing, unreadable, not a regular
 * file, longer than cap - 1 bytes or holds a NUL byte. O_NONBLOCK keeps a
 * FIFO planted in a fixture from blocking the open. */
static long read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    for (;;) {
        char extra;
        char *dst = len < cap - 1 ? buf + len : &extra;
        size_t want = len < cap - 1 ? cap - 1 - len : 1;
        ssize_t n = read(fd, dst, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n > 0 && dst == &extra)) {
            close(fd); /* error, or more than fits */
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (strlen(buf) != len)
        return -1;
    return (long)len;
}

/* snprintf that reports truncation: 0 when it fit, -1 otherwise. */
static int join(char *dst, size_t cap, const char *a, const char *b,
                const char *c)
{
    int n = snprintf(dst, cap, "%s%s%s%s%s", a, *b ? "/" : "", b,
                     *c ? "/" : "", c);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- small parsers ------------------------------------------------------ */

static const char *skip_blank(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Only blanks and line ends are left. */
static int at_end(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return *p == '\0';
}

/* Parse decimal digits at *p into *v (at most INT64_MAX), advancing *p.
 * 0 on success, -1 when there is no digit or the value overflows. */
static int parse_i64(const char **p, int64_t *v)
{
    const char *s = *p;
    int64_t x = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        int d = *s - '0';
        if (x > (INT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    *p = s;
    return 0;
}

/* Hundredths of a CPU for quota/period, rounded down so a container is
 * never promised more than its quota. -1 for a meaningless pair. */
static int64_t cpu_hundredths(int64_t quota, int64_t period)
{
    if (quota <= 0 || period <= 0)
        return -1;
    if (quota > INT64_MAX / 100)
        return NO_LIMIT;
    return quota * 100 / period;
}

/* ---- /proc/self/cgroup -------------------------------------------------- */

struct cg_paths {
    char v2[PATH_CAP];  /* relative to cgroup_root, no leading '/' */
    char cpu[PATH_CAP]; /* v1, relative to the cpu hierarchy */
    char mem[PATH_CAP]; /* v1, relative to the memory hierarchy */
};

/* Copy the cgroup path [s, s + n) into dst as "a/b" ("" for the root),
 * dropping empty and "." components. A path that does not start with '/',
 * has a ".." component (a cgroup outside our namespace shows as "/../..")
 * or does not fit means the root: its files are the ones we can see. */
static void clean_cg_path(char *dst, const char *s, size_t n)
{
    size_t out = 0;
    dst[0] = '\0';
    if (n == 0 || s[0] != '/')
        return;
    size_t i = 0;
    while (i < n) {
        while (i < n && s[i] == '/')
            i++;
        size_t start = i;
        while (i < n && s[i] != '/')
            i++;
        size_t len = i - start;
        if (len == 0 || (len == 1 && s[start] == '.'))
            continue;
        if (len == 2 && s[start] == '.' && s[start + 1] == '.') {
            dst[0] = '\0';
            return;
        }
        if (out + (out ? 1 : 0) + len + 1 > PATH_CAP) {
            dst[0] = '\0';
            return;
        }
        if (out)
            dst[out++] = '/';
        memcpy(dst + out, s + start, len);
        out += len;
        dst[out] = '\0';
    }
}

/* 1 when the comma-separated list [s, s + n) holds @p name. */
static int has_controller(const char *s, size_t n, const char *name)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i <= n) {
        size_t start = i;
        while (i < n && s[i] != ',')
            i++;
        if (i - start == nl && memcmp(s + start, name, nl) == 0)
            return 1;
        i++;
    }
    return 0;
}

/* Fill @p cg from <proc_root>/self/cgroup ("id:controllers:path" lines).
 * Whatever is missing stays "", the hierarchy root. */
static void read_self_cgroup(const char *proc_root, struct cg_paths *cg)
{
    char path[PATH_CAP];
    char buf[SELF_CG_CAP];
    cg->v2[0] = cg->cpu[0] = cg->mem[0] = '\0';
    if (join(path, sizeof path, proc_root, "self/cgroup", "") != 0 ||
        read_small(path, buf, sizeof buf) < 0)
        return;
    const char *line = buf;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 =
            c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            const char *p = c2 + 1;
            size_t plen = len - (size_t)(p - line);
            size_t clen = (size_t)(c2 - c1 - 1);
            if (c1 - line == 1 && line[0] == '0' && clen == 0)
                clean_cg_path(cg->v2, p, plen);
            else {
                if (has_controller(c1 + 1, clen, "cpu"))
                    clean_cg_path(cg->cpu, p, plen);
                if (has_controller(c1 + 1, clen, "memory"))
                    clean_cg_path(cg->mem, p, plen);
            }
        }
        if (!eol)
            break;
        line = eol + 1;
    }
}

/* ---- limits, one cgroup directory at a time ---------------------------- */

/* Each reader looks at one cgroup directory and returns its limit (CPU
 * hundredths or bytes), or -1 when it sets none or says nothing usable. */
typedef int64_t (*limit_fn)(const char *dir);

/* cgroup v2 cpu.max: "max 100000" or "200000 100000". */
static int64_t v2_cpu_limit(const char *dir)
{
    char path[PATH_CAP], buf[SMALL_CAP];
    int64_t quota, period = 100000;
    if (join(path, sizeof path, dir, "cpu.max", "") != 0 ||
        read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *p = skip_blank(buf);
    if (strncmp(p, "max", 3) == 0)
        return -1;
    if (parse_i64(&p, &quota) != 0)
        return -1;
    p = skip_blank(p);
    if (!at_end(p) && parse_i64(&p, &period) != 0)
        return -1;
    if (!at_end(p))
        return -1;
    return cpu_hundredths(quota, period);
}

/* One integer (optionally negative) filling a whole file; 0 on success. */
static int read_int_file(const char *dir, const char *name, int64_t *v)
{
    char path[PATH_CAP], buf[SMALL_CAP];
    if (join(path, sizeof path, dir, name, "") != 0 ||
        read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *p = skip_blank(buf);
    int neg = *p == '-';
    if (neg)
        p++;
    if (parse_i64(&p, v) != 0 || !at_end(p))
        return -1;
    if (neg)
        *v = -*v;
    return 0;
}

/* cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: unlimited). */
static int64_t v1_cpu_limit(const char *dir)
{
    int64_t quota, period;
    if (read_int_file(dir, "cpu.cfs_quota_us", &quota) != 0 ||
        read_int_file(dir, "cpu.cfs_period_us", &period) != 0)
        return -1;
    return cpu_hundredths(quota, period);
}

/* A byte count; "max", 0 and values from MEM_NONE_AT up mean no limit. */
static int64_t mem_limit_file(const char *dir, const char *name)
{
    char path[PATH_CAP], buf[SMALL_CAP];
    int64_t v;
    if (join(path, sizeof path, dir, name, "") != 0 ||
        read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *p = skip_blank(buf);
    if (strncmp(p, "max", 3) == 0 && at_end(p + 3))
        return -1;
    if (parse_i64(&p, &v) != 0 || !at_end(p) || v <= 0 || v >= MEM_NONE_AT)
        return -1;
    return v;
}

static int64_t v2_mem_limit(const char *dir)
{
    return mem_limit_file(dir, "memory.max");
}

static int64_t v1_mem_limit(const char *dir)
{
    return mem_limit_file(dir, "memory.limit_in_bytes");
}

/* Smallest limit from <base>/<rel> up through each parent to <base>
 * itself; a child can never use more than an ancestor allows. */
static int64_t walk_up(const char *base, const char *rel, limit_fn fn)
{
    char cur[PATH_CAP], dir[PATH_CAP];
    int64_t best = NO_LIMIT;
    snprintf(cur, sizeof cur, "%s", rel); /* fits: rel is a cg_paths field */
    for (;;) {
        if (join(dir, sizeof dir, base, cur, "") == 0) {
            int64_t v = fn(dir);
            if (v >= 0 && v < best)
                best = v;
        }
        if (!cur[0])
            break;
        char *slash = strrchr(cur, '/');
        if (slash)
            *slash = '\0';
        else
            cur[0] = '\0';
    }
    return best;
}

/* The v1 hierarchy holding @p names' first existing directory, or NULL. */
static const char *v1_base(const char *root, const char *const *names,
                           char *buf, size_t cap)
{
    for (; *names; names++)
        if (join(buf, cap, root, *names, "") == 0 && is_dir(buf))
            return buf;
    return NULL;
}

static int64_t cgroup_cpu_limit(const char *root, const struct cg_paths *cg)
{
    static const char *const cpu_dirs[] = {"cpu", "cpu,cpuacct",
                                           "cpuacct,cpu", NULL};
    char base[PATH_CAP];
    int64_t lim = walk_up(root, cg->v2, v2_cpu_limit);
    if (v1_base(root, cpu_dirs, base, sizeof base)) {
        int64_t v1 = walk_up(base, cg->cpu, v1_cpu_limit);
        if (v1 < lim)
            lim = v1;
    }
    return lim;
}

static int64_t cgroup_mem_limit(const char *root, const struct cg_paths *cg)
{
    static const char *const mem_dirs[] = {"memory", NULL};
    char base[PATH_CAP];
    int64_t lim = walk_up(root, cg->v2, v2_mem_limit);
    if (v1_base(root, mem_dirs, base, sizeof base)) {
        int64_t v1 = walk_up(base, cg->mem, v1_mem_limit);
        if (v1 < lim)
            lim = v1;
    }
    return lim;
}

/* ---- machine totals ----------------------------------------------------- */

/* MemTotal from <proc_root>/meminfo in bytes; else the physical pages
 * sysconf reports; 0 when neither is known. */
static int64_t machine_memory(const char *proc_root)
{
    char path[PATH_CAP], buf[MEMINFO_CAP];
    if (join(path, sizeof path, proc_root, "meminfo", "") == 0 &&
        read_small(path, buf, sizeof buf) >= 0) {
        const char *line = buf;
        while (line && *line) {
            if (strncmp(line, "MemTotal:", 9) == 0) {
                const char *p = skip_blank(line + 9);
                int64_t kb;
                if (parse_i64(&p, &kb) == 0 && kb > 0 &&
                    kb <= INT64_MAX / 1024) {
                    p = skip_blank(p);
                    if (strncmp(p, "kB", 2) == 0 &&
                        (p[2] == '\n' || p[2] == '\0' || p[2] == ' '))
                        return kb * 1024;
                }
                break; /* garbled MemTotal: fall back */
            }
            line = strchr(line, '\n');
            if (line)
                line++;
        }
    }
    long pages = sysconf(_SC_PHYS_PAGES);
    long psize = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psize <= 0 || pages > INT64_MAX / psize)
        return 0;
    return (int64_t)pages * psize;
}

/* ---- GPUs ---------------------------------------------------------------- */

static int is_uuid_entry(const char *s, size_t n)
{
    if (n <= 4 || (memcmp(s, "GPU-", 4) != 0 && memcmp(s, "MIG-", 4) != 0))
        return 0;
    for (size_t i = 4; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '-' || c == '/'))
            return 0;
    }
    return 1;
}

/* CUDA_VISIBLE_DEVICES: "" / "-1" / "NoDevFiles" hide every GPU; else a
 * comma-separated list of distinct non-negative indices, or of GPU-/MIG-
 * UUIDs. A UUID names one GPU but not its index, so a UUID list counts one
 * GPU per entry and numbers them 0..n-1 (CUDA renumbers visible devices
 * from 0 anyway). Anything else is MARIN_EINVAL naming the entry. */
static int parse_cuda_visible(const char *s, int *ids, size_t *n)
{
    const char *what = "CUDA_VISIBLE_DEVICES";
    const char *p = skip_blank(s);
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    *n = 0;
    if (len == 0 || (len == 2 && memcmp(p, "-1", 2) == 0) ||
        (len == 10 && memcmp(p, "NoDevFiles", 10) == 0))
        return MARIN_OK;
    size_t count = 0, uuids = 0, i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && p[i] != ',')
            i++;
        size_t a = start, b = i;
        while (a < b && (p[a] == ' ' || p[a] == '\t'))
            a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
            b--;
        const char *e = p + a;
        int elen = b - a > 32 ? 32 : (int)(b - a);
        if (count == MARIN__MAX_GPUS)
            return marin__err(MARIN_EINVAL,
                              "%s: more than %d entries; marin handles at "
                              "most %d GPUs",
                              what, MARIN__MAX_GPUS, MARIN__MAX_GPUS);
        if (a == b)
            return marin__err(MARIN_EINVAL,
                              "%s=\"%.64s\": entry %zu is empty", what, s,
                              count + 1);
        const char *q = e;
        int64_t v;
        if (parse_i64(&q, &v) == 0 && q == p + b && v <= INT_MAX) {
            for (size_t k = 0; k < count; k++)
                if (ids[k] == (int)v)
                    return marin__err(MARIN_EINVAL,
                                      "%s=\"%.64s\": GPU %d is listed twice",
                                      what, s, (int)v);
            ids[count] = (int)v;
        } else if (is_uuid_entry(e, b - a)) {
            uuids++;
        } else {
            return marin__err(MARIN_EINVAL,
                              "%s=\"%.64s\": entry %zu '%.*s' is not a GPU "
                              "index (want non-negative integers, GPU-/MIG- "
                              "UUIDs, \"\" or -1)",
                              what, s, count + 1, elen, e);
        }
        count++;
        i++;
    }
    if (uuids && uuids != count)
        return marin__err(MARIN_EINVAL,
                          "%s=\"%.64s\": mixes GPU indices and UUIDs", what,
                          s);
    if (uuids)
        for (size_t k = 0; k < count; k++)
            ids[k] = (int)k;
    *n = count;
    return MARIN_OK;
}

/* One GPU per entry of the nvidia gpus directory (missing: none). */
static size_t count_gpu_dir(const char *dir, int *ids)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *de;
    while (n < MARIN__MAX_GPUS && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        ids[n] = (int)n;
        n++;
    }
    closedir(d);
    return n;
}

/* ---- entry point --------------------------------------------------------- */

int marin__detect_capacity(const marin__capacity_sources *src,
                           marin_resources_t *out, int *gpu_ids,
                           size_t *ngpus)
{
    static const marin__capacity_sources none = {0};
    if (!out)
        return marin__err(MARIN_EINVAL, "detect capacity: NULL resources");
    if (!src)
        src = &none;
    const char *cg_root =
        src->cgroup_root ? src->cgroup_root : "/sys/fs/cgroup";
    const char *proc_root = src->proc_root ? src->proc_root : "/proc";
    const char *gpu_dir = src->nvidia_gpus_dir ? src->nvidia_gpus_dir
                                               : "/proc/driver/nvidia/gpus";

    /* GPUs first: the only source that can fail, so out stays untouched. */
    int ids[MARIN__MAX_GPUS];
    size_t ng = 0;
    const char *cvd = src->cuda_visible_set ? src->cuda_visible
                                            : getenv("CUDA_VISIBLE_DEVICES");
    if (cvd) {
        int rc = parse_cuda_visible(cvd, ids, &ng);
        if (rc != MARIN_OK)
            return rc;
    } else {
        ng = count_gpu_dir(gpu_dir, ids);
    }

    struct cg_paths cg;
    read_self_cgroup(proc_root, &cg);

    long online = src->online_cpus > 0 ? src->online_cpus : usable_cpus();
    if (online < 1)
        online = 1;
    if (online > CPUS_CAP)
        online = CPUS_CAP;
    int64_t cpus = (int64_t)online * 100;
    int64_t cpu_lim = cgroup_cpu_limit(cg_root, &cg);
    if (cpu_lim < cpus)
        cpus = cpu_lim;
    if (cpus < 1)
        cpus = 1;

    int64_t mem = machine_memory(proc_root);
    int64_t mem_lim = cgroup_mem_limit(cg_root, &cg);
    if (mem_lim != NO_LIMIT && (mem == 0 || mem_lim < mem))
        mem = mem_lim;

    /* Publish; on failure put back what out held. */
    double old_cpus = marin_resources_get(out, "cpus");
    double old_mem = marin_resources_get(out, "memory");
    double old_gpus = marin_resources_get(out, "gpus");
    int rc = marin_resources_set(out, "cpus", (double)cpus / 100.0);
    if (rc == MARIN_OK && mem > 0)
        rc = marin_resources_set(out, "memory", (double)mem);
    if (rc == MARIN_OK && ng > 0)
        rc = marin_resources_set(out, "gpus", (double)ng);
    if (rc != MARIN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", marin__err_msg());
        marin_resources_set(out, "cpus", old_cpus);
        marin_resources_set(out, "memory", old_mem);
        marin_resources_set(out, "gpus", old_gpus);
        return marin__err(rc, "detect capacity: %s", msg);
    }
    if (gpu_ids && ng)
        memcpy(gpu_ids, ids, ng * sizeof ids[0]);
    if (ngpus)
        *ngpus = ng;
    return MARIN_OK;
}
