/* nodes/loaders/clip_loaders.c — TripleCLIPLoader, DualCLIPLoader and CLIPLoader: text
 * encoder files from models/text_encoders (or models/clip) as one CLIP value.
 *
 * Which encoder a file is comes from its content, as in ComfyUI: T5 by its tensors; a
 * standalone CLIP file (text_model.*) by its width (768 is CLIP-L, 1280 CLIP-G); two CLIP
 * files of other widths (tiny test models) by width order (CLIP-G is the wider); one alone
 * by its position (first input CLIP-L, second CLIP-G). An all-in-one checkpoint given here
 * contributes every encoder it holds. Encoders not given stay absent, as ComfyUI's SD3 text
 * model has them: the conditioning gets zeros in their place (nodes/sd3/conditioner.h).
 * Only the "sd3" type is supported; the others name other model families. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/models.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define MAX_FILES 3

static lm_status list_text_encoders(const lm_env *env, lm_strlist *out, lm_error *err)
{
    return lm_sd3_models_list(env, LM_SD3_FOLDER_TEXT_ENCODERS, out, err);
}

typedef struct {
    const char *name, *input;
    char path[PATH_MAX];
    lm_sd3_file_info info;
    int clip_kind; /* -1 undecided, else LM_SD3_PART_CLIP_L / _G */
} clip_file;

typedef struct {
    lm_sd3_clip *c;
    lm_backend *be;           /* where the encoders compute (NULL: the CPU) */
    const char *slot_name[3]; /* the file that filled CLIP-L, CLIP-G, T5 */
} assembly;

static lm_status fill_slot(assembly *a, int slot, const clip_file *f, lm_sd3_part_kind kind,
                           lm_error *err)
{
    static const char *const slot_names[3] = { "CLIP-L", "CLIP-G", "T5-XXL" };
    lm_sd3_part **dst = slot == 0 ? &a->c->clip_l : slot == 1 ? &a->c->clip_g : &a->c->t5;
    if (a->slot_name[slot]) {
        lm_errorf(err, LM_EINVAL, "duplicate_text_encoder", "%.100s and %.100s are both %s",
                  a->slot_name[slot], f->name, slot_names[slot]);
        lm_error_hint(err, "give one CLIP-L, one CLIP-G and one T5 file");
        lm_error_at_node(err, NULL, NULL, f->input);
        return LM_EINVAL;
    }
    a->slot_name[slot] = f->name;
    if (slot == 2 && lm_sd3_models_skip_t5())
        return LM_OK; /* LOOM_SKIP_T5: the T5 is known but never loaded */
    lm_status st = lm_sd3_models_acquire(dst, f->path, kind, a->be, err);
    if (st != LM_OK)
        lm_error_at_node(err, NULL, NULL, f->input);
    return st;
}

/* Decides the kind of every standalone CLIP file (see the file top). */
static void decide_clip_kinds(clip_file *files, int n)
{
    int unknown[MAX_FILES], n_unknown = 0;
    for (int i = 0; i < n; i++) {
        clip_file *f = &files[i];
        f->clip_kind = -1;
        if (!f->info.clip_standalone)
            continue;
        if (f->info.clip_width == 768)
            f->clip_kind = LM_SD3_PART_CLIP_L;
        else if (f->info.clip_width == 1280)
            f->clip_kind = LM_SD3_PART_CLIP_G;
        else
            unknown[n_unknown++] = i;
    }
    if (n_unknown == 2) {
        clip_file *a = &files[unknown[0]], *b = &files[unknown[1]];
        bool a_wider = a->info.clip_width > b->info.clip_width;
        a->clip_kind = a_wider ? LM_SD3_PART_CLIP_G : LM_SD3_PART_CLIP_L;
        b->clip_kind = a_wider ? LM_SD3_PART_CLIP_L : LM_SD3_PART_CLIP_G;
        return;
    }
    for (int k = 0; k < n_unknown; k++) {
        int i = unknown[k];
        files[i].clip_kind = i == 1 ? LM_SD3_PART_CLIP_G : LM_SD3_PART_CLIP_L;
    }
}

