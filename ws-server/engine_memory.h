/* engine_memory — the engine of a single node: ids, history and fan-out in
 * this process (engine.h is the interface).
 *
 * Ids are "<epoch>-<seq>": epoch is fixed per run (hex seconds at start),
 * seq grows by one per message, so ids strictly increase within a run and
 * a page can tell a restarted server from a gap. A publish that brings its
 * own id (a message relayed from elsewhere) is accepted when the id has
 * that form and is newer than the last one; the engine then continues from
 * it.
 */
#ifndef WSPUSH_ENGINE_MEMORY_H
#define WSPUSH_ENGINE_MEMORY_H

#include <stddef.h>

#include "engine.h"
#include "ev.h"
#include "history.h"

engine_t *engine_memory_new(ev_loop_t *loop, const struct history_limits *lim,
                            engine_deliver_fn *deliver, void *deliver_ctx);
/* New history limits (reload). */
void      engine_memory_set_limits(engine_t *e, const struct history_limits *lim);

/* Saves history, epoch and last id to path (planned restart). */
int  engine_memory_save(engine_t *e, const char *path, char *err, size_t errlen);
/* Restores a saved file so ids continue the saved run. On failure the
 * engine keeps its fresh epoch and empty history; err says why. */
int  engine_memory_restore(engine_t *e, const char *path, char *err, size_t errlen);

/* Messages and bytes history holds now (tests, metrics). */
size_t engine_memory_entries(const engine_t *e);
size_t engine_memory_bytes(const engine_t *e);
/* Messages accepted since the start (metrics: one per publish). */
uint64_t engine_memory_published(const engine_t *e);

#endif
