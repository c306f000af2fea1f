/* executor_example — three dependent steps on the workflow executor.
 *
 *   download  writes a small corpus into its output directory
 *   tokenize  splits the corpus into lowercase words, one per line
 *   count     counts the words and the distinct words
 *
 * Usage: executor_example PREFIX
 *
 * Each step's output lands in PREFIX/NAME-HASH8 (the hash covers the step's
 * name, config, version and its dependencies' paths). The program runs the
 * pipeline twice: the first run runs what is not SUCCESS yet, the second
 * skips everything. It prints the plan before each run, the result, and the
 * DAG as Graphviz DOT. Run it again with the same PREFIX and both runs skip;
 * change a config below and that step and everything after it run again.
 * Uses only the public API; MARIN_BACKEND picks the backend (default
 * local). */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marin/marin.h"

#define PROG "executor_example"

static atomic_int task_runs; /* step tasks run in this process */

static const char CORPUS[] =
    "The quick brown fox jumps over the lazy dog.\n"
    "The dog sleeps; the fox runs away.\n";

/* The path of FILE in the directory the env variable KEY names (its first
 * line, for MARIN_DEP_PATHS). */
static void path_in(marin_task_ctx_t *ctx, const char *key, const char *file,
                    char *buf, size_t cap)
{
    const char *dir = marin_task_env(ctx, key);
    size_t n = dir ? strcspn(dir, "\n") : 0;
    snprintf(buf, cap, "%.*s/%s", (int)n, dir ? dir : "", file);
}

static int download(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    atomic_fetch_add(&task_runs, 1);
    char out[4096];
    path_in(ctx, "MARIN_OUTPUT_PATH", "corpus.txt", out, sizeof out);
    FILE *f = fopen(out, "w");
    if (!f)
        return marin_task_fail(ctx, "cannot write corpus.txt");
    /* the config says which "source" to fetch; here, a built-in text */
    fprintf(f, "# source: %.*s\n%s", (int)len, (const char *)arg, CORPUS);
    fclose(f);
    return 0;
}

static int tokenize(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&task_runs, 1);
    char in[4096], out[4096];
    path_in(ctx, "MARIN_DEP_PATHS", "corpus.txt", in, sizeof in);
    path_in(ctx, "MARIN_OUTPUT_PATH", "tokens.txt", out, sizeof out);
    FILE *fi = fopen(in, "r"), *fo = fopen(out, "w");
    if (!fi || !fo) {
        if (fi)
            fclose(fi);
        if (fo)
            fclose(fo);
        return marin_task_fail(ctx, "cannot open corpus.txt or tokens.txt");
    }
    char line[1024];
    while (fgets(line, sizeof line, fi)) {
        if (line[0] == '#')
            continue;
        int in_word = 0;
        for (char *p = line; *p; p++) {
            if (isalpha((unsigned char)*p)) {
                fputc(tolower((unsigned char)*p), fo);
                in_word = 1;
            } else if (in_word) {
                fputc('\n', fo);
                in_word = 0;
            }
        }
    }
    fclose(fi);
    fclose(fo);
    return 0;
}

static int count(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&task_runs, 1);
    char in[4096], out[4096];
    path_in(ctx, "MARIN_DEP_PATHS", "tokens.txt", in, sizeof in);
    path_in(ctx, "MARIN_OUTPUT_PATH", "count.txt", out, sizeof out);
    FILE *fi = fopen(in, "r");
    if (!fi)
        return marin_task_fail(ctx, "cannot read tokens.txt");
    char words[256][64], w[64];
    int total = 0, distinct = 0;
    while (fscanf(fi, "%63s", w) == 1) {
        total++;
        int seen = 0;
        for (int i = 0; i < distinct && !seen; i++)
            seen = strcmp(words[i], w) == 0;
        if (!seen && distinct < 256)
            snprintf(words[distinct++], sizeof words[0], "%s", w);
    }
    fclose(fi);
    FILE *fo = fopen(out, "w");
    if (!fo)
        return marin_task_fail(ctx, "cannot write count.txt");
    fprintf(fo, "words %d\ndistinct %d\n", total, distinct);
    fclose(fo);
    return 0;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, PROG ": %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
    return 1;
}

/* Build the three steps (the same every time: same paths). */
static int build(marin_executor_t *ex, marin_step_t **s)
{
    const char *src = "builtin:fox";
    const char *tok = "{\"lowercase\":true}";
    int rc = marin_executor_add_step(ex, "download", "download", src,
                                     strlen(src), "v1", NULL, 0, NULL, &s[0]);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "tokenize", "tokenize", tok,
                                     strlen(tok), "v1", &s[0], 1, NULL, &s[1]);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "count", "count", NULL, 0, "v1",
                                     &s[1], 1, NULL, &s[2]);
    return rc;
}

/* One run with a fresh executor, as a new driver would do it. */
static int run_once(marin_runtime_t *rt, const char *prefix, int n)
{
    marin_executor_t *ex = NULL;
    marin_step_t *s[3];
    int rc = marin_executor_create(rt, prefix, &ex);
    if (rc != MARIN_OK)
        return fail("marin_executor_create", rc);
    if ((rc = build(ex, s)) != MARIN_OK) {
        marin_executor_destroy(ex);
        return fail("marin_executor_add_step", rc);
    }
    char plan[4096];
    int len = marin_executor_plan(ex, plan, sizeof plan);
    if (len < 0) {
        marin_executor_destroy(ex);
        return fail("marin_executor_plan", len);
    }
    printf("run %d, plan:\n%s", n, plan);
    int before = atomic_load(&task_runs);
    if ((rc = marin_executor_run(ex, NULL)) != MARIN_OK) {
        marin_executor_destroy(ex);
        return fail("marin_executor_run", rc);
    }
    int ran = atomic_load(&task_runs) - before;
    if (ran == 0)
        printf("run %d: skipped all 3 steps (already SUCCESS)\n", n);
    else
        printf("run %d: ran %d step(s), skipped %d\n", n, ran, 3 - ran);

    char path[4096];
    snprintf(path, sizeof path, "%s/count.txt", marin_step_output_path(s[2]));
    FILE *f = fopen(path, "r");
    if (f) {
        char line[128];
        printf("run %d: %s:", n, path);
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            printf(" %s;", line);
        }
        printf("\n");
        fclose(f);
    }
    if (n == 2) {
        char dot[4096];
        if (marin_executor_format_dot(ex, dot, sizeof dot) > 0)
            printf("DOT:\n%s", dot);
    }
    marin_executor_destroy(ex);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: " PROG " PREFIX\n");
        return 2;
    }
    if (marin_register_task("download", download, NULL) != MARIN_OK ||
        marin_register_task("tokenize", tokenize, NULL) != MARIN_OK ||
        marin_register_task("count", count, NULL) != MARIN_OK)
        return fail("marin_register_task", MARIN_EEXIST);
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(NULL, &rt);
    if (rc != MARIN_OK)
        return fail("marin_runtime_open", rc);
    int status = run_once(rt, argv[1], 1);
    if (status == 0)
        status = run_once(rt, argv[1], 2);
    marin_runtime_close(rt);
    return status;
}
