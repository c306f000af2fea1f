/* Backend URIs: scheme://[user[:password]@]host[:port][/path][?k=v&k=v].
 * "local" alone (no "://") is a scheme with nothing else. Values are
 * percent-decoded. */
#ifndef MARIN_CORE_URI_H
#define MARIN_CORE_URI_H

#include <stddef.h>

#define MARIN__URI_MAX_PARAMS 32

typedef struct marin__uri {
    char *scheme, *user, *password, *host, *path; /* NULL when absent */
    int port;                                     /* -1 when absent */
    size_t nparams;
    char *keys[MARIN__URI_MAX_PARAMS];
    char *values[MARIN__URI_MAX_PARAMS];
} marin__uri;

/* Parse @p text into @p u. MARIN_OK, MARIN_EINVAL (message names the
 * problem and position), MARIN_ENOMEM. On failure u is left empty. */
int marin__uri_parse(const char *text, marin__uri *u);
void marin__uri_free(marin__uri *u);
/* Value of parameter @p key, or NULL. */
const char *marin__uri_param(const marin__uri *u, const char *key);
/* Parse parameter @p key as a non-negative integer (milliseconds, counts)
 * into *out, leaving *out unchanged when absent. MARIN_EINVAL names it. */
int marin__uri_param_i64(const marin__uri *u, const char *key, long long *out);
/* MARIN_EINVAL naming the first parameter not in the NULL-terminated list
 * @p known (so typos are caught). */
int marin__uri_check_params(const marin__uri *u, const char *const *known);

#endif
