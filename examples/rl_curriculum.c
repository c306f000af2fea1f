/* rl_curriculum — an RL curriculum on marin's local backend: one named actor
 * holds the curriculum, rollout tasks practise and report, the driver
 * thread trains; midway the actor's host dies and the run must show that
 * no acknowledged progress was lost.
 *
 *   actor "curriculum" (class Curriculum, rl_curriculum_actor.c): lessons
 *       of growing difficulty, per-lesson episode counts, the open round and
 *       who reported it. Checkpointed after every call (checkpoint_every 1),
 *       restarts without limit.
 *   rollout tasks (marin_submit, one per rollout): per round, get_lesson,
 *       simulate episodes (a per-task PRNG; success grows with practice on
 *       that lesson), report_stats. They return what the actor acknowledged.
 *   trainer (the driver thread): per round, advance once every rollout has
 *       reported (mastered: rate over the round >= threshold, with enough
 *       episodes on the lesson), print the round; after --kill-at rounds it
 *       calls crash, whose host dies (marin_test_kill_worker).
 *
 * Rounds are a barrier (get_lesson answers "wait" until the trainer closed
 * the round before), so the output is the same on every run and with or
 * without kills; only the timing line on stderr varies. At the end the sum
 * of acknowledged reports must equal the actor's own counts.
 *
 * Options: --concurrency runs the actor with overlapping calls (a kill then
 * fails the reports in flight with MARIN_EWORKER; they are retried, and the
 * actor drops a report it already counted); --corrupt-at damages the
 * checkpoints before a kill, so the restart must fail and say why. See
 * examples/README.md. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_curriculum.h"

#define MIN_EPISODES 50  /* on a lesson before it may be mastered */
#define THRESHOLD_PM 700 /* success rate to master it, per mille */

typedef struct options {
    uint32_t rollouts, rounds, episodes, kill_at, kills, concurrency;
    uint32_t report_us, corrupt_at;
    uint64_t seed;
} options;

/* What a rollout task returns (6 u64). */
typedef struct rollout_result {
    uint64_t reports, episodes, successes; /* acknowledged as counted */
    uint64_t stale_episodes;               /* acknowledged as ignored */
    uint64_t retries, calls;
} rollout_result;
#define RESULT_FIELDS 6

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Poll backoff: 50 us doubling to 2 ms. */
static uint32_t backoff(uint32_t us)
{
    rl_sleep_us(us);
    return us < 2000 ? us * 2 : 2000;
}

static void log_line(int level, const char *msg, void *userdata)
{
    (void)userdata;
    fprintf(stderr, RL_PROG ": marin %s: %s\n",
            level <= MARIN_LOG_ERROR ? "error" : "warning", msg);
}

/* Call @p method and copy its result (at most @p cap bytes) into @p out.
 * A call that fails with MARIN_EWORKER (lost with its host) was not
 * acknowledged: it is made again, up to 8 times, counting in *retries.
 * (With overlapping calls its update may still have reached a checkpoint,
 * taken after a call beside it: report_stats then answers "duplicate".)
 * Returns a marin code, with a sentence in @p err on failure. */
static int call(marin_actor_t *a, const char *method, const void *arg,
                size_t len, uint8_t *out, size_t cap, size_t *outlen,
                uint64_t *calls, uint64_t *retries, char *err, size_t errcap)
{
    for (int attempt = 1;; attempt++) {
        marin_future_t *f = NULL;
        ++*calls;
        int rc = marin_actor_call(a, method, arg, len, &f);
        if (rc != MARIN_OK) {
            snprintf(err, errcap, "%s: %s: %s", method, marin_strerror(rc),
                     marin_last_error());
            return rc;
        }
        const void *data = NULL;
        size_t n = 0;
        rc = marin_future_get(f, -1, &data, &n);
        if (rc == MARIN_OK && n > cap) {
            rc = MARIN_ETOOBIG;
            snprintf(err, errcap, "%s: a %zu-byte result (at most %zu)",
                     method, n, cap);
        } else if (rc == MARIN_OK) {
            if (n)
                memcpy(out, data, n);
            *outlen = n;
        } else {
            snprintf(err, errcap, "%s: %s: %s", method, marin_strerror(rc),
                     marin_future_error(f));
        }
        marin_future_release(f);
        if (rc != MARIN_EWORKER || attempt == 8)
            return rc;
        ++*retries;
    }
}

