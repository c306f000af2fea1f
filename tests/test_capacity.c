/* Capacity detection (src/core/capacity.c) against fixture trees
 * of /proc, cgroup v1/v2 and the nvidia gpus directory, and once against
 * the real machine. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/capacity.h"
#include "core/alloc.h"
#include "testutil.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)

static char root[PATH_MAX];          /* this case's fixture tree */
static char cg_dir[PATH_MAX + 16];   /* <root>/cgroup */
static char proc_dir[PATH_MAX + 16]; /* <root>/proc */
static char gpu_dir[PATH_MAX + 16];  /* <root>/nvidia/gpus */

/* ---- fixture helpers ---------------------------------------------------- */

/* mkdir -p <root>/<rel> */
static void mkdirs(const char *rel)
{
    char p[PATH_MAX * 2];
    int n = snprintf(p, sizeof p, "%s/%s", root, rel);
    ck_assert(n > 0 && (size_t)n < sizeof p);
    for (char *s = p + strlen(root) + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        ck_assert_msg(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s", p);
        *s = '/';
    }
    ck_assert_msg(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s", p);
}

/* Write @p text to <root>/<rel>, making the parent directories. */
static void put(const char *rel, const char *text)
{
    char dir[PATH_MAX], p[PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdirs(dir);
    }
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "fopen %s", p);
    ck_assert(fputs(text, f) >= 0);
    ck_assert(fclose(f) == 0);
}

/* Write @p n raw bytes (NULs included) to <root>/<rel>. */
static void put_raw(const char *rel, const char *bytes, size_t n)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "fopen %s", p);
    ck_assert(fwrite(bytes, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/marin_capacity_XXXXXX");
    ck_assert_msg(mkdtemp(root) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(cg_dir, sizeof cg_dir, "%s/cgroup", root);
    snprintf(proc_dir, sizeof proc_dir, "%s/proc", root);
    snprintf(gpu_dir, sizeof gpu_dir, "%s/nvidia/gpus", root);
}

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void teardown(void)
{
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Sources pointing at the fixture tree: 8 online CPUs, CUDA_VISIBLE_DEVICES
 * unset (without reading the real environment). */
static marin__capacity_sources fixture_sources(void)
{
    marin__capacity_sources s = {0};
    s.cgroup_root = cg_dir;
    s.proc_root = proc_dir;
    s.nvidia_gpus_dir = gpu_dir;
    s.cuda_visible_set = 1;
    s.cuda_visible = NULL;
    s.online_cpus = 8;
    return s;
}

/* 16 GiB of RAM. */
static void put_meminfo(void)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\n"
                        "MemFree:         1234567 kB\n"
                        "MemAvailable:    7654321 kB\n");
}

/* What capacity.c falls back to without a usable meminfo. */
static double sysconf_memory(void)
{
    return (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
}

/* Run detection into a fresh set; the caller destroys *out. */
static int detect(const marin__capacity_sources *s, marin_resources_t **out,
                  int *ids, size_t *n)
{
    ck_assert_marin(marin_resources_create(out), MARIN_OK);
    return marin__detect_capacity(s, *out, ids, n);
}

#define ck_cpus(r, want)                                                      \
    ck_assert_double_eq_tol(marin_resources_get((r), "cpus"), (want), 1e-9)
#define ck_mem(r, want)                                                       \
    ck_assert_double_eq(marin_resources_get((r), "memory"), (want))
#define ck_gpus(r, want)                                                      \
    ck_assert_double_eq(marin_resources_get((r), "gpus"), (want))

/* ---- cgroup v2 ---------------------------------------------------------- */

START_TEST(test_capacity_v2_parent_limit_wins)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/kubepods/pod1\n");
    put("cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    put("cgroup/kubepods/cpu.max", "150000 100000\n");
    put("cgroup/kubepods/memory.max", "1073741824\n");
    put("cgroup/kubepods/pod1/cpu.max", "max 100000\n");
    put("cgroup/kubepods/pod1/memory.max", "2147483648\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 99;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_cpus(r, 1.5);
    ck_mem(r, GIB);
    ck_gpus(r, 0);
    ck_assert_uint_eq(n, 0);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v2_child_limit_wins)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/a/b/c\n");
    put("cgroup/a/cpu.max", "400000 100000\n");
    put("cgroup/a/memory.max", "max\n");
    put("cgroup/a/b/c/cpu.max", "50000 100000\n");
    put("cgroup/a/b/c/memory.max", "536870912\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 0.5);
    ck_mem(r, 512 * MIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v2_unlimited_uses_machine)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/user.slice/session-1.scope\n");
    put("cgroup/user.slice/cpu.max", "max 100000\n");
    put("cgroup/user.slice/memory.max", "max\n");
    put("cgroup/user.slice/session-1.scope/cpu.max", "max 100000\n");
    put("cgroup/user.slice/session-1.scope/memory.max", "max\n");
    marin__capacity_sources s = fixture_sources();
    s.online_cpus = 6;
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 6);
    ck_mem(r, 16 * GIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v2_limit_above_online_cpus)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/big\n");
    put("cgroup/big/cpu.max", "1600000 100000\n");
    put("cgroup/big/memory.max", "68719476736\n"); /* 64 GiB > MemTotal */
    marin__capacity_sources s = fixture_sources();
    s.online_cpus = 2;
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 2);
    ck_mem(r, 16 * GIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v2_namespace_root)
{
    /* In a container with its own cgroup namespace the path is "/" and the
     * limits sit at the mount root. */
    put_meminfo();
    put("proc/self/cgroup", "0::/\n");
    put("cgroup/cpu.max", "300000 100000\n");
    put("cgroup/memory.max", "3221225472\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 3);
    ck_mem(r, 3 * GIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_fractional_cpus_round_down)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/x\n");
    put("cgroup/x/cpu.max", "33333 100000\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 0.33);
    marin_resources_destroy(r);

    put("cgroup/x/cpu.max", "1000 1000000\n"); /* 0.001 CPU */
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 0.01);
    marin_resources_destroy(r);

    put("cgroup/x/cpu.max", "250000\n"); /* period left out: 100000 */
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 2.5);
    marin_resources_destroy(r);
}
END_TEST

/* ---- cgroup v1 ---------------------------------------------------------- */

START_TEST(test_capacity_v1_quota_and_memory)
{
    put_meminfo();
    put("proc/self/cgroup", "12:pids:/docker/abc\n"
                            "5:cpu,cpuacct:/docker/abc\n"
                            "4:memory:/docker/abc\n"
                            "1:name=systemd:/docker/abc\n"
                            "0::/system.slice/docker.service\n");
    put("cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put("cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    put("cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    put("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    put("cgroup/memory/docker/abc/memory.limit_in_bytes", "536870912\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 2.5);
    ck_mem(r, 512 * MIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v1_unlimited)
{
    put_meminfo();
    put("proc/self/cgroup", "3:cpu,cpuacct:/\n4:memory:/\n");
    put("cgroup/cpu/cpu.cfs_quota_us", "-1\n");
    put("cgroup/cpu/cpu.cfs_period_us", "100000\n");
    put("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, 16 * GIB);
    marin_resources_destroy(r);

    /* without MemTotal the "unlimited" value must not become the amount */
    put("proc/meminfo", "garbage\n");
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_mem(r, sysconf_memory());
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_v1_container_sees_host_path)
{
    /* Without a cgroup namespace /proc/self/cgroup names the host's path
     * while the container's own cgroup is mounted at the hierarchy root. */
    put_meminfo();
    put("proc/self/cgroup", "5:cpuacct,cpu:/docker/0123456789abcdef\n"
                            "4:memory:/docker/0123456789abcdef\n");
    put("cgroup/cpuacct,cpu/cpu.cfs_quota_us", "50000\n");
    put("cgroup/cpuacct,cpu/cpu.cfs_period_us", "100000\n");
    put("cgroup/memory/memory.limit_in_bytes", "268435456\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 0.5);
    ck_mem(r, 256 * MIB);
    marin_resources_destroy(r);
}
END_TEST

/* ---- missing and garbage files ------------------------------------------ */

START_TEST(test_capacity_missing_files_fall_back)
{
    /* Nothing at all under the fixture root. */
    marin__capacity_sources s = fixture_sources();
    s.online_cpus = 3;
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 99;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_cpus(r, 3);
    ck_mem(r, sysconf_memory());
    ck_gpus(r, 0);
    ck_assert_uint_eq(n, 0);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_missing_meminfo_keeps_cgroup_limit)
{
    put("proc/self/cgroup", "0::/m\n");
    put("cgroup/m/memory.max", "1048576\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_mem(r, MIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_garbage_files_ignored)
{
    put("proc/meminfo", "MemTotal: lots kB\n");
    put("proc/self/cgroup", "0::/g\n");
    put("cgroup/cpu.max", "\x01\x02\xff garbage");
    put("cgroup/memory.max", "");
    put("cgroup/g/cpu.max", "banana 100000\n");
    put("cgroup/g/memory.max", "12abc\n");
    put("cgroup/cpu/cpu.cfs_quota_us", "100000 0\n");
    put("cgroup/cpu/cpu.cfs_period_us", "0\n");
    put("cgroup/memory/memory.limit_in_bytes", "-5\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, sysconf_memory());
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_garbage_numbers_ignored)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/g\n");
    /* zero period, overflowing quota, negative quota, trailing junk */
    put("cgroup/g/cpu.max", "100000 0\n");
    put("cgroup/cpu.max", "-100000 100000\n");
    put("cgroup/g/memory.max", "99999999999999999999999\n");
    put("cgroup/memory.max", "0\n");
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, 16 * GIB);
    marin_resources_destroy(r);

    put("cgroup/g/cpu.max", "200000 100000 7\n");
    put("cgroup/cpu.max", "99999999999999999999 100000\n");
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    marin_resources_destroy(r);

    /* a NUL byte makes the whole file garbage */
    put_raw("cgroup/g/cpu.max", "50000 100000\n\0junk", 18);
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    marin_resources_destroy(r);

    /* a huge quota that still parses is merely unlimited */
    put("cgroup/g/cpu.max", "9223372036854775807 100000\n");
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_garbage_self_cgroup)
{
    put_meminfo();
    put("cgroup/cpu.max", "100000 100000\n"); /* the root's: 1 CPU */
    /* decoys, used only if a bad path were followed */
    put("cgroup/escape/cpu.max", "10000 100000\n");
    put("cgroup/relative/path/cpu.max", "10000 100000\n");
    put("cpu.max", "10000 100000\n"); /* <cgroup_root>/.. */
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;

    const char *junk[] = {
        "no colons here\n",
        "0::relative/path\n",
        "0::/../../escape\n", /* outside our namespace: means the root */
        ":::::\n\n\n",
        "0:",
        "",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        put("proc/self/cgroup", junk[i]);
        ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
        ck_assert_msg(marin_resources_get(r, "cpus") == 1.0,
                      "self/cgroup '%s': cpus %g", junk[i],
                      marin_resources_get(r, "cpus"));
        ck_mem(r, 16 * GIB);
        marin_resources_destroy(r);
    }
}
END_TEST

START_TEST(test_capacity_oversized_files_ignored)
{
    /* Files longer than any buffer are skipped, never read partly. */
    static char big[64 * 1024];
    memset(big, 'x', sizeof big - 1);
    memcpy(big, "MemTotal: 1024 kB\n", 18);
    put("proc/meminfo", big);
    memcpy(big, "0::/a\n", 6);
    put("proc/self/cgroup", big);
    memcpy(big, "100000 100000\n", 14);
    put("cgroup/cpu.max", big);
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, sysconf_memory());
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_directories_and_fifos_ignored)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/d\n");
    mkdirs("cgroup/d/cpu.max"); /* a directory where a file should be */
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/cgroup/memory.max", root);
    ck_assert(mkfifo(p, 0600) == 0); /* would block a plain open() */
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, 16 * GIB);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_keeps_other_resources)
{
    put_meminfo();
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "TPU", 4), MARIN_OK);
    ck_assert_marin(marin__detect_capacity(&s, r, NULL, NULL), MARIN_OK);
    ck_cpus(r, 8);
    ck_mem(r, 16 * GIB);
    ck_assert_double_eq(marin_resources_get(r, "TPU"), 4);
    marin_resources_destroy(r);
}
END_TEST

/* ---- GPUs ------------------------------------------------------------- */

static void put_two_gpus(void)
{
    put("nvidia/gpus/0000:3b:00.0/information", "Model: fake\n");
    put("nvidia/gpus/0000:86:00.0/information", "Model: fake\n");
}

START_TEST(test_capacity_gpu_dir_counts_entries)
{
    put_two_gpus();
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS] = {-7, -7, -7};
    size_t n = 0;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_gpus(r, 2);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[1], 1);
    ck_assert_int_eq(ids[2], -7);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_gpu_dir_missing_or_empty)
{
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    size_t n = 5;
    ck_assert_marin(detect(&s, &r, NULL, &n), MARIN_OK);
    ck_assert_uint_eq(n, 0);
    ck_gpus(r, 0);
    marin_resources_destroy(r);

    mkdirs("nvidia/gpus");
    n = 5;
    ck_assert_marin(detect(&s, &r, NULL, &n), MARIN_OK);
    ck_assert_uint_eq(n, 0);
    ck_gpus(r, 0);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_gpu_dir_capped)
{
    char name[64];
    for (int i = 0; i < MARIN__MAX_GPUS + 6; i++) {
        snprintf(name, sizeof name, "nvidia/gpus/gpu%02d", i);
        mkdirs(name);
    }
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_assert_uint_eq(n, MARIN__MAX_GPUS);
    ck_gpus(r, MARIN__MAX_GPUS);
    ck_assert_int_eq(ids[MARIN__MAX_GPUS - 1], MARIN__MAX_GPUS - 1);
    marin_resources_destroy(r);
}
END_TEST

/* CUDA_VISIBLE_DEVICES hides the 2 GPUs of the directory. */
static void expect_no_gpus(const char *cvd)
{
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible = cvd;
    marin_resources_t *r;
    size_t n = 9;
    ck_assert_marin(detect(&s, &r, NULL, &n), MARIN_OK);
    ck_assert_msg(n == 0, "CUDA_VISIBLE_DEVICES='%s': %zu GPUs", cvd, n);
    ck_gpus(r, 0);
    ck_cpus(r, 8);
    marin_resources_destroy(r);
}

START_TEST(test_capacity_cuda_visible_hides_all)
{
    put_two_gpus();
    expect_no_gpus("");
    expect_no_gpus("-1");
    expect_no_gpus("NoDevFiles");
    expect_no_gpus("  ");
}
END_TEST

START_TEST(test_capacity_cuda_visible_ids)
{
    put_two_gpus();
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible = "2,3";
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_gpus(r, 2);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 2);
    ck_assert_int_eq(ids[1], 3);
    marin_resources_destroy(r);

    s.cuda_visible = " 7 , 0 ,5";
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_gpus(r, 3);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 7);
    ck_assert_int_eq(ids[1], 0);
    ck_assert_int_eq(ids[2], 5);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_cuda_visible_uuids)
{
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible = "GPU-8a6f2c1e-1111-2222-3333-444455556666,"
                     "GPU-0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff";
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_gpus(r, 2);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[1], 1);
    marin_resources_destroy(r);

    s.cuda_visible = "MIG-GPU-8a6f2c1e/1/0";
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_assert_uint_eq(n, 1);
    ck_gpus(r, 1);
    marin_resources_destroy(r);
}
END_TEST

