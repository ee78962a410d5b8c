/* daemon/golden_impl.h — what the files of `loom golden` share (cmd_golden.c, golden_*.c).
 *
 * A run walks one folder. Each golden safetensors file becomes an lm_golden_file: its
 * metadata documents (config, params, prompts, cases, tensors, tolerances) parsed once, the
 * checkpoint its config names (shared by every file of the run that names it, loaded model by
 * model on first use), and one flag per tensor saying it has been reported. The kind
 * checkers (golden_rng.c, golden_text.c, golden_mmdit.c, golden_vae.c, golden_sample.c) feed
 * the INPUT tensors to Loom's model code and hand every result to lm_golden__check(), which
 * compares it with the golden tensor of that name under a tolerance group of the file's
 * `tolerances`, prints one line and counts it. What no checker reported is failed at the end
 * by lm_golden__file_finish(), so a golden set with outputs Loom does not compute fails
 * loudly instead of passing. tokens.json cases go through golden_tokens.c.
 *
 * Ownership: the run owns the checkpoints and tokenizers; a file owns its metadata and its
 * golden set. Tensors passed to lm_golden__check are borrowed. Single-threaded. */
#ifndef LM_DAEMON_GOLDEN_IMPL_H
#define LM_DAEMON_GOLDEN_IMPL_H

#include "core/base/error.h"
#include "core/base/lm.h"
#include "core/io/safetensors.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/t5.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/vae.h"
#include "nodes/sd3/weights.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LM_GOLDEN_PATH_MAX 4096
#define LM_GOLDEN_MAX_CKPT 16 /* distinct checkpoints one folder may name */

/* One checkpoint and the models loaded from it (each on first use; a failed load is
 * remembered with its error so every tensor that needs the model reports it). */
typedef struct {
    char path[LM_GOLDEN_PATH_MAX];
    char sha256[65]; /* hex; "" until hashed */
    lm_safetensors *st;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_clip *clip_l, *clip_g;
    lm_t5 *t5;
    lm_mmdit *mmdit;
    lm_vae *vae;
    bool tried[LM_SD3_COMPONENT_COUNT];
    lm_error load_err[LM_SD3_COMPONENT_COUNT];
} lm_golden_ckpt;

typedef struct {
    FILE *out;
    char dir[LM_GOLDEN_PATH_MAX];
    char tokenizers[LM_GOLDEN_PATH_MAX]; /* folder with clip/ and t5/ */
    bool verify;                         /* check checkpoint sha256 */
    int passed, failed;
    char **names; /* the folder's entries, sorted */
    size_t n_names;
    lm_golden_ckpt *ckpt[LM_GOLDEN_MAX_CKPT];
    int n_ckpt;
    lm_clip_tokenizer *clip_tok;
    lm_t5_tokenizer *t5_tok;
    bool tok_tried;
    lm_error tok_err;
} lm_golden_run;

/* One golden safetensors file being checked. */
typedef struct {
    lm_golden_run *run;
    const char *name; /* file name inside the folder */
    lm_safetensors *st;
    cJSON *config, *params, *prompts, *cases, *tensors, *tolerances; /* NULL when absent */
    lm_golden_ckpt *ckpt;   /* the checkpoint config names; NULL when none or not usable */
    char ckpt_problem[512]; /* why ckpt is NULL (printed for every tensor needing it) */
    bool *done;             /* per entry index: reported */
} lm_golden_file;

/* ---- cmd_golden.c / golden_common.c: the run ---- */

void lm_golden__run_fini(lm_golden_run *run);
/* Loads the tokenizers once; false with *err set when they cannot be loaded. */
bool lm_golden__tokenizers(lm_golden_run *run, lm_error *err);

/* ---- golden_common.c: files, tensors, comparisons ---- */

/* Opens the metadata of an already opened set; takes ownership of st. */
lm_status lm_golden__file_init(lm_golden_file *f, lm_golden_run *run, const char *name,
                               lm_safetensors *st, lm_error *err);
/* With coverage, fails every non-INPUT tensor nobody reported; then frees the file. */
void lm_golden__file_finish(lm_golden_file *f, bool coverage);
/* Finds, hashes (when asked) and opens the checkpoint named by config; false with
 * ckpt_problem set otherwise. */
