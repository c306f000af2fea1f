/* demo_util.c — small helpers the parts of demo_pipeline share: a growable
 * byte buffer, little-endian integers, a set of 64-bit hashes, paths and
 * atomic file writes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_pipeline.h"

/* 0, or -1 when out of memory (or the size would overflow). */
int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int buf_put(buf_t *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

void le_store(unsigned char *p, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t le_load(const unsigned char *p, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int buf_put_le(buf_t *b, uint64_t v, size_t width)
{
    unsigned char tmp[8];
    le_store(tmp, v, width);
    return buf_put(b, tmp, width);
}

/* 1: added; 0: already there; -1: out of memory. */
int hset_add(hset_t *s, uint64_t h)
{
    if (h == 0) {
        if (s->has_zero)
            return 0;
        s->has_zero = 1;
        return 1;
    }
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slots[i];
            if (!v)
                continue;
            size_t j = (size_t)v & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = v;
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t j = (size_t)h & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == h)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = h;
    s->n++;
    return 1;
}

void hset_free(hset_t *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* @p dir/@p name into @p buf; -1 (reported) when it does not fit. */
int path_join(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, PROG ": %s/%s: path too long\n", dir, name);
        return -1;
    }
    return 0;
}

/* Write @p data to @p path atomically (a .tmp file, then rename). */
int write_file_atomic(const char *path, const void *data, size_t n)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, PROG ": %s: path too long\n", path);
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