/* A bad CUDA_VISIBLE_DEVICES is MARIN_EINVAL naming @p needle; the set is
 * left as it was. */
static void expect_bad(const char *cvd, const char *needle)
{
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible = cvd;
    marin_resources_t *r;
    size_t n = 42;
    ck_assert_marin(detect(&s, &r, NULL, &n), MARIN_EINVAL);
    ck_assert_lasterr_has("CUDA_VISIBLE_DEVICES");
    ck_assert_lasterr_has(needle);
    ck_assert_uint_eq(n, 42);
    ck_assert_double_eq(marin_resources_get(r, "cpus"), 0);
    ck_assert_double_eq(marin_resources_get(r, "memory"), 0);
    marin_resources_destroy(r);
}

START_TEST(test_capacity_cuda_visible_rejects_junk)
{
    put_meminfo();
    expect_bad("0,a", "'a'");
    expect_bad("x", "'x'");
    expect_bad("0,,1", "entry 2 is empty");
    expect_bad("0,1,", "entry 3 is empty");
    expect_bad("1,-1", "'-1'");
    expect_bad("1.5", "'1.5'");
    expect_bad("99999999999", "'99999999999'");
    expect_bad("GPU-", "'GPU-'");
    expect_bad("3,3", "listed twice");
    expect_bad("0,GPU-abcd", "mixes");
}
END_TEST