bool lm_golden__file_ckpt(lm_golden_file *f);

bool lm_golden__has(const lm_golden_file *f, const char *name); /* present, not yet reported */
bool lm_golden__is_input(const lm_golden_file *f, const char *name);
/* The golden tensor `name` (mapped, read-only). */
lm_status lm_golden__tensor(const lm_golden_file *f, const char *name, lm_tensor **out,
                            lm_error *err);
/* An integer tensor's values as int32 (lm_free), count in *n. */
lm_status lm_golden__ids(const lm_golden_file *f, const char *name, int32_t **ids, size_t *n,
                         lm_error *err);
/* A seed from JSON (a double) as torch.manual_seed takes it: negative values wrap (two's
 * complement), values beyond 64 bits give 0. */
uint64_t lm_golden__seed(double v);
/* A number of `params` at a dotted path ("img2img.denoise"); false when absent. */
bool lm_golden__param(const lm_golden_file *f, const char *path, double *out);
const cJSON *lm_golden__param_item(const lm_golden_file *f, const char *path);

/* Compares `got` with golden tensor `name` under tolerance `group`, prints and counts one
 * line. Nothing happens when the golden has no such tensor or it was reported already. */
void lm_golden__check(lm_golden_file *f, const char *name, const char *group, const lm_tensor *got);
/* Same for a [B, 3, H, W] image in [-1, 1] against a U8 HWC golden (uint8(255*clamp((x+1)/2)),
 * truncating, as the reference saves PNGs). */
void lm_golden__check_u8(lm_golden_file *f, const char *name, const char *group,
                         const lm_tensor *image);
/* Reports `name` as failed with an error (or a message), once. */
void lm_golden__fail(lm_golden_file *f, const char *name, const char *group, const lm_error *err);
void lm_golden__failf(lm_golden_file *f, const char *name, const char *group, const char *fmt, ...)
    LM_PRINTF(4, 5);
/* Fails every unreported tensor whose name starts with prefix (when a whole case cannot run). */
void lm_golden__fail_prefix(lm_golden_file *f, const char *prefix, const lm_error *err);

/* The models of the file's checkpoint, loaded on first use. */
lm_status lm_golden__clip(lm_golden_file *f, lm_clip_kind kind, const lm_clip **out, lm_error *err);
lm_status lm_golden__t5(lm_golden_file *f, const lm_t5 **out, lm_error *err);
lm_status lm_golden__mmdit(lm_golden_file *f, const lm_mmdit **out, lm_error *err);
lm_status lm_golden__vae(lm_golden_file *f, const lm_vae **out, lm_error *err);

/* Prints one result line and counts it. max_abs/max_rel < 0 print "-". */
void lm_golden__report(lm_golden_run *run, const char *name, const char *group, double max_abs,
                       double max_rel, bool pass, const char *why);

/* ---- the kinds ---- */

bool lm_golden__is_rng(const lm_golden_file *f);
bool lm_golden__is_text(const lm_golden_file *f);
bool lm_golden__is_mmdit(const lm_golden_file *f);
bool lm_golden__is_vae(const lm_golden_file *f);
bool lm_golden__is_sample(const lm_golden_file *f);
void lm_golden__check_rng(lm_golden_file *f);
void lm_golden__check_text(lm_golden_file *f);
void lm_golden__check_mmdit(lm_golden_file *f);
void lm_golden__check_vae(lm_golden_file *f);
void lm_golden__check_sample(lm_golden_file *f);

/* tokens.json: true when doc is a tokenizer golden (an array of cases with a prompt). */
bool lm_golden__is_tokens(const cJSON *doc);
void lm_golden__check_tokens(lm_golden_run *run, const cJSON *doc);

/* ---- golden_sha256.c ---- */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} lm_golden_sha256;

void lm_golden__sha256_init(lm_golden_sha256 *s);
void lm_golden__sha256_update(lm_golden_sha256 *s, const void *data, size_t n);
void lm_golden__sha256_final(lm_golden_sha256 *s, uint8_t digest[32]);
/* Hex digest of a whole file. */
lm_status lm_golden__sha256_file(const char *path, char hex[65], lm_error *err);

#endif
