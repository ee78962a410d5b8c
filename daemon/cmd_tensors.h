/* daemon/cmd_tensors.h — `loom tensors FILE [--json]`: what is inside a checkpoint.
 *
 * FILE is a .safetensors file or a sharded `*.safetensors.index.json`. The text form lists
 * the metadata, every tensor (name, dtype, shape) and totals by dtype and by top-level
 * prefix (model.diffusion_model, first_stage_model, text_encoders.clip_l, …); --json prints
 * {"metadata": {key: value}, "tensors": [{"name", "dtype", "shape"}]} with safetensors'
 * dtype names. Output goes to stdout; a file that cannot be opened or is damaged gives one
 * line "loom: <file>: <problem>; <what to do>." on stderr and a non-zero exit code
 * (4, LM_EXIT_IO; 2 for a bad command line). See docs/checkpoints.md. */
#ifndef LM_DAEMON_CMD_TENSORS_H
#define LM_DAEMON_CMD_TENSORS_H

/* argv[0] is "tensors". Returns the process exit code. */
int lm_cmd_tensors(int argc, char **argv);

#endif
