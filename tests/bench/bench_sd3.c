/* tests/bench/bench_sd3.c — `make bench`'s SD3 section: SD3 Medium at its real sizes, timed.
 *
 * Runs the model code (nodes/sd3) on a full-size SD3 Medium checkpoint with random weights
 * (tools/make_sd3_random.c; LOOM_BENCH_CKPT, default build/sd3m_random.safetensors, made
 * with build/make_sd3_random beside this program when missing) and reports, per figure:
 * seconds, the figure's FLOP count (counted analytically from the loaded configuration,
 * formulas in docs/bench.md), and the fraction of the sgemm-bound rate: (FLOPs / rate of a
 * bare cblas_sgemm measured in this run at a shape of that figure) / seconds. 1.0 would be a
 * model running every FLOP at OpenBLAS's speed; norms, activations, weight conversion and
 * attention's softmax are what keep it below. Peak RSS is getrusage's ru_maxrss, its high
 * mark reset (/proc/self/clear_refs) when the section starts, so earlier sections do not
 * count; it includes the touched pages of the mapped checkpoint. The cpu column is the
 * process's CPU time over wall time x threads during the figure: well under 100% means the
 * machine was busy with something else (or threads waited), and the figure is not to be
 * trusted.
 *
 * Figures, in order: CLIP-L + CLIP-G encode of one 77-token chunk each; one sampling step
 * at 256² (two MMDiT forwards as with CFG: one batch of 2, latent 32², context 154
 * tokens); the same step with --precision bf16 (lm_precision_set(LM_PRECISION_BF16), put
 * back after it), against the same f32 sgemm bound with the goal > 1, i.e. faster than f32
 * products could run it (skipped without AVX512-BF16); one VAE decode at 256²; the peak RSS
 * so far (goal: file size + 1 GB); then the step and the decode at 512². The small figures
 * take a warm-up run first (it also pages the weights in), the 512² ones run once.
 * LOOM_BENCH_SD3=0 skips the section;
 * LOOM_BENCH_QUICK=1 runs only the 256² figures, and only when the checkpoint exists. */
#include "core/base/thread.h"
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "core/tensor/precision.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/vae.h"
#include "nodes/sd3/weights.h"
#include "tests/tensor/ref/ref.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

void bench_sd3(void);

extern char **environ;

#define CKPT_DEFAULT   "build/sd3m_random.safetensors"
#define CONTEXT_TOKENS 154 /* 77 CLIP rows + 77 T5 rows: a normal SD3 prompt */
#define CKPT_NEED_GB   6.5 /* free disk space needed to make the checkpoint */

typedef struct {
    lm_safetensors *st;
    lm_clip *clip_l, *clip_g;
    lm_mmdit *mmdit;
    lm_vae *vae;
    uint64_t file_bytes;
} sd3_models;

static void print_err(const lm_error *err)
{
    char msg[600];
    lm_error_format(err, msg, sizeof(msg));
    printf("  SD3: %s\n", msg);
}

static double peak_rss_gb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0 * 1e-9; /* Linux: kilobytes */
}

/* User + system CPU seconds of the whole process so far. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* Resets the process's RSS high mark to the current RSS (Linux >= 4.0); false if refused. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ---- the checkpoint ---- */

