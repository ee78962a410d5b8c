/* nodes/sd3/models.h — the SD3 model manager and the objects the SD3 nodes pass along
 * links: MODEL, CLIP, VAE and CONDITIONING.
 *
 * Files. Model names are ComfyUI's: a path relative to one of the models directory's
 * sub-folders (env->models_dir): checkpoints/, text_encoders/ (then clip/), vae/,
 * diffusion_models/ (then unet/). A name must pass lm_path_is_confined(); the combos list
 * every *.safetensors file below a folder, recursively (symbolic links followed, at most
 * LM_SD3_MODELS_MAX_DEPTH levels), as "sub/name.safetensors", sorted, duplicates dropped.
 * A diffusers pipeline folder (lm_sd3_diffusers_is_folder) below checkpoints/ is listed as
 * one name, the folder's ("sub/stable-diffusion-3-medium-diffusers"), and not entered
 * (elsewhere its files are listed as any others: a diffusers transformer or VAE file loads
 * alone too). Everything that takes a file path below also takes such a folder: its
 * components come from its sub-folders, its tokenizers from tokenizer/ and tokenizer_3/.
 *
 * Sharing. One process-wide manager loads each file once (lm_safetensors_open) and each
 * component of it (MMDiT, VAE, CLIP-L, CLIP-G, T5) once, keyed by the file's real path plus
 * the component, and hands out counted references (lm_sd3_part) to every job and node. A
 * tokenizer directory is loaded once as well. A mutex guards the tables; loads run under it
 * (two jobs asking for one checkpoint wait for one load). Loaded models are read-only, so
 * any number of threads may run them at once.
 *
 * Devices. A part is asked for on a backend (the job's --device, env->backend); on the CPU
 * its weights stay in the file's mapping, on a device they are copied there once in their
 * stored dtype. Parts are keyed by file, component and the backend asked for, so a CPU job
 * and a GPU job of one process do not share weights.
 *
 * Memory policy (docs/sd3.md, "Memory"): everything loaded stays resident, even with no
 * user, so the next job finds it. A part goes to the device asked for when, after its
 * weights, LOOM_DEVICE_RESERVE bytes (LM_SD3_DEVICE_RESERVE by default: activations, the
 * VAE's above all) stay free there; text encoders (CLIP-L, CLIP-G, T5-XXL) also leave
 * LOOM_DENOISER_RESERVE (LM_SD3_DENOISER_RESERVE) while no MMDiT is on that device, so an
 * encoder loaded first cannot crowd the denoiser out. When a part does not fit, parts on
 * that device that no value holds are unloaded, least recently used first (after asking
 * the program to drop cached ones: lm_sd3_models_set_pressure_hook); when it still
 * does not fit it computes on the CPU — T5-XXL on a small GPU, typically (logged at INFO;
 * an MMDiT or VAE at WARN, since that is slow). lm_sd3_models_free_unused() frees every
 * part no value holds (the daemon's POST /free; tests), lm_sd3_models_free_idle() those
 * unused for a while. The executor's cache holds loader outputs, so clear it first to free
 * all.
 * With LOOM_SKIP_T5=1 (or lm_sd3_models_set_skip_t5) T5-XXL is never loaded: CLIP values
 * then have no T5 and the conditioning is built from CLIP-L/G alone, as ComfyUI does.
 *
 * Values. The object types are refcounted through lm_value (lm_value_object): a value owns
 * its struct, which holds references to shared parts. Values are immutable: ModelSamplingSD3
 * and friends make a new MODEL sharing the same MMDiT part. */
#ifndef LM_NODES_SD3_MODELS_H
#define LM_NODES_SD3_MODELS_H

#include "core/base/error.h"
#include "core/registry.h"
#include "core/tensor/tensor.h"
#include "core/value.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/scheduler.h"
#include "nodes/sd3/t5.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/vae.h"
#include "nodes/sd3/weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_SD3_MODELS_MAX_DEPTH 8 /* folder levels listed below a models sub-folder */
/* Device memory kept free for activations (LOOM_DEVICE_RESERVE overrides): a VAE decode
 * at 1024x1024 holds several 512 MiB activations at once. */
#define LM_SD3_DEVICE_RESERVE ((size_t)3 << 30)
/* Room text encoders leave for a denoiser not loaded yet (LOOM_DENOISER_RESERVE): the
 * largest supported one, SD3.5 Medium's 2.5B parameters in 16-bit weights, plus its VAE. */
#define LM_SD3_DENOISER_RESERVE ((size_t)11 << 29)
#define LM_SD3_SLG_MAX_LAYERS   64

/* ---- files ---- */

typedef enum {
    LM_SD3_FOLDER_CHECKPOINTS,      /* checkpoints/ */
    LM_SD3_FOLDER_TEXT_ENCODERS,    /* text_encoders/, then clip/ */
    LM_SD3_FOLDER_VAE,              /* vae/ */
    LM_SD3_FOLDER_DIFFUSION_MODELS, /* diffusion_models/, then unet/ */
    LM_SD3_FOLDER_COUNT
} lm_sd3_folder;