START_TEST(test_capacity_cuda_visible_too_many)
{
    char buf[512] = "";
    size_t len = 0;
    for (int i = 0; i <= MARIN__MAX_GPUS; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d",
                                i ? "," : "", i);
    ck_assert_uint_lt(len, sizeof buf);
    expect_bad(buf, "more than 64");

    buf[strlen(buf) - 3] = '\0'; /* drop ",64": exactly 64 is fine */
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible = buf;
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_assert_uint_eq(n, MARIN__MAX_GPUS);
    ck_assert_int_eq(ids[63], 63);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_capacity_cuda_visible_from_environment)
{
    put_two_gpus();
    marin__capacity_sources s = fixture_sources();
    s.cuda_visible_set = 0;
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;

    ck_assert_int_eq(setenv("CUDA_VISIBLE_DEVICES", "5", 1), 0);
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 5);
    ck_gpus(r, 1);
    marin_resources_destroy(r);

    ck_assert_int_eq(setenv("CUDA_VISIBLE_DEVICES", "0,a", 1), 0);
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_EINVAL);
    ck_assert_lasterr_has("'a'");
    marin_resources_destroy(r);

    ck_assert_int_eq(unsetenv("CUDA_VISIBLE_DEVICES"), 0);
    ck_assert_marin(detect(&s, &r, ids, &n), MARIN_OK);
    ck_assert_uint_eq(n, 2); /* the directory again */
    marin_resources_destroy(r);
}
END_TEST