/* Runs make_sd3_random (beside this program) to write `path`; false with a message. */
static bool make_checkpoint(const char *path)
{
    char exe[PATH_MAX], tool[PATH_MAX + 32], dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(tool, sizeof(tool), "%s/make_sd3_random", slash ? exe : ".");
    if (access(tool, X_OK) != 0) {
        printf("  SD3: skipped: %s is missing and so is %s; run `make bench` (it builds the "
               "tool) or set LOOM_BENCH_CKPT\n",
               path, tool);
        return false;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    struct statvfs vs;
    if (statvfs(dir, &vs) == 0 && (double)vs.f_bavail * (double)vs.f_frsize < CKPT_NEED_GB * 1e9) {
        printf("  SD3: skipped: %s is missing and %s has less than %.1f GB free to make it\n", path,
               dir, CKPT_NEED_GB);
        return false;
    }
    printf("  SD3: %s is missing: creating it with %s (random weights, about 6 GB)\n", path, tool);
    fflush(stdout);
    char *argv[] = { tool, (char *)path, NULL };
    pid_t pid;
    int status = 0;
    if (posix_spawn(&pid, tool, NULL, NULL, argv, environ) != 0 ||
        waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("  SD3: skipped: %s could not make %s (see its message above)\n", tool, path);
        return false;
    }
    return true;
}

static void models_free(sd3_models *m)
{
    lm_clip_free(m->clip_l);
    lm_clip_free(m->clip_g);
    lm_mmdit_free(m->mmdit);
    lm_vae_free(m->vae);
    lm_safetensors_close(m->st);
    memset(m, 0, sizeof(*m));
}

static bool models_load(sd3_models *m, const char *path)
{
    lm_error err;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    memset(m, 0, sizeof(*m));
    lm_status st = lm_safetensors_open(&m->st, path, &err);
    if (st == LM_OK) {
        m->file_bytes = lm_safetensors_file_bytes(m->st);
        lm_sd3_detect(m->st, found, w);
        st = lm_mmdit_load(&m->mmdit, &w[LM_SD3_MMDIT], &err);
    }
    if (st == LM_OK)
        st = lm_vae_load(&m->vae, &w[LM_SD3_VAE], &err);
    if (st == LM_OK)
        st = lm_clip_load(&m->clip_l, &w[LM_SD3_CLIP_L], LM_CLIP_KIND_L, &err);
    if (st == LM_OK)
        st = lm_clip_load(&m->clip_g, &w[LM_SD3_CLIP_G], LM_CLIP_KIND_G, &err);
    if (st != LM_OK) {
        print_err(&err);
        models_free(m);
        return false;
    }
    char desc[256];
    lm_mmdit_config_describe(lm_mmdit_config_of(m->mmdit), desc, sizeof(desc));
    printf("  MMDiT: %s\n", desc);
    return true;
}

/* ---- FLOP counts (docs/bench.md) ---- */

static double lin(double m, double k, double n)
{
    return 2.0 * m * k * n;
}

static double conv(double co, double ci, double k, double px)
{
    return 2.0 * co * ci * k * k * px;
}

/* One MMDiT forward: batch b, n image tokens, t context tokens. */
static double mmdit_flops(const lm_mmdit_config *c, double b, double n, double t)
{
    double h = c->hidden, pp = (double)c->patch * c->patch;
    double f = lin(b * n, c->in_channels * pp, h) + lin(b, c->freq_dim, h) + lin(b, h, h) +
               lin(b, c->adm_in, h) + lin(b, h, h) + lin(b * t, c->context_in, h);
    for (int i = 0; i < c->depth; i++) {
        bool pre = c->context_pre_only && i == c->depth - 1;
        double ctx_rows = pre ? 0 : t, mods = c->x_self_attn[i] ? 9 : 6;
        f += lin(b, h, mods * h) + lin(b, h, (pre ? 2 : 6) * h); // adaLN
        f += lin(b * (n + t), h, 3 * h);                         // qkv
        f += 4.0 * b * (n + t) * (n + t) * h;                    // joint attention
        f += lin(b * (n + ctx_rows), h, h);                      // proj
        f += lin(b * (n + ctx_rows), h, c->mlp_hidden) * 2;      // fc1 + fc2
        if (c->x_self_attn[i])                                   // MMDiT-X attn2
            f += lin(b * n, h, 3 * h) + 4.0 * b * n * n * h + lin(b * n, h, h);
    }
    return f + lin(b, h, 2 * h) + lin(b * n, h, pp * c->out_channels);
}

static double resblock_flops(double ci, double co, double px)
{
    return conv(co, ci, 3, px) + conv(co, co, 3, px) + (ci != co ? conv(co, ci, 1, px) : 0);
}

/* One VAE decode of a latent h x w (batch 1). */
static double vae_decode_flops(const lm_vae_config *cfg, double h, double w)
{
    const lm_vae_half *d = &cfg->decoder;
    double px = h * w, c = d->mid_width;
    double f = conv(d->stem_width, d->in_channels, 3, px);
    f += 2 * resblock_flops(c, c, px);
    if (d->mid_attn)
        f += 4 * conv(c, c, 1, px) + 4.0 * px * px * c;
    for (int i = d->levels - 1; i >= 0; i--) {
        for (int j = 0; j < d->blocks[i]; j++, c = d->width[i])
            f += resblock_flops(c, d->width[i], px);
        if (d->resample[i]) {
            px *= 4;
            f += conv(c, c, 3, px);
        }
    }
    return f + conv(d->out_channels, c, 3, px);
}

/* One 77-token chunk through every layer, plus the projection when SD3 uses it. */
static double clip_flops(const lm_clip_config *c)
{
    double t = c->positions, w = c->width;
    double layer = lin(t, w, 3 * w) + 4.0 * t * t * w + lin(t, w, w) + 2 * lin(t, w, c->ff);
    return c->layers * layer + (c->pooled_projected ? lin(1, w, c->proj_dim) : 0);
}

/* ---- the baseline: cblas_sgemm at a figure's shape ---- */

/* GFLOP/s of C[m,n] = A[m,k]·B[n,k]ᵀ (a linear layer's product) with OpenBLAS threaded as
 * wide as the pool, best of a few runs (~0.5 s). 0 when out of memory. */
static double sgemm_rate(int m, int k, int n)
{
    float *a = malloc((size_t)m * (size_t)k * sizeof(float));
    float *b = malloc((size_t)n * (size_t)k * sizeof(float));
    float *c = malloc((size_t)m * (size_t)n * sizeof(float));
    double best = 0;
    if (a && b && c) {
        ref_fill_uniform(a, (int64_t)m * k, 21, -1, 1);
        ref_fill_uniform(b, (int64_t)n * k, 22, -0.05f, 0.05f);
        openblas_set_num_threads(lm_pool_threads(lm_pool_default()));
        double spent = 0;
        for (int rep = 0; rep < 10 && (rep < 2 || spent < 0.5); rep++) {
            double t0 = lm_time_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c,
                        n);
            double dt = lm_time_now() - t0;
            spent += dt;
            best = rep == 0 || dt < best ? dt : best;
        }
        openblas_set_num_threads(1);
        best = best > 0 ? lin(m, k, n) * 1e-9 / best : 0;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* ---- figures ---- */

typedef lm_status (*run_fn)(const sd3_models *m, const void *arg, lm_error *err);

typedef struct {
    const char *name;
    double gflop;
    int m, k, n;  /* the baseline's shape: [m, k]·[n, k]ᵀ */
    double goal;  /* fraction goal; 0 = none */
    bool goal_gt; /* the goal is fraction > goal (else >=) */
} figure;

static void print_head(void)
{
    printf("  %-40s %8s %5s %8s %8s %8s %8s  %s\n", "figure", "seconds", "cpu", "GFLOP", "GFLOP/s",
           "sgemm", "fraction", "goal");
}

/* Runs fn warmup + 1 times and reports the last run against the faster of two baselines
 * measured just before and just after it (on a busy machine the slower one is noise). false
 * when it failed. */
static bool run_figure(const figure *fig, run_fn fn, const sd3_models *m, const void *arg,
                       int warmup)
{
    lm_error err;
    double t = 0, cpu = 0, rate = sgemm_rate(fig->m, fig->k, fig->n);
    for (int i = 0; i <= warmup; i++) {
        double t0 = lm_time_now(), c0 = cpu_seconds();
        if (fn(m, arg, &err) != LM_OK) {
            printf("  %-40s failed\n", fig->name);
            print_err(&err);
            return false;
        }
        t = lm_time_now() - t0;
        cpu = cpu_seconds() - c0;
    }
    double after = sgemm_rate(fig->m, fig->k, fig->n);
    rate = after > rate ? after : rate;
    double frac = fig->gflop / rate / t;
    char goal[48] = "-";
    bool met = fig->goal_gt ? frac > fig->goal : frac >= fig->goal;
    if (fig->goal > 0)
        snprintf(goal, sizeof(goal), "%s %.2f %s", fig->goal_gt ? "> " : ">=", fig->goal,
                 met ? "ok" : "MISSED");
    printf("  %-40s %8.2f %4.0f%% %8.1f %8.1f %8.1f %8.3f  %s  (sgemm %dx%dx%d)\n", fig->name, t,
           100.0 * cpu / (t * lm_pool_threads(lm_pool_default())), fig->gflop, fig->gflop / t, rate,
           frac, goal, fig->m, fig->k, fig->n);
    fflush(stdout);
    return true;
}

/* A tensor of uniform(-1, 1) values. */
static lm_tensor *rand_input(uint64_t seed, int ndim, const int64_t *shape)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, &err) != LM_OK)
        return NULL;
    ref_fill_uniform(lm_tensor_data(t), lm_tensor_numel(t), seed, -1, 1);
    return t;
}

