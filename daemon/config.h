/* daemon/config.h — the `loom` configuration file: defaults for the environment variables.
 *
 * The file is YAML, one mapping of known keys to scalars, and each key stands for an
 * environment variable the program already reads (models → LOOM_MODELS, device →
 * LOOM_DEVICE, …; the table is in config.c and docs/cli.md "Configuration file"). Loading
 * exports every key with setenv(name, value, 0): a variable already in the environment keeps
 * its value, even an empty one. So the precedence command-line flag > environment > file >
 * built-in default holds without any reader of those variables knowing the file exists — as
 * long as the file is loaded at start-up, before anything reads them and before any thread
 * starts (setenv is not thread-safe).
 *
 * Every value is checked while loading (a device name, a thread count, a precision, a byte
 * size, a boolean), so an error names the file and line:col; nothing is exported unless the
 * whole file is good. Relative directories are taken relative to the file's own directory
 * and exported as absolute paths; "~/" is $HOME. The top-level key `serve:` (a mapping) is
 * reserved for the daemon's own settings and is skipped here.
 *
 * Process-wide state: the place in the file of each variable the file set, for messages
 * about a value that is found bad only later (lm_config_origin). Not thread-safe. */
#ifndef LM_DAEMON_CONFIG_H
#define LM_DAEMON_CONFIG_H

#include "core/base/error.h"

#include <stddef.h>

/* The largest configuration file read, in bytes. */
#define LM_CONFIG_MAX_BYTES (64u << 10)

/* Where the configuration file is: cli_path (--config) when not NULL, else $LOOM_CONFIG, else
 * $XDG_CONFIG_HOME/loom/config.yaml (XDG_CONFIG_HOME absolute), else
 * $HOME/.config/loom/config.yaml. Writes the path, or "" when there is none to load: an
 * empty --config or LOOM_CONFIG, or a default path that does not exist. *source_out is
 * "--config" or "LOOM_CONFIG" when one of them named the file (it must then exist), else
 * NULL. LM_ELIMIT when the path does not fit in size. */
lm_status lm_config_find(char *path, size_t size, const char *cli_path, const char **source_out,
                         lm_error *err);

/* Reads the file at path (at most LM_CONFIG_MAX_BYTES), checks every key and value, and
 * exports them as described above. Errors carry path:line:col. */
lm_status lm_config_load(const char *path, lm_error *err);

/* "cfg.yaml:3:9: device" when the last lm_config_load() set the environment variable
 * env_name (the environment did not have it), else NULL. Borrowed: lives until the next
 * lm_config_load(). */
const char *lm_config_origin(const char *env_name);

#endif
