/* marin — umbrella header: one interface for distributed work.
 * See docs/architecture.md; each header states its thread rules. */
#ifndef MARIN_H
#define MARIN_H

#include "marin/common.h"
#include "marin/version.h"
#include "marin/error.h"
#include "marin/resources.h"
#include "marin/runtime.h"
#include "marin/task.h"
#include "marin/future.h"
#include "marin/map.h"
#include "marin/actor.h"
#include "marin/kv.h"
#include "marin/executor.h"
#include "marin/worker.h"
#include "marin/experimental.h"

#endif