/* false (with a line) when t holds a NaN or an infinity: the random weights are scaled so
 * that a correct forward stays finite. */
static bool finite_or_warn(const char *what, const lm_tensor *t)
{
    const float *p = lm_tensor_data(t);
    for (int64_t i = 0, n = lm_tensor_numel(t); i < n; i++)
        if (!isfinite(p[i])) {
            printf("  SD3: %s output holds a non-finite value at %lld\n", what, (long long)i);
            return false;
        }
    return true;
}

static lm_status run_clip(const sd3_models *m, const void *arg, lm_error *err)
{
    LM_UNUSED(arg);
    int32_t ids_l[77], ids_g[77];
    for (int i = 0; i < 77; i++) { /* BOS, 20 words, EOS, then each CLIP's pad */
        ids_l[i] = i == 0 ? LM_CLIP_BOS_ID : i <= 20 ? 320 + 37 * i : LM_CLIP_EOS_ID;
        ids_g[i] = i == 0 ? LM_CLIP_BOS_ID : i <= 20 ? 320 + 37 * i : i == 21 ? LM_CLIP_EOS_ID : 0;
    }
    lm_tensor *pen_l = NULL, *pool_l = NULL, *pen_g = NULL, *pool_g = NULL;
    lm_status st = lm_clip_encode(m->clip_l, ids_l, 77, NULL, &pen_l, &pool_l, err);
    if (st == LM_OK)
        st = lm_clip_encode(m->clip_g, ids_g, 77, NULL, &pen_g, &pool_g, err);
    if (st == LM_OK)
        finite_or_warn("CLIP-G", pen_g);
    lm_tensor_free(pen_l);
    lm_tensor_free(pool_l);
    lm_tensor_free(pen_g);
    lm_tensor_free(pool_g);
    return st;
}