/* "checkpoints", "text_encoders", … (the first sub-folder's name). */
const char *lm_sd3_folder_name(lm_sd3_folder folder);

/* Appends the folder's model names (see the file top) to out. A missing models directory
 * or sub-folder lists nothing. */
lm_status lm_sd3_models_list(const lm_env *env, lm_sd3_folder folder, lm_strlist *out,
                             lm_error *err);
/* The file a name refers to. LM_EINVAL for a name that is not confined, LM_ENOTFOUND (with
 * the available names in the hint) for one that is not there; `input` names the node input
 * in the error. */
lm_status lm_sd3_models_path(const lm_env *env, lm_sd3_folder folder, const char *name,
                             const char *input, char *path, size_t size, lm_error *err);

/* ---- shared parts ---- */

typedef enum {
    LM_SD3_PART_MMDIT,
    LM_SD3_PART_VAE,
    LM_SD3_PART_CLIP_L,
    LM_SD3_PART_CLIP_G,
    LM_SD3_PART_T5,
    LM_SD3_PART_TOKENIZERS, /* CLIP BPE + T5 SentencePiece of one tokenizer directory */
} lm_sd3_part_kind;

typedef struct lm_sd3_part lm_sd3_part; /* one loaded component; opaque, counted */

/* What a file holds, found without loading anything. A standalone CLIP file (text_model.*)
 * is reported in clip_standalone with its width; all-in-one files report CLIP-L/G. */
typedef struct {
    bool has[LM_SD3_COMPONENT_COUNT];
    bool clip_standalone;
    int clip_width; /* token_embedding columns of a standalone CLIP, else 0 */
} lm_sd3_file_info;

/* Opens (once) the file at path and reports what it holds. */
lm_status lm_sd3_models_probe(const char *path, lm_sd3_file_info *info, lm_error *err);
/* One line saying what the file (or diffusers folder) at path holds, for `loom models`:
 * its components in the order MMDiT, VAE, CLIP-L, CLIP-G, T5-XXL, comma-separated; the
 * MMDiT with the flavour its tensor shapes tell ("MMDiT (SD3 Medium: depth 24, width
 * 1536)", "MMDiT-X (SD3.5 Medium: depth 24, width 1536, x self-attention in 13 blocks)",
 * "MMDiT (SD3.5 Large: …)"); a standalone CLIP as CLIP-L (width 768) or CLIP-G (1280), or
 * "CLIP (width N)" for another width (the loaders then decide by order); a component's
 * dtype when most of its bytes are not F16 ("T5-XXL (F8_E4M3)"). A file without any says
 * so. Opens the file as lm_sd3_models_probe does (the header only; nothing is loaded).
 * Errors: the file's (unreadable, not safetensors), or an MMDiT whose shapes do not fit. */
lm_status lm_sd3_models_describe(const char *path, char *buf, size_t size, lm_error *err);

/* A counted reference to component `kind` of the file at `path` for backend `be` (NULL:
 * the CPU; placed by the memory policy above), loading it on first use.
 * For LM_SD3_PART_CLIP_L/G of a standalone CLIP file the kind says which CLIP it is. For
 * LM_SD3_PART_TOKENIZERS, path is a directory holding clip/ (vocab.json, merges.txt) and
 * t5/ (spiece.model or tokenizer.json), or a diffusers folder (tokenizer/, tokenizer_3/). */
lm_status lm_sd3_models_acquire(lm_sd3_part **out, const char *path, lm_sd3_part_kind kind,
                                lm_backend *be, lm_error *err);
lm_sd3_part *lm_sd3_part_ref(lm_sd3_part *part); /* NULL allowed */
void lm_sd3_part_release(lm_sd3_part *part);     /* NULL is a no-op; stays loaded */

/* Borrowed objects of a part (NULL when the part is of another kind). */
const lm_mmdit *lm_sd3_part_mmdit(const lm_sd3_part *part);
const lm_vae *lm_sd3_part_vae(const lm_sd3_part *part);
const lm_clip *lm_sd3_part_clip(const lm_sd3_part *part);
const lm_t5 *lm_sd3_part_t5(const lm_sd3_part *part);
const lm_clip_tokenizer *lm_sd3_part_clip_tokenizer(const lm_sd3_part *part);
const lm_t5_tokenizer *lm_sd3_part_t5_tokenizer(const lm_sd3_part *part); /* may be NULL */
const char *lm_sd3_part_path(const lm_sd3_part *part);
/* Where the part computes: the backend asked for, or the CPU when the policy kept it
 * there (tokenizers: the CPU). */
lm_backend *lm_sd3_part_backend(const lm_sd3_part *part);

typedef struct {
    uint64_t file_opens;      /* lm_safetensors_open calls that succeeded */
    uint64_t component_loads; /* MMDiT/VAE/CLIP/T5 loads (tokenizers not counted) */
    uint64_t tokenizer_loads;
    size_t resident_parts; /* parts loaded now */
    size_t resident_files;
    size_t device_bytes; /* weight bytes the parts hold on devices now */
} lm_sd3_models_stats;

