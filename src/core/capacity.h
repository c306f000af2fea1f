/* What this machine (or container) can give the local backend. */
#ifndef MARIN_LOCAL_CAPACITY_H
#define MARIN_LOCAL_CAPACITY_H

#include <stddef.h>

#include "marin/resources.h"

#define MARIN__MAX_GPUS 64

/* Where to look; tests point these at fixture trees. NULL fields mean the
 * real paths ("/sys/fs/cgroup", "/proc", "/proc/driver/nvidia/gpus") and the
 * real CUDA_VISIBLE_DEVICES (cuda_visible_set = 0: read getenv). */
typedef struct marin__capacity_sources {
    const char *cgroup_root;      /* cgroup v2 unified or v1 hierarchy root */
    const char *proc_root;        /* for meminfo, self/cgroup */
    const char *nvidia_gpus_dir;  /* one entry per GPU */
    int cuda_visible_set;         /* 1: use cuda_visible below */
    const char *cuda_visible;     /* NULL with cuda_visible_set: unset */
    long online_cpus;             /* 0: sysconf(_SC_NPROCESSORS_ONLN) */
} marin__capacity_sources;

/* Detect cpus (cgroup cpu.max or cfs quota/period, else the CPU count; may be
 * fractional), memory (min of MemTotal and the cgroup memory limit), gpus
 * (CUDA_VISIBLE_DEVICES when set: its ids; else the entries of the nvidia
 * gpus dir, numbered 0..n-1). Writes the amounts into @p out (which the
 * caller made) and the GPU ids into gpu_ids[0..*ngpus).
 * MARIN_OK, MARIN_EINVAL (bad CUDA_VISIBLE_DEVICES, message says why),
 * MARIN_ENOMEM. Never fails for a missing file: it falls back. */
int marin__detect_capacity(const marin__capacity_sources *src,
                           marin_resources_t *out, int *gpu_ids,
                           size_t *ngpus);

#endif