/* One sampling step with CFG: x [2, 16, lat, lat], one forward of batch 2. */
static lm_status run_step(const sd3_models *m, const void *arg, lm_error *err)
{
    const lm_mmdit_config *c = lm_mmdit_config_of(m->mmdit);
    int64_t lat = *(const int *)arg;
    int64_t xs[4] = { 2, c->in_channels, lat, lat }, ss[1] = { 2 };
    int64_t cs[3] = { 2, CONTEXT_TOKENS, c->context_in }, ys[2] = { 2, c->adm_in };
    lm_tensor *x = rand_input(31, 4, xs), *sigma = rand_input(32, 1, ss);
    lm_tensor *ctx = rand_input(33, 3, cs), *y = rand_input(34, 2, ys), *out = NULL;
    lm_status st = LM_ENOMEM;
    if (x && sigma && ctx && y) {
        float *s = lm_tensor_data(sigma);
        s[0] = s[1] = 0.8f;
        st = lm_mmdit_forward(m->mmdit, x, sigma, ctx, y, NULL, &out, err);
    } else {
        lm_errorf(err, st, "out_of_memory", "bench: out of memory for the MMDiT inputs");
    }
    if (st == LM_OK)
        finite_or_warn("MMDiT", out);
    lm_tensor_free(x);
    lm_tensor_free(sigma);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    lm_tensor_free(out);
    return st;
}

/* The same step with --precision bf16 (lm_linear in bf16 with f32 accumulation); the
 * precision is restored afterwards. */
static lm_status run_step_bf16(const sd3_models *m, const void *arg, lm_error *err)
{
    lm_precision saved = lm_precision_get();
    lm_precision_set(LM_PRECISION_BF16);
    lm_status st = run_step(m, arg, err);
    lm_precision_set(saved);
    return st;
}

static lm_status run_decode(const sd3_models *m, const void *arg, lm_error *err)
{
    int64_t lat = *(const int *)arg;
    int64_t ls[4] = { 1, lm_vae_config_of(m->vae)->z_channels, lat, lat };
    lm_tensor *latent = rand_input(35, 4, ls), *image = NULL;
    if (!latent)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "bench: out of memory for the latent");
    lm_status st = lm_vae_decode(m->vae, latent, &image, NULL, NULL, err);
    if (st == LM_OK)
        finite_or_warn("VAE", image);
    lm_tensor_free(latent);
    lm_tensor_free(image);
    return st;
}

