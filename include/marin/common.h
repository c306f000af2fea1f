/* marin — common definitions shared by every public header.
 *
 * Opaque handle types and the export macro. Thread safety: nothing here
 * has state. Since 0.1. */
#ifndef MARIN_COMMON_H
#define MARIN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(MARIN_BUILDING_LIBRARY)
#define MARIN_API __attribute__((visibility("default")))
#else
#define MARIN_API
#endif

#define MARIN_DEPRECATED(msg) __attribute__((deprecated(msg)))

#ifdef __cplusplus
extern "C" {
#endif

typedef struct marin_runtime marin_runtime_t;
typedef struct marin_future marin_future_t;
typedef struct marin_resources marin_resources_t;
typedef struct marin_task_ctx marin_task_ctx_t;
typedef struct marin_task_options marin_task_options_t;
typedef struct marin_map_options marin_map_options_t;

/** Longest task name, label or env key accepted, in bytes. (Resource names
 *  are shorter: 63 bytes, see resources.h.) */
#define MARIN_NAME_MAX 255

#ifdef __cplusplus
}
#endif
#endif
