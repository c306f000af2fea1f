/* rl_curriculum_actor — the Curriculum actor class, its checkpoint format
 * and the byte helpers (see rl_curriculum.h for the wire formats).
 *
 * The state is small (lessons, counters, who reported the open round) and
 * every state-changing call is checkpointed before it is acknowledged
 * (checkpoint_every 1), so a restart resumes exactly after the last
 * acknowledged call. Methods lock the instance: with max_concurrency above
 * 1 they, and the checkpoint hook, overlap.
 *
 * Checkpoint format, little-endian:
 *   "RLCK"  u32 version (1)  u32 body length
 *   body:   u32 nlessons current finished round nrollouts min_episodes
 *               threshold_pm restores
 *           u64 stale_episodes duplicate_reports
 *           per lesson: u32 difficulty, u32 namelen, name,
 *                       u64 attempts successes round_attempts round_successes
 *           per rollout: u32 reported
 *   u64 FNV-1a of everything before it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_curriculum.h"

#define CKPT_MAGIC "RLCK"
#define CKPT_VERSION 1u
#define CKPT_HEADER 12u
#define CKPT_TRAILER 8u

/* ------------------------------------------------------------------------ */
/* byte helpers                                                             */

void rl_put_bytes(rl_writer *w, const void *data, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = 1;
        return;
    }
    if (n)
        memcpy(w->p + w->len, data, n);
    w->len += n;
}

void rl_put_u32(rl_writer *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    rl_put_bytes(w, b, sizeof b);
}

void rl_put_u64(rl_writer *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    rl_put_bytes(w, b, sizeof b);
}

void rl_get_bytes(rl_reader *r, void *out, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p + r->off, n);
    r->off += n;
}