static int decode_lesson(const uint8_t *p, size_t n, rl_lesson_msg *m)
{
    rl_reader r = {p, n, 0, 0};
    memset(m, 0, sizeof *m);
    m->status = rl_get_u32(&r);
    m->round = rl_get_u32(&r);
    m->lesson = rl_get_u32(&r);
    m->difficulty = rl_get_u32(&r);
    uint32_t len = rl_get_u32(&r);
    if (r.bad || len > RL_NAME_MAX)
        return -1;
    rl_get_bytes(&r, m->name, len);
    return r.bad || r.off != n || m->lesson >= RL_MAX_LESSONS ? -1 : 0;
}

static int decode_advance(const uint8_t *p, size_t n, rl_advance_msg *m)
{
    rl_reader r = {p, n, 0, 0};
    m->status = rl_get_u32(&r);
    m->lesson = rl_get_u32(&r);
    m->next = rl_get_u32(&r);
    m->round_attempts = rl_get_u64(&r);
    m->round_successes = rl_get_u64(&r);
    m->lesson_attempts = rl_get_u64(&r);
    return r.bad || r.off != n || m->status > RL_CLOSED ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* the rollout task                                                         */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Chance to solve an episode of a lesson of difficulty @p d after
 * @p practice episodes on it: from 0.6 - 0.1 d towards 0.95. */
static double success_p(uint32_t d, uint64_t practice)
{
    double p0 = 0.6 - 0.1 * d, pmax = 0.95, tau = 8.0 * d;
    if (p0 < 0.05)
        p0 = 0.05;
    return p0 + (pmax - p0) * (double)practice / ((double)practice + tau);
}

/* Argument: u32 index, u32 rounds, u32 episodes, u32 report_us, u64 seed,
 * then the actor's id (the rest of the bytes). */
static int rollout_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                        void *userdata)
{
    (void)userdata;
    rl_reader r = {arg, len, 0, 0};
    uint32_t index = rl_get_u32(&r), rounds = rl_get_u32(&r);
    uint32_t episodes = rl_get_u32(&r), report_us = rl_get_u32(&r);
    uint64_t seed = rl_get_u64(&r);
    char id[128], err[1400];
    size_t idlen = len - r.off;
    if (r.bad || idlen == 0 || idlen >= sizeof id)
        return marin_task_fail(ctx, "rollout: malformed argument");
    memcpy(id, (const uint8_t *)arg + r.off, idlen);
    id[idlen] = '\0';

    marin_actor_t *a = NULL;
    int rc = marin_actor_from_id(marin_task_runtime(ctx), id, &a);
    if (rc != MARIN_OK) {
        snprintf(err, sizeof err, "rollout %u: actor %s: %s", index, id,
                 marin_last_error());
        return marin_task_fail(ctx, err);
    }
    uint64_t rng = seed * 0x100000001b3ull + index;
    uint64_t practice[RL_MAX_LESSONS] = {0};
    rollout_result res = {0};
    uint8_t in[32], out[64];
    size_t n = 0;
    for (uint32_t round = 0; round < rounds && rc == MARIN_OK; round++) {
        rl_lesson_msg m = {0};
        uint32_t wait = 50;
        for (;;) { /* the round opens when the trainer closed the last */
            rl_writer w = {in, sizeof in, 0, 0};
            rl_put_u32(&w, round);
            rc = call(a, "get_lesson", in, w.len, out, sizeof out, &n,
                      &res.calls, &res.retries, err, sizeof err);
            if (rc == MARIN_OK && decode_lesson(out, n, &m) != 0) {
                snprintf(err, sizeof err, "get_lesson: malformed reply");
                rc = MARIN_EPROTO;
            }
            if (rc != MARIN_OK || m.status != RL_WAIT)
                break;
            if (marin_task_cancelled(ctx)) {
                snprintf(err, sizeof err, "cancelled in round %u", round);
                rc = MARIN_ECANCELED;
                break;
            }
            wait = backoff(wait);
        }
        if (rc != MARIN_OK || m.status == RL_DONE)
            break;
        uint32_t wins = 0;
        for (uint32_t e = 0; e < episodes; e++) {
            double u = (double)(splitmix64(&rng) >> 11) / 9007199254740992.0;
            wins += u < success_p(m.difficulty, practice[m.lesson]++);
        }
        rl_writer w = {in, sizeof in, 0, 0};
        rl_put_u32(&w, index);
        rl_put_u32(&w, round);
        rl_put_u32(&w, m.lesson);
        rl_put_u32(&w, episodes);
        rl_put_u32(&w, wins);
        rl_put_u32(&w, report_us);
        rc = call(a, "report_stats", in, w.len, out, sizeof out, &n,
                  &res.calls, &res.retries, err, sizeof err);
        rl_reader vr = {out, n, 0, 0};
        uint32_t verdict = rc == MARIN_OK ? rl_get_u32(&vr) : 0;
        if (rc != MARIN_OK)
            break;
        if (vr.bad || vr.off != n || verdict > RL_STALE) {
            snprintf(err, sizeof err, "report_stats: malformed reply");
            rc = MARIN_EPROTO;
            break;
        }
        if (verdict == RL_STALE) {
            res.stale_episodes += episodes;
        } else { /* recorded now, or by an earlier try that was lost */
            res.reports++;
            res.episodes += episodes;
            res.successes += wins;
        }
    }
    marin_actor_release(a);
    if (rc != MARIN_OK) {
        char msg[1500];
        snprintf(msg, sizeof msg, "rollout %u: %s", index, err);
        return marin_task_fail(ctx, msg);
    }
    uint8_t buf[RESULT_FIELDS * 8];
    rl_writer w = {buf, sizeof buf, 0, 0};
    rl_put_u64(&w, res.reports);
    rl_put_u64(&w, res.episodes);
    rl_put_u64(&w, res.successes);
    rl_put_u64(&w, res.stale_episodes);
    rl_put_u64(&w, res.retries);
    rl_put_u64(&w, res.calls);
    return marin_task_return(ctx, buf, w.len);
}