/* ---- misuse, OOM, the real machine -------------------------------------- */

START_TEST(test_capacity_null_resources)
{
    marin__capacity_sources s = fixture_sources();
    ck_assert_marin(marin__detect_capacity(&s, NULL, NULL, NULL),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("NULL");
}
END_TEST

START_TEST(test_capacity_oom_loop)
{
    put_meminfo();
    put("proc/self/cgroup", "0::/o\n");
    put("cgroup/o/cpu.max", "200000 100000\n");
    put_two_gpus();
    marin__capacity_sources s = fixture_sources();
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    int rc = MARIN_ENOMEM;
    for (long k = 0; k < 1000 && rc != MARIN_OK; k++) {
        ck_assert_marin(marin_resources_create(&r), MARIN_OK);
        marin__test_fail_alloc_after(k);
        rc = marin__detect_capacity(&s, r, ids, &n);
        marin__test_fail_alloc_after(-1);
        ck_assert_msg(rc == MARIN_OK || rc == MARIN_ENOMEM,
                      "after %ld allocations: %d (%s)", k, rc,
                      marin_last_error());
        if (rc == MARIN_OK) {
            ck_cpus(r, 2);
            ck_mem(r, 16 * GIB);
            ck_gpus(r, 2);
        } else {
            ck_assert_double_eq(marin_resources_get(r, "cpus"), 0);
        }
        marin_resources_destroy(r);
    }
    ck_assert_int_eq(rc, MARIN_OK);
}
END_TEST

START_TEST(test_capacity_real_machine)
{
    marin_resources_t *r;
    int ids[MARIN__MAX_GPUS];
    size_t n = 0;
    /* All real paths; CUDA_VISIBLE_DEVICES unset so a stray value in the
     * test environment cannot fail the run. */
    ck_assert_int_eq(unsetenv("CUDA_VISIBLE_DEVICES"), 0);
    ck_assert_marin(detect(NULL, &r, ids, &n), MARIN_OK);
    double cpus = marin_resources_get(r, "cpus");
    ck_assert_msg(cpus >= 0.01, "cpus %g", cpus);
    ck_assert_msg(cpus <= (double)sysconf(_SC_NPROCESSORS_ONLN),
                  "cpus %g above the online count", cpus);
    ck_assert_msg(marin_resources_get(r, "memory") > 0, "no memory");
    ck_assert_uint_le(n, MARIN__MAX_GPUS);
    ck_gpus(r, (double)n);
    marin_resources_destroy(r);

    marin__capacity_sources s = {0}; /* the same through zeroed sources */
    ck_assert_marin(detect(&s, &r, NULL, NULL), MARIN_OK);
    ck_assert(marin_resources_get(r, "cpus") == cpus);
    marin_resources_destroy(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("capacity");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_capacity_v2_parent_limit_wins);
    tcase_add_test(tc, test_capacity_v2_child_limit_wins);
    tcase_add_test(tc, test_capacity_v2_unlimited_uses_machine);
    tcase_add_test(tc, test_capacity_v2_limit_above_online_cpus);
    tcase_add_test(tc, test_capacity_v2_namespace_root);
    tcase_add_test(tc, test_capacity_fractional_cpus_round_down);
    tcase_add_test(tc, test_capacity_v1_quota_and_memory);
    tcase_add_test(tc, test_capacity_v1_unlimited);
    tcase_add_test(tc, test_capacity_v1_container_sees_host_path);
    tcase_add_test(tc, test_capacity_missing_files_fall_back);
    tcase_add_test(tc, test_capacity_missing_meminfo_keeps_cgroup_limit);
    tcase_add_test(tc, test_capacity_garbage_files_ignored);
    tcase_add_test(tc, test_capacity_garbage_numbers_ignored);
    tcase_add_test(tc, test_capacity_garbage_self_cgroup);
    tcase_add_test(tc, test_capacity_oversized_files_ignored);
    tcase_add_test(tc, test_capacity_directories_and_fifos_ignored);
    tcase_add_test(tc, test_capacity_keeps_other_resources);
    tcase_add_test(tc, test_capacity_gpu_dir_counts_entries);
    tcase_add_test(tc, test_capacity_gpu_dir_missing_or_empty);
    tcase_add_test(tc, test_capacity_gpu_dir_capped);
    tcase_add_test(tc, test_capacity_cuda_visible_hides_all);
    tcase_add_test(tc, test_capacity_cuda_visible_ids);
    tcase_add_test(tc, test_capacity_cuda_visible_uuids);
    tcase_add_test(tc, test_capacity_cuda_visible_rejects_junk);
    tcase_add_test(tc, test_capacity_cuda_visible_too_many);
    tcase_add_test(tc, test_capacity_cuda_visible_from_environment);
    tcase_add_test(tc, test_capacity_null_resources);
    tcase_add_test(tc, test_capacity_oom_loop);
    tcase_add_test(tc, test_capacity_real_machine);
    suite_add_tcase(s, tc);
    return marin_test_run(s);
}