static lm_status add_file(assembly *a, const clip_file *f, lm_error *err)
{
    const lm_sd3_file_info *in = &f->info;
    lm_status st = LM_OK;
    bool any = false;
    if (in->clip_standalone) {
        any = true;
        st = fill_slot(a, f->clip_kind == LM_SD3_PART_CLIP_G, f, (lm_sd3_part_kind)f->clip_kind,
                       err);
    } else {
        if (in->has[LM_SD3_CLIP_L]) {
            any = true;
            st = fill_slot(a, 0, f, LM_SD3_PART_CLIP_L, err);
        }
        if (st == LM_OK && in->has[LM_SD3_CLIP_G]) {
            any = true;
            st = fill_slot(a, 1, f, LM_SD3_PART_CLIP_G, err);
        }
    }
    if (st == LM_OK && in->has[LM_SD3_T5XXL]) {
        any = true;
        st = fill_slot(a, 2, f, LM_SD3_PART_T5, err);
    }
    if (st == LM_OK && !any) {
        lm_errorf(err, LM_EINVAL, "not_a_text_encoder",
                  "%.100s holds no CLIP-L, CLIP-G or T5 weights", f->name);
        lm_error_hint(err, "choose a text encoder file (clip_l, clip_g, t5xxl)");
        lm_error_at_node(err, NULL, NULL, f->input);
        return LM_EINVAL;
    }
    return st;
}

/* One CLIP value from n text encoder files given by name; device is the loaders' optional
 * input ("cpu" keeps the encoders on the CPU, as in ComfyUI; else the job's device). */
static lm_status load_clip(lm_ctx *ctx, clip_file *files, int n, const lm_value *device,
                           lm_value **out, lm_error *err)
{
    const char *dev = device ? lm_value_as_string(device) : NULL;
    assembly a = { .c = lm_calloc(1, sizeof(*a.c)),
                   .be = dev && strcmp(dev, "cpu") == 0 ? lm_backend_cpu()
                                                        : lm_ctx_env(ctx)->backend };
    if (!a.c)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making a CLIP");
    lm_status st = LM_OK;
    for (int i = 0; st == LM_OK && i < n; i++) {
        st = lm_sd3_models_path(lm_ctx_env(ctx), LM_SD3_FOLDER_TEXT_ENCODERS, files[i].name,
                                files[i].input, files[i].path, sizeof(files[i].path), err);
        if (st == LM_OK)
            st = lm_sd3_models_probe(files[i].path, &files[i].info, err);
    }
    if (st == LM_OK)
        decide_clip_kinds(files, n);
    for (int i = 0; st == LM_OK && i < n; i++)
        st = add_file(&a, &files[i], err);
    if (st != LM_OK) {
        lm_sd3_clip_free(a.c);
        return st;
    }
    snprintf(a.c->source, sizeof(a.c->source), "%.100s%s", files[0].name, n > 1 ? " + …" : "");
    *out = lm_sd3_clip_value(a.c);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* check(): the type input must be "sd3" (when it is a literal). */
static lm_status check_type(lm_value *const *in, int type_index, lm_error *err)
{
    const char *type = in[type_index] ? lm_value_as_string(in[type_index]) : NULL;
    if (!type || strcmp(type, "sd3") == 0)
        return LM_OK;
    lm_errorf(err, LM_EUNSUPPORTED, "custom_validation_failed",
              "type \"%.40s\" is not supported: Loom runs SD3 / SD3.5 models only", type);
    lm_error_hint(err, "set type to sd3");
    lm_error_at_node(err, NULL, NULL, "type");
    return LM_EUNSUPPORTED;
}

static const lm_output_def clip_out[1] = { { "CLIP", LM_TYPE_CLIP, NULL } };
static const char *const devices[] = { "default", "cpu", NULL };
#define NAME_HELP "A text encoder file in models/text_encoders (or clip)."
#define DEVICE_HELP                                                                                \
    "cpu keeps these encoders on the CPU; default puts them on the job's device when the "         \
    "memory policy lets it."

/* ---- TripleCLIPLoader ---- */

enum { TR_NAME1, TR_NAME2, TR_NAME3, TR_COUNT };

static const lm_input_def triple_in[TR_COUNT] = {
    [TR_NAME1] = { "clip_name1", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                   .help = "CLIP-L, e.g. clip_l.safetensors." },
    [TR_NAME2] = { "clip_name2", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                   .help = "CLIP-G, e.g. clip_g.safetensors." },
    [TR_NAME3] = { "clip_name3", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                   .help = "T5-XXL, e.g. t5xxl_fp16.safetensors." },
};

static lm_status triple_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    clip_file files[3] = {
        { .name = lm_value_as_string(in[TR_NAME1]), .input = "clip_name1" },
        { .name = lm_value_as_string(in[TR_NAME2]), .input = "clip_name2" },
        { .name = lm_value_as_string(in[TR_NAME3]), .input = "clip_name3" },
    };
    return load_clip(ctx, files, 3, NULL, &out[0], err);
}