uint32_t rl_get_u32(rl_reader *r)
{
    uint8_t b[4];
    rl_get_bytes(r, b, sizeof b);
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

uint64_t rl_get_u64(rl_reader *r)
{
    uint8_t b[8];
    rl_get_bytes(r, b, sizeof b);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

void rl_sleep_us(uint32_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* the checkpoint codec                                                     */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* (Re)compute the checksum of an encoded state of @p len bytes. */
static void seal(uint8_t *buf, size_t len)
{
    rl_writer w = {buf + len - CKPT_TRAILER, CKPT_TRAILER, 0, 0};
    rl_put_u64(&w, fnv1a(buf, len - CKPT_TRAILER));
}

static size_t encode_version(const rl_state *st, uint8_t *buf,
                             uint32_t version)
{
    rl_writer w = {buf, RL_STATE_MAX, 0, 0};
    uint32_t nl = st->nlessons < RL_MAX_LESSONS ? st->nlessons
                                                : RL_MAX_LESSONS;
    uint32_t nr = st->nrollouts < RL_MAX_ROLLOUTS ? st->nrollouts
                                                  : RL_MAX_ROLLOUTS;
    rl_put_bytes(&w, CKPT_MAGIC, 4);
    rl_put_u32(&w, version);
    rl_put_u32(&w, 0); /* body length, below */
    rl_put_u32(&w, st->nlessons);
    rl_put_u32(&w, st->current);
    rl_put_u32(&w, st->finished);
    rl_put_u32(&w, st->round);
    rl_put_u32(&w, st->nrollouts);
    rl_put_u32(&w, st->min_episodes);
    rl_put_u32(&w, st->threshold_pm);
    rl_put_u32(&w, st->restores);
    rl_put_u64(&w, st->stale_episodes);
    rl_put_u64(&w, st->duplicate_reports);
    for (uint32_t i = 0; i < nl; i++) {
        const rl_lesson *l = &st->lessons[i];
        uint32_t n = (uint32_t)strnlen(l->name, RL_NAME_MAX);
        rl_put_u32(&w, l->difficulty);
        rl_put_u32(&w, n);
        rl_put_bytes(&w, l->name, n);
        rl_put_u64(&w, l->attempts);
        rl_put_u64(&w, l->successes);
        rl_put_u64(&w, l->round_attempts);
        rl_put_u64(&w, l->round_successes);
    }
    for (uint32_t i = 0; i < nr; i++)
        rl_put_u32(&w, st->reported[i]);
    rl_put_u64(&w, 0); /* checksum, below */
    rl_writer hw = {buf + 8, 4, 0, 0};
    rl_put_u32(&hw, (uint32_t)(w.len - CKPT_HEADER - CKPT_TRAILER));
    seal(buf, w.len);
    return w.len; /* RL_STATE_MAX holds the largest state: never over */
}

size_t rl_state_encode(const rl_state *st, uint8_t *buf)
{
    return encode_version(st, buf, CKPT_VERSION);
}

#define BAD(...)                                                             \
    do {                                                                     \
        snprintf(err, errcap, __VA_ARGS__);                                  \
        return -1;                                                           \
    } while (0)

int rl_state_decode(const void *data, size_t len, rl_state *st, char *err,
                    size_t errcap)
{
    const uint8_t *p = data;
    memset(st, 0, sizeof *st);
    if (len < CKPT_HEADER + CKPT_TRAILER)
        BAD("%zu bytes: too short for a checkpoint (at least %u)", len,
            CKPT_HEADER + CKPT_TRAILER);
    if (memcmp(p, CKPT_MAGIC, 4) != 0)
        BAD("not a curriculum checkpoint (bad magic)");
    rl_reader r = {p, len, 4, 0};
    uint32_t version = rl_get_u32(&r);
    uint32_t body = rl_get_u32(&r);
    if (version != CKPT_VERSION)
        BAD("checkpoint version %u is not supported (this build reads %u)",
            version, CKPT_VERSION);
    if ((size_t)body != len - CKPT_HEADER - CKPT_TRAILER)
        BAD("the header says %u body bytes, but %zu are there", body,
            len - CKPT_HEADER - CKPT_TRAILER);
    rl_reader tr = {p, len, len - CKPT_TRAILER, 0};
    if (rl_get_u64(&tr) != fnv1a(p, len - CKPT_TRAILER))
        BAD("checksum mismatch: the checkpoint is corrupt");
    r.len = len - CKPT_TRAILER; /* the body ends at the checksum */

    st->nlessons = rl_get_u32(&r);
    st->current = rl_get_u32(&r);
    st->finished = rl_get_u32(&r);
    st->round = rl_get_u32(&r);
    st->nrollouts = rl_get_u32(&r);
    st->min_episodes = rl_get_u32(&r);
    st->threshold_pm = rl_get_u32(&r);
    st->restores = rl_get_u32(&r);
    st->stale_episodes = rl_get_u64(&r);
    st->duplicate_reports = rl_get_u64(&r);
    if (r.bad)
        BAD("truncated in the header fields");
    if (st->nlessons < 1 || st->nlessons > RL_MAX_LESSONS)
        BAD("lesson count %u outside 1..%d", st->nlessons, RL_MAX_LESSONS);
    if (st->current >= st->nlessons)
        BAD("current lesson %u, but there are %u", st->current,
            st->nlessons);
    if (st->finished > 1)
        BAD("finished flag %u is neither 0 nor 1", st->finished);
    if (st->nrollouts < 1 || st->nrollouts > RL_MAX_ROLLOUTS)
        BAD("rollout count %u outside 1..%d", st->nrollouts, RL_MAX_ROLLOUTS);
    if (st->min_episodes < 1)
        BAD("min_episodes is 0");
    if (st->threshold_pm < 1 || st->threshold_pm > 1000)
        BAD("threshold %u per mille outside 1..1000", st->threshold_pm);
    for (uint32_t i = 0; i < st->nlessons; i++) {
        rl_lesson *l = &st->lessons[i];
        l->difficulty = rl_get_u32(&r);
        uint32_t n = rl_get_u32(&r);
        if (r.bad)
            BAD("truncated in lesson %u", i + 1);
        if (n < 1 || n > RL_NAME_MAX)
            BAD("lesson %u: name length %u outside 1..%d", i + 1, n,
                RL_NAME_MAX);
        rl_get_bytes(&r, l->name, n);
        l->name[n] = '\0';
        l->attempts = rl_get_u64(&r);
        l->successes = rl_get_u64(&r);
        l->round_attempts = rl_get_u64(&r);
        l->round_successes = rl_get_u64(&r);
        if (r.bad)
            BAD("truncated in lesson %u", i + 1);
        if (strlen(l->name) != n)
            BAD("lesson %u: name holds a NUL byte", i + 1);
        if (l->difficulty < 1 || l->difficulty > 100)
            BAD("lesson %u: difficulty %u outside 1..100", i + 1,
                l->difficulty);
        if (l->successes > l->attempts ||
            l->round_successes > l->round_attempts ||
            l->round_attempts > l->attempts)
            BAD("lesson %u: inconsistent counters (%llu/%llu, round "
                "%llu/%llu)", i + 1, (unsigned long long)l->successes,
                (unsigned long long)l->attempts,
                (unsigned long long)l->round_successes,
                (unsigned long long)l->round_attempts);
        if (i > st->current && l->attempts != 0)
            BAD("lesson %u has episodes but lesson %u is the current one",
                i + 1, st->current + 1);
    }
    for (uint32_t i = 0; i < st->nrollouts; i++) {
        st->reported[i] = rl_get_u32(&r);
        if (!r.bad && st->reported[i] > st->round + 1)
            BAD("rollout %u reported round %u, past the open round %u", i,
                st->reported[i], st->round + 1);
    }
    if (r.bad)
        BAD("truncated in the rollout table");
    if (r.off != r.len)
        BAD("%zu unexpected bytes after the state", r.len - r.off);
    return 0;
}

uint32_t rl_state_reported(const rl_state *st)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < st->nrollouts && i < RL_MAX_ROLLOUTS; i++)
        n += st->reported[i] == st->round + 1;
    return n;
}

/* ------------------------------------------------------------------------ */
/* the actor                                                                */

static const struct {
    const char *name;
    uint32_t difficulty;
} lesson_table[] = {
    {"addition", 1}, {"subtraction", 2}, {"multiplication", 3},
    {"division", 4}, {"fractions", 5},
};
#define NLESSONS (sizeof lesson_table / sizeof lesson_table[0])

typedef struct curriculum {
    pthread_mutex_t mu; /* methods and the checkpoint hook may overlap */
    rl_state st;
    int corrupt;        /* fault injection: checkpoints come out damaged */
} curriculum;

static curriculum *curriculum_new(void)
{
    curriculum *c = calloc(1, sizeof *c);
    if (c && pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static void curriculum_fini(void *self)
{
    curriculum *c = self;
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int curriculum_init(marin_task_ctx_t *ctx, const void *arg, size_t len,
                           void **self)
{
    rl_reader r = {arg, len, 0, 0};
    uint32_t nrollouts = rl_get_u32(&r);
    uint32_t min_episodes = rl_get_u32(&r);
    uint32_t threshold_pm = rl_get_u32(&r);
    if (r.bad || r.off != len)
        return marin_task_fail(ctx, "Curriculum: the constructor takes 12 "
                                    "bytes (rollouts, min episodes, "
                                    "threshold)");
    if (nrollouts < 1 || nrollouts > RL_MAX_ROLLOUTS || min_episodes < 1 ||
        threshold_pm < 1 || threshold_pm > 1000)
        return marin_task_fail(ctx, "Curriculum: constructor argument out "
                                    "of range");
    curriculum *c = curriculum_new();
    if (!c)
        return MARIN_ENOMEM;
    c->st.nlessons = NLESSONS;
    c->st.nrollouts = nrollouts;
    c->st.min_episodes = min_episodes;
    c->st.threshold_pm = threshold_pm;
    for (size_t i = 0; i < NLESSONS; i++) {
        snprintf(c->st.lessons[i].name, sizeof c->st.lessons[i].name, "%s",
                 lesson_table[i].name);
        c->st.lessons[i].difficulty = lesson_table[i].difficulty;
    }
    *self = c;
    return 0;
}

static int reply(marin_task_ctx_t *ctx, const rl_writer *w)
{
    return w->over ? marin_task_fail(ctx, "Curriculum: reply too big")
                   : marin_task_return(ctx, w->p, w->len);
}

/* get_lesson(u32 round): read-only, so it is marked idempotent. */
static int m_get_lesson(marin_task_ctx_t *ctx, void *self, const void *arg,
                        size_t len)
{
    curriculum *c = self;
    rl_reader r = {arg, len, 0, 0};
    uint32_t round = rl_get_u32(&r);
    if (r.bad || r.off != len)
        return marin_task_fail(ctx, "get_lesson: takes a u32 round");
    uint8_t buf[64];
    rl_writer w = {buf, sizeof buf, 0, 0};
    pthread_mutex_lock(&c->mu);
    const rl_state *st = &c->st;
    const rl_lesson *l = &st->lessons[st->current];
    uint32_t status = st->finished ? RL_DONE
                      : round > st->round ? RL_WAIT : RL_LESSON;
    uint32_t n = (uint32_t)strlen(l->name);
    rl_put_u32(&w, status);
    rl_put_u32(&w, st->round);
    rl_put_u32(&w, st->current);
    rl_put_u32(&w, l->difficulty);
    rl_put_u32(&w, n);
    rl_put_bytes(&w, l->name, n);
    pthread_mutex_unlock(&c->mu);
    return reply(ctx, &w);
}

/* report_stats(rollout, round, lesson, episodes, successes) -> verdict. */
static int m_report_stats(marin_task_ctx_t *ctx, void *self, const void *arg,
                          size_t len)
{
    curriculum *c = self;
    rl_reader r = {arg, len, 0, 0};
    uint32_t rollout = rl_get_u32(&r), round = rl_get_u32(&r);
    uint32_t lesson = rl_get_u32(&r), episodes = rl_get_u32(&r);
    uint32_t successes = rl_get_u32(&r), hold_us = rl_get_u32(&r);
    if (r.bad || r.off != len)
        return marin_task_fail(ctx, "report_stats: takes 6 u32");
    if (successes > episodes)
        return marin_task_fail(ctx, "report_stats: more successes than "
                                    "episodes");
    char msg[240];
    uint32_t verdict;
    pthread_mutex_lock(&c->mu);
    rl_state *st = &c->st;
    if (rollout >= st->nrollouts || round > st->round) {
        snprintf(msg, sizeof msg, "report_stats: rollout %u of %u reports "
                 "round %u while round %u is open%s", rollout, st->nrollouts,
                 round + 1, st->round + 1, rollout < st->nrollouts ?
                 " (an acknowledged advance was lost)" : "");
        pthread_mutex_unlock(&c->mu);
        return marin_task_fail(ctx, msg);
    }
    if (st->reported[rollout] == round + 1) {
        verdict = RL_DUPLICATE; /* counted once already: a retried call */
        st->duplicate_reports++;
    } else if (st->finished || round < st->round || lesson != st->current) {
        verdict = RL_STALE;
        st->stale_episodes += episodes;
    } else {
        rl_lesson *l = &st->lessons[lesson];
        l->attempts += episodes;
        l->successes += successes;
        l->round_attempts += episodes;
        l->round_successes += successes;
        st->reported[rollout] = round + 1;
        verdict = RL_RECORDED;
    }
    pthread_mutex_unlock(&c->mu);
    if (hold_us) /* the update is made, the call not yet acknowledged */
        rl_sleep_us(hold_us);
    uint8_t buf[4];
    rl_writer w = {buf, sizeof buf, 0, 0};
    rl_put_u32(&w, verdict);
    return reply(ctx, &w);
}

/* advance(u32 round): close the round once every rollout reported it, and
 * move on when the lesson is mastered. */
static int m_advance(marin_task_ctx_t *ctx, void *self, const void *arg,
                     size_t len)
{
    curriculum *c = self;
    rl_reader r = {arg, len, 0, 0};
    uint32_t round = rl_get_u32(&r);
    if (r.bad || r.off != len)
        return marin_task_fail(ctx, "advance: takes a u32 round");
    rl_advance_msg m = {0};
    pthread_mutex_lock(&c->mu);
    rl_state *st = &c->st;
    if (round > st->round) {
        /* The caller saw round - 1 closed: an acknowledged call is gone. */
        char msg[200];
        snprintf(msg, sizeof msg, "advance: round %u is not open yet: round "
                 "%u is (an acknowledged advance was lost)", round + 1,
                 st->round + 1);
        pthread_mutex_unlock(&c->mu);
        return marin_task_fail(ctx, msg);
    }
    rl_lesson *l = &st->lessons[st->current];
    m.lesson = st->current;
    m.round_attempts = l->round_attempts;
    m.round_successes = l->round_successes;
    m.lesson_attempts = l->attempts;
    if (round < st->round) {
        m.status = RL_CLOSED;
    } else if (rl_state_reported(st) < st->nrollouts) {
        m.status = RL_NOT_READY;
    } else {
        int mastered = l->attempts >= st->min_episodes &&
                       l->round_attempts > 0 &&
                       l->round_successes * 1000 >=
                           (uint64_t)st->threshold_pm * l->round_attempts;
        l->round_attempts = l->round_successes = 0;
        st->round++;
        if (!mastered)
            m.status = RL_STAYED;
        else if (st->current + 1 == st->nlessons)
            m.status = RL_FINISHED, st->finished = 1;
        else
            m.status = RL_ADVANCED, st->current++;
    }
    m.next = st->current;
    pthread_mutex_unlock(&c->mu);
    uint8_t buf[48];
    rl_writer w = {buf, sizeof buf, 0, 0};
    rl_put_u32(&w, m.status);
    rl_put_u32(&w, m.lesson);
    rl_put_u32(&w, m.next);
    rl_put_u64(&w, m.round_attempts);
    rl_put_u64(&w, m.round_successes);
    rl_put_u64(&w, m.lesson_attempts);
    return reply(ctx, &w);
}

static int m_snapshot(marin_task_ctx_t *ctx, void *self, const void *arg,
                      size_t len)
{
    (void)arg;
    (void)len;
    curriculum *c = self;
    uint8_t buf[RL_STATE_MAX];
    pthread_mutex_lock(&c->mu);
    size_t n = rl_state_encode(&c->st, buf);
    pthread_mutex_unlock(&c->mu);
    return marin_task_return(ctx, buf, n);
}

/* crash(u32 delay_us): the host dies mid-call, after an optional delay so
 * that calls beside it (max_concurrency > 1) are in flight. */
static int m_crash(marin_task_ctx_t *ctx, void *self, const void *arg,
                   size_t len)
{
    (void)self;
    rl_reader r = {arg, len, 0, 0};
    uint32_t delay_us = len ? rl_get_u32(&r) : 0;
    if (delay_us)
        rl_sleep_us(delay_us);
    return marin_test_kill_worker(ctx);
}

/* corrupt_checkpoints(): from now on every checkpoint has a damaged byte,
 * so the next restart must fail (a test of the restore checks). */
static int m_corrupt_checkpoints(marin_task_ctx_t *ctx, void *self,
                                 const void *arg, size_t len)
{
    (void)ctx;
    (void)arg;
    (void)len;
    curriculum *c = self;
    pthread_mutex_lock(&c->mu);
    c->corrupt = 1;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static int h_checkpoint(marin_task_ctx_t *ctx, void *self)
{
    curriculum *c = self;
    uint8_t buf[RL_STATE_MAX];
    pthread_mutex_lock(&c->mu);
    size_t n = rl_state_encode(&c->st, buf);
    if (c->corrupt)
        buf[n / 2] ^= 0x10;
    pthread_mutex_unlock(&c->mu);
    return marin_task_return(ctx, buf, n);
}

static int h_restore(marin_task_ctx_t *ctx, const void *data, size_t len,
                     void **self)
{
    char err[256], msg[320];
    curriculum *c = curriculum_new();
    if (!c)
        return MARIN_ENOMEM;
    if (rl_state_decode(data, len, &c->st, err, sizeof err) != 0) {
        curriculum_fini(c);
        snprintf(msg, sizeof msg, "Curriculum: cannot restore from the "
                 "checkpoint: %s", err);
        return marin_task_fail(ctx, msg);
    }
    c->st.restores++;
    *self = c;
    return 0;
}

int rl_register_curriculum(void)
{
    marin_actor_class_t *cls = NULL;
    int rc = marin_actor_class_create(RL_CLASS, curriculum_init,
                                      curriculum_fini, &cls);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "get_lesson", m_get_lesson,
                                          MARIN_METHOD_IDEMPOTENT);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "report_stats",
                                          m_report_stats, 0);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "advance", m_advance, 0);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "snapshot", m_snapshot,
                                          MARIN_METHOD_IDEMPOTENT);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "crash", m_crash, 0);
    if (rc == MARIN_OK)
        rc = marin_actor_class_add_method(cls, "corrupt_checkpoints",
                                          m_corrupt_checkpoints, 0);
    if (rc == MARIN_OK)
        rc = marin_actor_class_set_checkpoint(cls, h_checkpoint, h_restore);
    if (rc == MARIN_OK)
        rc = marin_register_actor_class(cls);
    marin_actor_class_destroy(cls);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* codec self-check                                                         */

int rl_codec_selfcheck(size_t *refused, char *err, size_t errcap)
{
    uint8_t buf[RL_STATE_MAX], again[RL_STATE_MAX];
    rl_state st, back;
    char why[256];
    memset(&st, 0, sizeof st);
    st.nlessons = NLESSONS;
    st.current = 2;
    st.round = 9;
    st.nrollouts = 4;
    st.min_episodes = 50;
    st.threshold_pm = 700;
    st.restores = 1;
    st.stale_episodes = 3;
    for (size_t i = 0; i < NLESSONS; i++) {
        rl_lesson *l = &st.lessons[i];
        snprintf(l->name, sizeof l->name, "%s", lesson_table[i].name);
        l->difficulty = lesson_table[i].difficulty;
        l->attempts = i <= 2 ? 100 + i : 0;
        l->successes = i <= 2 ? 60 + i : 0;
    }
    st.lessons[2].round_attempts = 8;
    st.lessons[2].round_successes = 5;
    st.reported[0] = st.reported[2] = 10;
    size_t n = rl_state_encode(&st, buf);
    if (rl_state_decode(buf, n, &back, why, sizeof why) != 0)
        BAD("a fresh checkpoint does not decode: %s", why);
    if (rl_state_encode(&back, again) != n || memcmp(buf, again, n) != 0)
        BAD("a checkpoint does not survive a round trip");

    *refused = 0;
    for (size_t k = 0; k < n; k++) { /* every truncation */
        if (rl_state_decode(buf, k, &back, why, sizeof why) == 0)
            BAD("a checkpoint cut to %zu of %zu bytes was accepted", k, n);
        ++*refused;
    }
    for (size_t k = 0; k < n; k++) { /* every byte flipped */
        memcpy(again, buf, n);
        again[k] ^= 0x5a;
        if (rl_state_decode(again, n, &back, why, sizeof why) == 0)
            BAD("a checkpoint with byte %zu flipped was accepted", k);
        ++*refused;
    }
    /* well-sealed checkpoints with bad contents */
    for (int bad = 0; bad < 8; bad++) {
        rl_state b = st;
        uint32_t version = CKPT_VERSION;
        switch (bad) {
        case 0: version = 2; break;
        case 1: b.nlessons = 0; break;
        case 2: b.current = NLESSONS; break;
        case 3: b.lessons[1].successes = 500; break;
        case 4: b.nrollouts = RL_MAX_ROLLOUTS + 1; break;
        case 5: b.threshold_pm = 1001; break;
        case 6: b.lessons[4].attempts = 1; break;
        default: b.reported[1] = b.round + 2; break;
        }
        size_t m = encode_version(&b, again, version);
        if (rl_state_decode(again, m, &back, why, sizeof why) == 0)
            BAD("a checkpoint with bad field set %d was accepted", bad);
        ++*refused;
    }
    return 0;
}
