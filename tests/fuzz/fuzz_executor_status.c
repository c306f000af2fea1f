/* libFuzzer target: the executor's status file (JSON lines).
 *
 * The input is given to marin__xstatus_parse() exactly as read from disk
 * (not NUL-terminated: the target copies it into a buffer of its exact
 * size, so ASan catches a read past the end). It must return MARIN_OK or
 * MARIN_EPROTO; on MARIN_OK the state is one of MARIN_STEP_*, the attempt
 * is non-negative and the time and owner are NUL-terminated inside their
 * fields; on MARIN_EPROTO the message starts with "FILE:LINE: " for a line
 * that exists. A line that parses, written back by marin__xstatus_format()
 * and parsed again, must give the same state and attempt. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marin/error.h"
#include "marin/executor.h"
#include "alloc.h"
#include "executor_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (64 << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    marin__xstatus st;
    int rc = marin__xstatus_parse("F", buf, size, &st);
    if (rc == MARIN_OK) {
        if (st.state < MARIN_STEP_NONE || st.state > MARIN_STEP_FAILED ||
            st.attempt < 0 || !memchr(st.time, '\0', sizeof st.time) ||
            !memchr(st.owner, '\0', sizeof st.owner))
            abort();
        if (st.state != MARIN_STEP_NONE) {
            char *line = marin__xstatus_format("s", st.state, st.attempt,
                                               st.owner, 0, NULL);
            if (line) {
                marin__xstatus again;
                if (marin__xstatus_parse("G", line, strlen(line), &again) !=
                        MARIN_OK ||
                    again.state != st.state || again.attempt != st.attempt ||
                    again.lines != 1)
                    abort();
                marin__free(line);
            }
        }
    } else if (rc == MARIN_EPROTO) {
        const char *msg = marin_last_error();
        size_t line = 0;
        if (strncmp(msg, "F:", 2) != 0 || sscanf(msg + 2, "%zu", &line) != 1 ||
            line == 0)
            abort();
        size_t lines = 1;
        for (size_t i = 0; i + 1 < size; i++)
            lines += buf[i] == '\n';
        if (line > lines)
            abort();
    } else {
        abort();
    }
    free(buf);
    return 0;
}
