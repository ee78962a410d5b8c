/* nodes/builtin.h — registers every built-in C node. The one list is in nodes/builtin.c. */
#ifndef LM_NODES_BUILTIN_H
#define LM_NODES_BUILTIN_H

#include "core/base/error.h"
#include "core/registry.h"

lm_status lm_nodes_register_builtin(lm_registry *reg, lm_error *err);

#endif