/* ------------------------------------------------------------------------ */
/* the trainer                                                              */

typedef struct trainer {
    uint32_t rounds_closed, advances, kills, finished;
    uint64_t calls, retries;
} trainer;

/* Fails (-1, after printing why) when a rollout ended early. */
static int rollouts_alive(marin_future_t **futs, uint32_t n, uint32_t round)
{
    uint32_t done = 0;
    for (uint32_t i = 0; i < n; i++) {
        int s = marin_future_state(futs[i]);
        if (s == MARIN_FUTURE_FAILED || s == MARIN_FUTURE_CANCELLED) {
            fprintf(stderr, RL_PROG ": rollout %u failed: %s\n", i,
                    marin_future_error(futs[i]));
            return -1;
        }
        done += s == MARIN_FUTURE_SUCCEEDED;
    }
    if (done == n) {
        fprintf(stderr, RL_PROG ": every rollout ended, but round %u is "
                "still incomplete\n", round + 1);
        return -1;
    }
    return 0;
}

/* Call crash, which must fail with MARIN_EWORKER: its host died. */
static int crash(marin_actor_t *a, const options *o, uint32_t round,
                 trainer *t)
{
    /* with overlapping calls, die mid-call while others run */
    uint8_t in[4];
    rl_writer w = {in, sizeof in, 0, 0};
    rl_put_u32(&w, o->concurrency > 1 ? 2000 : 0);
    marin_future_t *f = NULL;
    t->calls++;
    int rc = marin_actor_call(a, "crash", in, w.len, &f);
    if (rc == MARIN_OK)
        rc = marin_future_get(f, -1, NULL, NULL);
    if (rc != MARIN_EWORKER) {
        fprintf(stderr, RL_PROG ": crash: expected %s, got %s: %s\n",
                marin_strerror(MARIN_EWORKER), marin_strerror(rc),
                f ? marin_future_error(f) : marin_last_error());
        marin_future_release(f);
        return -1;
    }
    marin_future_release(f);
    t->kills++;
    printf("round %3u  crash: the actor's host died (%s); it restarts from "
           "its last checkpoint\n", round + 1, marin_strerror(rc));
    return 0;
}

