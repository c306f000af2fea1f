/* Helpers shared by the Check suites. */
#ifndef MARIN_TESTUTIL_H
#define MARIN_TESTUTIL_H

#include <check.h>
#include <string.h>

#include "marin/marin.h"

/* Run a suite in fork mode; returns the process exit code. */
int marin_test_run(Suite *s);

/* ck_assert that a marin call returned @p want; prints marin_last_error. */
#define ck_assert_marin(call, want)                                           \
    do {                                                                      \
        int rc_ = (call);                                                     \
        ck_assert_msg(rc_ == (want), "%s returned %d (%s), wanted %d: %s",    \
                      #call, rc_, marin_strerror(rc_), (int)(want),           \
                      marin_last_error());                                    \
    } while (0)

/* ck_assert that marin_last_error() contains @p needle. */
#define ck_assert_lasterr_has(needle)                                         \
    ck_assert_msg(strstr(marin_last_error(), (needle)) != NULL,               \
                  "last error '%s' lacks '%s'", marin_last_error(), (needle))

#endif
