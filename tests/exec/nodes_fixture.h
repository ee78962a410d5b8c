/* tests/exec/nodes_fixture.h — test-only node types (tests/exec/test_nodes_fixture.c) for the
 * validator and executor tests: counters, failing, slow, volatile and every-input-kind
 * nodes. Never registered by the program. Each type counts its runs (fx_runs). */
#ifndef LM_TESTS_EXEC_NODES_FIXTURE_H
#define LM_TESTS_EXEC_NODES_FIXTURE_H

#include "core/registry.h"

#include <stdint.h>

/* Adds every fixture type to reg. */
lm_status fx_register(lm_registry *reg, lm_error *err);
/* A registry holding the fixture types only (test fails and NULL when that fails). */
lm_registry *fx_registry(void);
/* How many times node type `name` ran in this process. */
int fx_runs(const char *name);

/* TestChanged's fingerprint; change it to make the node re-run. */
extern uint64_t fx_fingerprint;
/* TestSlow sleeps this many microseconds per step (default 1000). */
extern int fx_slow_step_us;
/* Set by TestSlow when it starts (for tests that cancel from another thread). */
extern _Atomic int fx_slow_started;
/* Last value TestSink received. */
extern int64_t fx_sink_last;

#endif