const lm_node_def lm_node_triple_clip_loader = {
    .name = "TripleCLIPLoader",
    .display_name = "TripleCLIPLoader",
    .category = "advanced/loaders",
    .description = "Loads SD3's three text encoders from separate files: CLIP-L, CLIP-G and "
                   "T5-XXL.",
    .inputs = triple_in,
    .n_inputs = TR_COUNT,
    .outputs = clip_out,
    .n_outputs = 1,
    .run = triple_run,
};

/* ---- DualCLIPLoader ---- */

enum { DU_NAME1, DU_NAME2, DU_TYPE, DU_DEVICE, DU_COUNT };

static const char *const dual_types[] = { "sdxl", "sd3", "flux", "hunyuan_video", "hidream", NULL };

static const lm_input_def dual_in[DU_COUNT] = {
    [DU_NAME1] = { "clip_name1", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                   .help = NAME_HELP },
    [DU_NAME2] = { "clip_name2", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                   .help = NAME_HELP },
    [DU_TYPE] = { "type", LM_TYPE_STRING, .choices = dual_types,
                  .help = "The model family; Loom supports sd3 (the encoders not given are "
                          "absent)." },
    [DU_DEVICE] = { "device", LM_TYPE_STRING, .choices = devices, .flags = LM_INPUT_OPTIONAL,
                    .help = DEVICE_HELP },
};

static lm_status dual_check(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                            lm_error *err)
{
    (void)def;
    (void)env;
    return check_type(in, DU_TYPE, err);
}

static lm_status dual_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    lm_status st = check_type(in, DU_TYPE, err);
    clip_file files[2] = {
        { .name = lm_value_as_string(in[DU_NAME1]), .input = "clip_name1" },
        { .name = lm_value_as_string(in[DU_NAME2]), .input = "clip_name2" },
    };
    return st != LM_OK ? st : load_clip(ctx, files, 2, in[DU_DEVICE], &out[0], err);
}

const lm_node_def lm_node_dual_clip_loader = {
    .name = "DualCLIPLoader",
    .display_name = "DualCLIPLoader",
    .category = "advanced/loaders",
    .description = "Loads two text encoder files as one CLIP (type sd3: any two of CLIP-L, "
                   "CLIP-G and T5-XXL).",
    .inputs = dual_in,
    .n_inputs = DU_COUNT,
    .outputs = clip_out,
    .n_outputs = 1,
    .run = dual_run,
    .check = dual_check,
};

/* ---- CLIPLoader ---- */

enum { CL_NAME, CL_TYPE, CL_DEVICE, CL_COUNT };

static const char *const single_types[] = {
    "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi",  "ltxv", "pixart",
    "cosmos",           "lumina2",        "wan", "hidream",      "chroma", "ace",  "omnigen2",
    "qwen_image",       "hunyuan_image",  NULL
};

static const lm_input_def single_in[CL_COUNT] = {
    [CL_NAME] = { "clip_name", LM_TYPE_STRING, .choices_fn = list_text_encoders,
                  .help = NAME_HELP },
    [CL_TYPE] = { "type", LM_TYPE_STRING, .choices = single_types,
                  .help = "The model family; Loom supports sd3 (the other two encoders are "
                          "absent)." },
    [CL_DEVICE] = { "device", LM_TYPE_STRING, .choices = devices, .flags = LM_INPUT_OPTIONAL,
                    .help = DEVICE_HELP },
};

static lm_status single_check(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                              lm_error *err)
{
    (void)def;
    (void)env;
    return check_type(in, CL_TYPE, err);
}

static lm_status single_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    lm_status st = check_type(in, CL_TYPE, err);
    clip_file files[1] = { { .name = lm_value_as_string(in[CL_NAME]), .input = "clip_name" } };
    return st != LM_OK ? st : load_clip(ctx, files, 1, in[CL_DEVICE], &out[0], err);
}

const lm_node_def lm_node_clip_loader = {
    .name = "CLIPLoader",
    .display_name = "Load CLIP",
    .category = "advanced/loaders",
    .description = "Loads one text encoder file as a CLIP (type sd3: CLIP-L, CLIP-G or "
                   "T5-XXL alone).",
    .inputs = single_in,
    .n_inputs = CL_COUNT,
    .outputs = clip_out,
    .n_outputs = 1,
    .run = single_run,
    .check = single_check,
};
