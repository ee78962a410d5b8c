/* daemon/cmd_golden.h — `loom golden DIR`: checks Loom against a folder of golden files.
 *
 * Every file of DIR is identified by its contents, never its name: safetensors goldens by
 * their `__metadata__` (rng cases; text, MMDiT, VAE and sampling goldens by their tensor
 * names and `config`), tokenizer goldens (tokens.json) by their JSON cases. INPUT tensors
 * are fed to Loom's model code verbatim, each expected tensor is recomputed and compared
 * under the tolerance group golden/README.md assigns to it (values from the file's
 * `tolerances`), one line each: name, group, max abs error, max rel error, PASS/FAIL. The
 * last line is "N passed, N failed". Checkpoints, documentation and other files are listed
 * as skipped. docs/golden.md describes the output and the rules.
 *
 * Exit codes: 0 every check passed, 1 some failed (or nothing was checked), 2 bad command
 * line, 4 DIR unreadable. */
#ifndef LM_DAEMON_CMD_GOLDEN_H
#define LM_DAEMON_CMD_GOLDEN_H

/* argv[0] is "golden". Returns the process exit code. */
int lm_cmd_golden(int argc, char **argv);

#endif