void lm_sd3_models_get_stats(lm_sd3_models_stats *out);
/* Frees every part and file no value references; returns how many parts went. */
size_t lm_sd3_models_free_unused(void);
/* Same, only for parts unused for at least idle_seconds. */
size_t lm_sd3_models_free_idle(double idle_seconds);
/* Memory pressure: when a part does not fit on its device and no unused part there can
 * go, the manager calls the hook once (without its lock held), so the program can drop
 * what only its caches still hold (daemon/cmd_run.c drops the executor's cached MODEL,
 * CLIP and VAE values of earlier runs), then unloads what became unused and tries again.
 * One hook per process; NULL removes it. A part loaded meanwhile by another thread may be
 * loaded twice; both copies work. */
typedef void (*lm_sd3_pressure_fn)(void *user);
void lm_sd3_models_set_pressure_hook(lm_sd3_pressure_fn fn, void *user);
/* Never load T5-XXL (default: LOOM_SKIP_T5 in the environment is "1"). */
void lm_sd3_models_set_skip_t5(bool skip);
bool lm_sd3_models_skip_t5(void);

/* The tokenizer directory for env: <models_dir>/tokenizers, else tokenizers/ beside the
 * models directory, else $LOOM_TOKENIZERS, else $LOOM_SHARED/tokenizers — the first that
 * holds clip/vocab.json. LM_ENOTFOUND naming every place tried otherwise. */
lm_status lm_sd3_tokenizer_dir(const lm_env *env, char *dir, size_t size, lm_error *err);

/* ---- objects on links ---- */

/* MODEL: the shared MMDiT plus per-value options. */
typedef struct {
    lm_sd3_part *mmdit;         /* owned reference */
    lm_model_sampling sampling; /* ModelSamplingSD3: shift, 3.0 by default */
    struct {                    /* SkipLayerGuidanceSD3; n_layers 0 = off */
        int layers[LM_SD3_SLG_MAX_LAYERS];
        int n_layers;
        double scale, start_percent, end_percent;
    } slg;
} lm_sd3_model;

/* CLIP: any encoder may be absent; none at all is allowed until something encodes. */
typedef struct {
    lm_sd3_part *clip_l, *clip_g, *t5; /* owned references, each may be NULL */
    char source[128];                  /* where it came from, for messages */
    /* The tokenizers that belong to these encoders (a diffusers folder with tokenizer/);
     * "" for the environment's tokenizer directory (lm_sd3_tokenizer_dir). */
    char tokenizer_dir[4096];
} lm_sd3_clip;

/* VAE: the shared VAE, or none (a checkpoint without one). */
typedef struct {
    lm_sd3_part *vae; /* owned reference, may be NULL */
    char source[128];
} lm_sd3_vae;

/* One CONDITIONING entry (ComfyUI's [cond, {"pooled_output", "start_percent", …}]). */
typedef struct {
    lm_tensor *context; /* [1, T, D] F32, owned */
    lm_tensor *pooled;  /* [1, P] F32, owned */
    double start_percent, end_percent;
    float strength;
} lm_sd3_cond_entry;

typedef struct {
    lm_sd3_cond_entry *entries;
    size_t n;
} lm_sd3_conditioning;

/* Constructors take ownership of the struct (freed also when the value cannot be made:
 * then NULL is returned). */
lm_value *lm_sd3_model_value(lm_sd3_model *m);
lm_value *lm_sd3_clip_value(lm_sd3_clip *c);
lm_value *lm_sd3_vae_value(lm_sd3_vae *v);
lm_value *lm_sd3_conditioning_value(lm_sd3_conditioning *c);

/* Frees the struct and releases its parts/tensors (NULL is a no-op). */
void lm_sd3_model_free(lm_sd3_model *m);
void lm_sd3_clip_free(lm_sd3_clip *c);
void lm_sd3_vae_free(lm_sd3_vae *v);
void lm_sd3_conditioning_free(lm_sd3_conditioning *c);

/* The object in a value (borrowed), or NULL when v is of another type. */
const lm_sd3_model *lm_sd3_model_of(const lm_value *v);
const lm_sd3_clip *lm_sd3_clip_of(const lm_value *v);
const lm_sd3_vae *lm_sd3_vae_of(const lm_value *v);
const lm_sd3_conditioning *lm_sd3_conditioning_of(const lm_value *v);

/* A new MODEL struct sharing m's MMDiT, with m's options (to change and wrap). */
lm_status lm_sd3_model_copy(lm_sd3_model **out, const lm_sd3_model *m, lm_error *err);
/* A new conditioning with n entries, all zero (entries to be filled). */
lm_status lm_sd3_conditioning_new(lm_sd3_conditioning **out, size_t n, lm_error *err);
/* Fills dst with views of src's tensors and its numbers. */
lm_status lm_sd3_cond_entry_copy(lm_sd3_cond_entry *dst, const lm_sd3_cond_entry *src,
                                 lm_error *err);

#endif