/* The step and the decode at image size px x px. */
static bool bench_size(const sd3_models *m, int px, double goal_step, int warmup)
{
    const lm_mmdit_config *mc = lm_mmdit_config_of(m->mmdit);
    const lm_vae_config *vc = lm_vae_config_of(m->vae);
    int lat = px / vc->factor, tok = (lat / mc->patch) * (lat / mc->patch);
    int rows = 2 * (tok + CONTEXT_TOKENS), w1 = vc->decoder.width[1];
    int vpx = (px / 2) * (px / 2); /* the decoder's level-1 convolutions */
    char name[64];
    snprintf(name, sizeof(name), "step %dx%d (MMDiT B=2, %d+%d tok)", px, px, tok, CONTEXT_TOKENS);
    figure step = { name,       mmdit_flops(mc, 2, tok, CONTEXT_TOKENS) * 1e-9,
                    rows,       mc->hidden,
                    mc->hidden, goal_step,
                    false };
    if (!run_figure(&step, run_step, m, &lat, warmup))
        return false;
    if (px == 256 && !lm_precision_native(LM_PRECISION_BF16)) {
        printf("  %-40s skipped: this CPU lacks AVX512-BF16\n", "step 256x256, --precision bf16");
    } else if (px == 256) { /* goal: faster than the f32 sgemm bound */
        figure bf = step;
        bf.name = "step 256x256, --precision bf16";
        bf.goal = 1.0;
        bf.goal_gt = true;
        if (!run_figure(&bf, run_step_bf16, m, &lat, warmup))
            return false;
    }
    snprintf(name, sizeof(name), "VAE decode %dx%d (latent %dx%d)", px, px, lat, lat);
    figure dec = { name, vae_decode_flops(vc, lat, lat) * 1e-9, w1, 9 * w1, vpx, 0.6, false };
    return run_figure(&dec, run_decode, m, &lat, warmup);
}

static void print_rss(const char *when, const sd3_models *m, bool with_goal)
{
    double rss = peak_rss_gb(), file = (double)m->file_bytes * 1e-9;
    printf("  %-40s %8.2f GB = file %.2f GB %+.2f GB", when, rss, file, rss - file);
    if (with_goal)
        printf("   goal <= file + 1 GB %s", rss <= file + 1.0 ? "ok" : "MISSED");
    printf("\n");
}

void bench_sd3(void)
{
    const char *env = getenv("LOOM_BENCH_SD3"), *q = getenv("LOOM_BENCH_QUICK");
    const char *path = getenv("LOOM_BENCH_CKPT");
    bool quick = q && q[0] == '1';
    struct stat sb;
    path = path && path[0] ? path : CKPT_DEFAULT;
    printf("\nSD3 Medium at real sizes, random weights (LOOM_BENCH_SD3=0 skips)\n");
    if (env && strcmp(env, "0") == 0) {
        printf("  SD3: skipped (LOOM_BENCH_SD3=0)\n");
        return;
    }
    if (stat(path, &sb) != 0 && (quick || !make_checkpoint(path))) {
        if (quick)
            printf("  SD3: skipped: %s is missing (LOOM_BENCH_QUICK=1 does not make it)\n", path);
        return;
    }
    lm_backend_trim(lm_backend_cpu()); /* earlier sections' cached buffers */
    bool reset = reset_peak_rss();
    sd3_models m;
    if (!models_load(&m, path))
        return;
    printf("  checkpoint %s, %.2f GB; %d threads; peak RSS %s\n", path, (double)m.file_bytes * 1e-9,
           lm_pool_threads(lm_pool_default()),
           reset ? "counted from here" : "includes earlier sections (clear_refs refused)");
    print_head();
    const lm_clip_config *g = lm_clip_config_of(m.clip_g);
    double clip_gf = (clip_flops(lm_clip_config_of(m.clip_l)) + clip_flops(g)) * 1e-9;
    figure clip = {
        "CLIP-L + CLIP-G encode, 77 tok each", clip_gf, g->positions, g->width, g->width, 0, false
    };
    bool ok = run_figure(&clip, run_clip, &m, NULL, 1) && bench_size(&m, 256, 0.85, 1);
    if (ok)
        print_rss("peak RSS at 256x256", &m, true);
    if (ok && !quick && bench_size(&m, 512, 0.7, 0))
        print_rss("peak RSS at 512x512", &m, false);
    models_free(&m);
}