static int train(marin_actor_t *a, const options *o, marin_future_t **futs,
                 const rl_state *lessons, trainer *t)
{
    uint8_t in[8], out[64];
    size_t n = 0;
    char err[1400];
    for (uint32_t round = 0; round < o->rounds; round++) {
        rl_advance_msg m = {0};
        uint32_t wait = 50;
        double since = now_s();
        for (;;) {
            rl_writer w = {in, sizeof in, 0, 0};
            rl_put_u32(&w, round);
            int rc = call(a, "advance", in, w.len, out, sizeof out, &n,
                          &t->calls, &t->retries, err, sizeof err);
            if (rc != MARIN_OK) {
                fprintf(stderr, RL_PROG ": round %u: %s\n", round + 1, err);
                return -1;
            }
            if (decode_advance(out, n, &m) != 0 ||
                m.lesson >= lessons->nlessons || m.next >= lessons->nlessons) {
                fprintf(stderr, RL_PROG ": advance: malformed reply\n");
                return -1;
            }
            if (m.status != RL_NOT_READY)
                break;
            if (rollouts_alive(futs, o->rollouts, round) != 0)
                return -1;
            if (now_s() - since > 60) {
                fprintf(stderr, RL_PROG ": round %u: no progress in 60 s\n",
                        round + 1);
                return -1;
            }
            wait = backoff(wait);
        }
        t->rounds_closed++;
        const rl_lesson *l = &lessons->lessons[m.lesson];
        double rate = m.round_attempts ? (double)m.round_successes /
                                             (double)m.round_attempts
                                       : 0.0;
        printf("round %3u  lesson %u %-14s  rate %.3f (%3" PRIu64 "/%3" PRIu64
               ")  episodes on lesson %4" PRIu64, round + 1, m.lesson + 1,
               l->name, rate, m.round_successes, m.round_attempts,
               m.lesson_attempts);
        if (m.status == RL_ADVANCED)
            printf("  -> mastered, next: %s\n",
                   lessons->lessons[m.next].name);
        else if (m.status == RL_FINISHED)
            printf("  -> mastered, curriculum complete\n");
        else if (m.status == RL_CLOSED)
            printf("  (closed already: a retried advance)\n");
        else
            printf("\n");
        t->advances += m.status == RL_ADVANCED || m.status == RL_FINISHED;
        if (m.status == RL_FINISHED) {
            t->finished = 1;
            break;
        }
        if (o->corrupt_at && round + 1 == o->corrupt_at) {
            if (call(a, "corrupt_checkpoints", NULL, 0, out, sizeof out, &n,
                     &t->calls, &t->retries, err, sizeof err) != MARIN_OK) {
                fprintf(stderr, RL_PROG ": %s\n", err);
                return -1;
            }
            printf("round %3u  checkpoints damaged from here on\n",
                   round + 1);
            if (crash(a, o, round, t) != 0)
                return -1;
        }
        if (o->kill_at && t->kills < o->kills &&
            round + 1 == o->kill_at * (t->kills + 1) && crash(a, o, round, t))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " RL_PROG " [--rollouts N] [--rounds N] [--episodes N]\n"
            "       [--kill-at K] [--kills N] [--concurrency N]\n"
            "       [--report-us N] [--corrupt-at K] [--seed S]\n"
            "  --rollouts N     rollout tasks (default 4, at most %d)\n"
            "  --rounds N       round limit (default 100)\n"
            "  --episodes N     episodes per rollout and round (default 8)\n"
            "  --kill-at K      crash the actor after round K, 2K, ... "
            "(default 8; 0: never)\n"
            "  --kills N        crashes at most (default 1)\n"
            "  --concurrency N  the actor's max_concurrency (default 1)\n"
            "  --report-us N    keep each report_stats call in flight N us "
            "after it\n"
            "                   updates the state (default 0; for tests)\n"
            "  --corrupt-at K   after round K, damage the checkpoints and "
            "crash:\n"
            "                   the restart must fail (default 0: never)\n"
            "  --seed S         PRNG seed (default 1)\n", RL_MAX_ROLLOUTS);
}

