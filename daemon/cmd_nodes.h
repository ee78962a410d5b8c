/* daemon/cmd_nodes.h — `loom nodes [--json|--markdown] [NAME]`: the node types, read from
 * the registry.
 *
 * Without options it prints a list (name, category, one-line description), or with NAME
 * everything about one node: inputs with type, default, range or choices and help, then the
 * outputs. --json prints ComfyUI's /object_info JSON (daemon/object_info.h); --markdown the
 * node reference that is committed as docs/nodes.md (tests/cli/test_nodes_doc.c checks that
 * the file matches). Output goes to stdout, problems to stderr.
 * Exit codes: 0 ok, 1 out of memory, 2 bad command line or unknown NAME (the message
 * suggests close names). */
#ifndef LM_DAEMON_CMD_NODES_H
#define LM_DAEMON_CMD_NODES_H

#include "core/registry.h"

/* argv[0] is "nodes". env gives dynamic combo choices (files in models folders) in the text
 * and JSON output; it may be NULL (the lists are then left empty). */
int lm_cmd_nodes(int argc, char **argv, const lm_registry *reg, const lm_env *env);

/* The node reference document in Markdown: all of reg's nodes, or only only_name's section
 * (NULL = all). Dynamic choices are described, never listed, so the text is the same on
 * every machine. Returns NULL on out-of-memory or for an unknown only_name; free with
 * lm_free(). */
char *lm_cmd_nodes_markdown(const lm_registry *reg, const char *only_name);

#endif
