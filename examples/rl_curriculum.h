/* rl_curriculum — what the driver (rl_curriculum.c) and the actor
 * (rl_curriculum_actor.c) share: the class and method names, the actor's
 * state, and the little-endian wire formats of its calls and checkpoints.
 *
 * Every byte string that crosses marin (method arguments and results,
 * checkpoints, task arguments and results) is written with rl_put_* and read
 * with the bounds-checked rl_get_*, so nothing depends on struct layout. */
#ifndef RL_CURRICULUM_H
#define RL_CURRICULUM_H

#include <stddef.h>
#include <stdint.h>

#define MARIN_EXPERIMENTAL 1 /* marin_test_kill_worker, for the crash method */
#include <marin/marin.h>

#define RL_PROG "rl_curriculum"
#define RL_CLASS "Curriculum"
#define RL_ACTOR_NAME "curriculum"
#define RL_ROLLOUT_TASK "rl_curriculum.rollout"

#define RL_MAX_LESSONS 16
#define RL_MAX_ROLLOUTS 256
#define RL_NAME_MAX 23           /* lesson name bytes, without the NUL */
#define RL_STATE_MAX 4096        /* an encoded state never exceeds this */

/* ---- byte buffers ---- */

typedef struct rl_writer {
    uint8_t *p;
    size_t cap, len;
    int over; /* something did not fit: the bytes are incomplete */
} rl_writer;

typedef struct rl_reader {
    const uint8_t *p;
    size_t len, off;
    int bad; /* a read ran past the end: every later read gives 0 */
} rl_reader;

void rl_put_u32(rl_writer *w, uint32_t v);
void rl_put_u64(rl_writer *w, uint64_t v);
void rl_put_bytes(rl_writer *w, const void *data, size_t n);
uint32_t rl_get_u32(rl_reader *r);
uint64_t rl_get_u64(rl_reader *r);
void rl_get_bytes(rl_reader *r, void *out, size_t n);
void rl_sleep_us(uint32_t us);

/* ---- the curriculum's state (what checkpoints and snapshot carry) ---- */

typedef struct rl_lesson {
    char name[RL_NAME_MAX + 1];
    uint32_t difficulty;       /* 1 (easy) .. 100 */
    uint64_t attempts;         /* episodes recorded on this lesson */
    uint64_t successes;
    uint64_t round_attempts;   /* the same for the open round only */
    uint64_t round_successes;
} rl_lesson;

typedef struct rl_state {
    uint32_t nlessons;
    uint32_t current;          /* index of the lesson being taught */
    uint32_t finished;         /* 1 once the last lesson is mastered */
    uint32_t round;            /* the open round (0-based) */
    uint32_t nrollouts;
    uint32_t min_episodes;     /* on a lesson, before it may be mastered */
    uint32_t threshold_pm;     /* success rate to master it, per mille */
    uint32_t restores;         /* times the actor came back from a checkpoint */
    uint64_t stale_episodes;   /* reported for an older lesson: ignored */
    uint64_t duplicate_reports;/* a rollout reported one round twice */
    rl_lesson lessons[RL_MAX_LESSONS];
    uint32_t reported[RL_MAX_ROLLOUTS]; /* last round reported + 1; 0: none */
} rl_state;

/* Encode @p st (a checkpoint, or a snapshot's result) into @p buf of at
 * least RL_STATE_MAX bytes; returns the length. */
size_t rl_state_encode(const rl_state *st, uint8_t *buf);
/* Decode and check; 0, or -1 with a sentence in @p err. */
int rl_state_decode(const void *data, size_t len, rl_state *st, char *err,
                    size_t errcap);
/* Rollouts that reported the open round. */
uint32_t rl_state_reported(const rl_state *st);
/* Encode a sample, decode it, and feed the decoder corrupt copies (every
 * truncation, every flipped byte, out-of-range fields): 0 with the number of
 * corrupt checkpoints refused in *refused, or -1 with a sentence in @p err. */
int rl_codec_selfcheck(size_t *refused, char *err, size_t errcap);

/* ---- the class ---- */

/* Register class RL_CLASS in this process. Returns a marin code. */
int rl_register_curriculum(void);

/* Constructor argument: u32 nrollouts, u32 min_episodes, u32 threshold_pm. */

/* get_lesson(u32 round) -> u32 status, u32 round, u32 lesson,
 *                          u32 difficulty, u32 namelen, name.
 * Idempotent. RL_WAIT: the trainer has not closed the round before. */
enum { RL_LESSON, RL_WAIT, RL_DONE };
typedef struct rl_lesson_msg {
    uint32_t status, round, lesson, difficulty;
    char name[RL_NAME_MAX + 1];
} rl_lesson_msg;

/* report_stats(u32 rollout, u32 round, u32 lesson, u32 episodes,
 *              u32 successes, u32 hold_us) -> u32 verdict. State-changing.
 * hold_us: how long the call stays in flight after updating the state (0
 * normally; --report-us, so that a crash beside it catches it). */
enum {
    RL_RECORDED,  /* counted */
    RL_DUPLICATE, /* this rollout's report for the round was counted before */
    RL_STALE      /* for a lesson or round already closed: ignored */
};

/* advance(u32 round) -> u32 status, u32 lesson (the one evaluated),
 *                       u32 next (current after the call),
 *                       u64 round_attempts, u64 round_successes,
 *                       u64 lesson_attempts. State-changing. */
enum {
    RL_NOT_READY, /* not every rollout reported the round yet */
    RL_STAYED,    /* round closed; the lesson is not mastered yet */
    RL_ADVANCED,  /* round closed; on to the next lesson */
    RL_FINISHED,  /* round closed; the last lesson is mastered */
    RL_CLOSED     /* that round was closed already (a retried call) */
};
typedef struct rl_advance_msg {
    uint32_t status, lesson, next;
    uint64_t round_attempts, round_successes, lesson_attempts;
} rl_advance_msg;

/* snapshot() -> the encoded state. Idempotent.
 * crash(u32 delay_us) -> the actor's host dies (marin_test_kill_worker),
 *     after delay_us.
 * corrupt_checkpoints() -> every later checkpoint is damaged (to show that
 *     restore refuses it). */

#endif