static int parse_u(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.rollouts = 4, .rounds = 100, .episodes = 8,
                   .kill_at = 8, .kills = 1, .concurrency = 1, .seed = 1};
    const struct {
        const char *flag;
        uint64_t min, max;
        uint32_t *dst; /* NULL: the seed */
    } flags[] = {
        {"--rollouts", 1, RL_MAX_ROLLOUTS, &o->rollouts},
        {"--rounds", 1, 1000000, &o->rounds},
        {"--episodes", 1, 100000, &o->episodes},
        {"--kill-at", 0, 1000000, &o->kill_at},
        {"--kills", 0, 1000000, &o->kills},
        {"--concurrency", 1, 64, &o->concurrency},
        {"--report-us", 0, 1000000, &o->report_us},
        {"--corrupt-at", 0, 1000000, &o->corrupt_at},
        {"--seed", 0, UINT64_MAX, NULL},
    };
    const size_t nflags = sizeof flags / sizeof flags[0];
    for (int i = 1; i < argc; i += 2) {
        size_t k = 0;
        while (k < nflags && strcmp(argv[i], flags[k].flag) != 0)
            k++;
        uint64_t v = 0;
        if (k == nflags || i + 1 >= argc ||
            parse_u(argv[i + 1], flags[k].max, &v) != 0 || v < flags[k].min) {
            fprintf(stderr, RL_PROG ": bad option or value: %s%s%s\n",
                    argv[i], i + 1 < argc ? " " : "",
                    i + 1 < argc ? argv[i + 1] : "");
            return -1;
        }
        if (flags[k].dst)
            *flags[k].dst = (uint32_t)v;
        else
            o->seed = v;
    }
    return 0;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, RL_PROG ": %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
    return 1;
}

/* Create the actor and its rollouts, train, then check the books. */
static int run(marin_runtime_t *rt, const options *o)
{
    marin_actor_options_t *ao = NULL;
    marin_actor_t *a = NULL;
    int rc = marin_actor_options_create(&ao);
    if (rc == MARIN_OK)
        rc = marin_actor_options_set_name(ao, RL_ACTOR_NAME);
    if (rc == MARIN_OK)
        rc = marin_actor_options_set_max_restarts(ao, -1);
    if (rc == MARIN_OK)
        rc = marin_actor_options_set_checkpoint_every(ao, 1);
    if (rc == MARIN_OK)
        rc = marin_actor_options_set_max_concurrency(ao, (int)o->concurrency);
    uint8_t ctor[12];
    rl_writer cw = {ctor, sizeof ctor, 0, 0};
    rl_put_u32(&cw, o->rollouts);
    rl_put_u32(&cw, MIN_EPISODES);
    rl_put_u32(&cw, THRESHOLD_PM);
    if (rc == MARIN_OK)
        rc = marin_actor_create(rt, RL_CLASS, ctor, cw.len, ao, &a);
    marin_actor_options_destroy(ao);
    if (rc == MARIN_OK)
        rc = marin_actor_ready(a, 10000);
    if (rc != MARIN_OK) {
        marin_actor_release(a);
        return fail("creating the curriculum actor", rc);
    }
    /* the lessons, as the actor has them */
    rl_state lessons, st;
    uint8_t buf[RL_STATE_MAX];
    size_t n = 0;
    char err[1400];
    trainer t = {0};
    rc = call(a, "snapshot", NULL, 0, buf, sizeof buf, &n, &t.calls,
              &t.retries, err, sizeof err);
    if (rc != MARIN_OK ||
        rl_state_decode(buf, n, &lessons, err, sizeof err) != 0) {
        fprintf(stderr, RL_PROG ": snapshot: %s\n", err);
        marin_actor_release(a);
        return 1;
    }
    printf("curriculum:");
    for (uint32_t i = 0; i < lessons.nlessons; i++)
        printf("%s%s (difficulty %u)", i ? ", " : " ",
               lessons.lessons[i].name, lessons.lessons[i].difficulty);
    printf("\nmastered at a round success rate >= %.2f with >= %u "
           "episodes on the lesson\n", lessons.threshold_pm / 1000.0,
           lessons.min_episodes);
    fflush(stdout);

    marin_task_options_t *to = NULL;
    marin_future_t *futs[RL_MAX_ROLLOUTS] = {0};
    uint32_t submitted = 0;
    double t0 = now_s();
    rc = marin_task_options_create(&to);
    if (rc == MARIN_OK) /* a rollout redone from round 1 would not fit */
        rc = marin_task_options_set_max_retries(to, 0);
    const char *id = marin_actor_id(a);
    for (; rc == MARIN_OK && submitted < o->rollouts; submitted++) {
        uint8_t arg[160];
        rl_writer w = {arg, sizeof arg, 0, 0};
        rl_put_u32(&w, submitted);
        rl_put_u32(&w, o->rounds);
        rl_put_u32(&w, o->episodes);
        rl_put_u32(&w, o->report_us);
        rl_put_u64(&w, o->seed);
        rl_put_bytes(&w, id, strlen(id));
        rc = w.over ? MARIN_ETOOBIG
                    : marin_submit(rt, RL_ROLLOUT_TASK, arg, w.len, to,
                                   &futs[submitted]);
    }
    marin_task_options_destroy(to);
    int status = rc == MARIN_OK ? 0 : fail("submitting a rollout", rc);

    if (status == 0 && train(a, o, futs, &lessons, &t) != 0)
        status = 1;
    rollout_result sum = {0};
    for (uint32_t i = 0; i < submitted; i++) {
        if (status != 0)
            marin_future_cancel(futs[i]);
        const void *data = NULL;
        size_t len = 0;
        rc = marin_future_get(futs[i], -1, &data, &len);
        rl_reader r = {data, len, 0, 0};
        uint64_t v[RESULT_FIELDS] = {0};
        for (int k = 0; k < RESULT_FIELDS && rc == MARIN_OK; k++)
            v[k] = rl_get_u64(&r);
        if (status == 0 && rc != MARIN_OK) {
            fprintf(stderr, RL_PROG ": rollout %u: %s\n", i,
                    marin_future_error(futs[i]));
            status = 1;
        } else if (status == 0 && (r.bad || r.off != len)) {
            fprintf(stderr, RL_PROG ": rollout %u: malformed result\n", i);
            status = 1;
        }
        sum.reports += v[0], sum.episodes += v[1], sum.successes += v[2];
        sum.stale_episodes += v[3], sum.retries += v[4], sum.calls += v[5];
        marin_future_release(futs[i]);
    }

    /* The books: what was acknowledged must all be in the actor. */
    if (status == 0) {
        rc = call(a, "snapshot", NULL, 0, buf, sizeof buf, &n, &t.calls,
                  &t.retries, err, sizeof err);
        if (rc != MARIN_OK || rl_state_decode(buf, n, &st, err, sizeof err)) {
            fprintf(stderr, RL_PROG ": snapshot: %s\n", err);
            status = 1;
        }
    }
    double dt = now_s() - t0;
    if (status == 0) {
        uint64_t episodes = 0, successes = 0;
        for (uint32_t i = 0; i < st.nlessons; i++) {
            episodes += st.lessons[i].attempts;
            successes += st.lessons[i].successes;
        }
        uint32_t mastered = st.current + st.finished;
        printf("summary: %u of %u lessons mastered in %u rounds; %" PRIu64
               " episodes, %" PRIu64 " successes; %" PRIu64 " stale "
               "episodes ignored\n", mastered, st.nlessons, st.round,
               episodes, successes, st.stale_episodes);
        printf("restarts: %u crash%s, the actor restored from a checkpoint "
               "%u time%s\n", t.kills, t.kills == 1 ? "" : "es", st.restores,
               st.restores == 1 ? "" : "s");
        fprintf(stderr, "time: %.3f s, %" PRIu64 " actor calls (%" PRIu64
                " retried after MARIN_EWORKER, %" PRIu64 " duplicate "
                "reports), %.0f calls/s\n", dt, t.calls + sum.calls,
                t.retries + sum.retries, st.duplicate_reports,
                dt > 0 ? (double)(t.calls + sum.calls) / dt : 0.0);
        if (sum.episodes != episodes || sum.successes != successes) {
            printf("PROGRESS LOST: %" PRIu64 " episodes (%" PRIu64
                   " successes) acknowledged, but the actor recorded %"
                   PRIu64 " (%" PRIu64 ")\n", sum.episodes, sum.successes,
                   episodes, successes);
            status = 1;
        }
        if (t.advances != mastered || t.rounds_closed != st.round) {
            printf("PROGRESS LOST: %u lessons and %u rounds acknowledged, "
                   "but the actor has %u and %u\n", t.advances,
                   t.rounds_closed, mastered, st.round);
            status = 1;
        }
        if (st.restores != t.kills) {
            printf("RESTART MISMATCH: %u crashes, %u restores from a "
                   "checkpoint\n", t.kills, st.restores);
            status = 1;
        }
        if (status == 0)
            printf("progress preserved: %" PRIu64 " episodes acknowledged, "
                   "%" PRIu64 " recorded\n", sum.episodes, episodes);
    }
    marin_actor_release(a);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (parse_options(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    size_t refused = 0;
    char err[256];
    if (rl_codec_selfcheck(&refused, err, sizeof err) != 0) {
        fprintf(stderr, RL_PROG ": checkpoint codec self-check: %s\n", err);
        return 1;
    }
    int rc = rl_register_curriculum();
    if (rc != MARIN_OK)
        return fail("registering class " RL_CLASS, rc);
    rc = marin_register_task(RL_ROLLOUT_TASK, rollout_task, NULL);
    if (rc != MARIN_OK)
        return fail("registering task " RL_ROLLOUT_TASK, rc);

    /* One cpu per rollout, so all of them run at once: a rollout waiting
     * for its round sleeps holding its cpu. */
    char uri[64];
    snprintf(uri, sizeof uri, "local://?resources=cpus=%u", o.rollouts);
    marin_runtime_t *rt = NULL;
    rc = marin_runtime_open(uri, &rt);
    if (rc != MARIN_OK)
        return fail("opening the runtime", rc);
    marin_runtime_set_logger(rt, log_line, MARIN_LOG_WARN, NULL);

    printf(RL_PROG ": %u rollouts x %u episodes per round, at most %u "
           "rounds, seed %" PRIu64 ", actor max_concurrency %u\n",
           o.rollouts, o.episodes, o.rounds, o.seed, o.concurrency);
    if (o.kill_at && o.kills)
        printf("kills: the actor's host dies after round %u (every %u "
               "rounds, %u time%s at most)\n", o.kill_at, o.kill_at,
               o.kills, o.kills == 1 ? "" : "s");
    printf("checkpoint codec: round trip ok, %zu corrupt checkpoints "
           "refused\n", refused);
    int status = run(rt, &o);
    marin_runtime_close(rt);
    return status;
}
