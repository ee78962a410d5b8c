/* tests/tensor/test_cross.c — the cross-backend test: every op of op.h has a row here that
 * runs it on the CPU and, when a CUDA backend can be created, on the GPU with the same
 * inputs, and compares the two. Adding an op means adding a row (a test fails otherwise).
 * Without a GPU the rows still run on the CPU (their adapters are exercised) and the
 * comparison is skipped with a note. */
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/op.h"
#include "tests/tensor/tt.h"

#define XIN 4

typedef struct {
    lm_dtype dt;
    int ndim;
    int64_t shape[4];
    float lo, hi;
} xin_spec;

typedef lm_status (*xrun_fn)(lm_tensor **out, lm_backend *be, lm_tensor *const *in, lm_error *err);

typedef struct {
    lm_op op;
    xrun_fn run;
    double tol;
    int n_in;
    xin_spec in[XIN];
} xrow;

#define F32 LM_DTYPE_F32
#define IN(dt, nd, ...)                                                                            \
    {                                                                                              \
        dt, nd, { __VA_ARGS__ }, -1, 1                                                             \
    }

static lm_status x_fill(lm_tensor **o, lm_backend *be, lm_tensor *const *in, lm_error *e)
{
    LM_UNUSED(in);
    int64_t s[2] = { 3, 50 };
    lm_status st = lm_tensor_new(o, be, F32, 2, s, e);
    if (st == LM_OK && (st = lm_fill(*o, 0.25f, e)) != LM_OK) {
        lm_tensor_free(*o);
        *o = NULL;
    }
    return st;
}
#define ADAPT(name, call)                                                                          \
    static lm_status name(lm_tensor **o, lm_backend *be, lm_tensor *const *in, lm_error *e)        \
    {                                                                                              \
        LM_UNUSED(be);                                                                             \
        LM_UNUSED(in);                                                                             \
        return call;                                                                               \
    }
ADAPT(x_linear, lm_linear(o, in[0], in[1], in[2], e))
ADAPT(x_matmul, lm_matmul(o, in[0], in[1], true, e))
ADAPT(x_attention, lm_attention(o, in[0], in[1], in[2], in[3],
                                &(lm_attention_opts){ .heads = 2, .causal = true }, e))
ADAPT(x_conv, lm_conv2d(o, in[0], in[1], in[2],
                        &(lm_conv2d_opts){ .stride = 2, .pad_bottom = 1, .pad_right = 1 }, e))
ADAPT(x_group_norm, lm_group_norm(o, in[0], in[1], in[2], 4, 1e-6f, e))
ADAPT(x_layer_norm, lm_layer_norm(o, in[0], in[1], in[2], 1e-5f, e))
ADAPT(x_rms_norm, lm_rms_norm(o, in[0], in[1], 1e-6f, e))
ADAPT(x_softmax, lm_softmax(o, in[0], e))
ADAPT(x_gelu, lm_gelu(o, in[0], e))
ADAPT(x_gelu_tanh, lm_gelu_tanh(o, in[0], e))
ADAPT(x_quick_gelu, lm_quick_gelu(o, in[0], e))
ADAPT(x_silu, lm_silu(o, in[0], e))
ADAPT(x_exp, lm_exp(o, in[0], e))
ADAPT(x_add, lm_add(o, in[0], in[1], e))
ADAPT(x_sub, lm_sub(o, in[0], in[1], e))
ADAPT(x_mul, lm_mul(o, in[0], in[1], e))
ADAPT(x_scale, lm_scale(o, in[0], 1.5f, -0.25f, e))
ADAPT(x_clamp, lm_clamp(o, in[0], -0.5f, 0.5f, e))
ADAPT(x_modulate, lm_modulate(o, in[0], in[1], in[2], e))
ADAPT(x_gated_add, lm_gated_add(o, in[0], in[1], in[2], e))
ADAPT(x_concat, lm_concat(o, (const lm_tensor *const *)in, 3, 1, e))
ADAPT(x_pad, lm_pad2d(o, in[0], 1, 0, 2, 1, -1.0f, e))
ADAPT(x_upsample, lm_upsample_nearest2x(o, in[0], e))
ADAPT(x_patchify, lm_patchify(o, in[0], 2, e))
ADAPT(x_unpatchify, lm_unpatchify(o, in[0], 2, 3, 4, e))
ADAPT(x_embedding, lm_embedding(o, in[0], in[1], e))
ADAPT(x_timestep, lm_timestep_embedding(o, in[0], 256, 10000.0f, e))
ADAPT(x_t5_buckets, lm_t5_buckets(o, be, 40, 45, 32, 128, true, e))

static const xrow rows[] = {
    { LM_OP_FILL, x_fill, 0, 0, { { 0 } } },
    { LM_OP_LINEAR,
      x_linear,
      1e-4,
      3,
      { IN(F32, 2, 37, 96), IN(LM_DTYPE_F16, 2, 130, 96), IN(F32, 1, 130) } },
    { LM_OP_MATMUL, x_matmul, 1e-4, 2, { IN(F32, 3, 2, 33, 40), IN(F32, 3, 2, 29, 40) } },
    { LM_OP_ATTENTION,
      x_attention,
      1e-4,
      4,
      { IN(F32, 3, 1, 70, 128), IN(F32, 3, 1, 70, 128), IN(F32, 3, 1, 70, 128),
        IN(F32, 4, 1, 2, 70, 70) } },
    { LM_OP_CONV2D,
      x_conv,
      1e-4,
      3,
      { IN(F32, 4, 1, 8, 11, 9), IN(LM_DTYPE_BF16, 4, 6, 8, 3, 3), IN(F32, 1, 6) } },
    { LM_OP_GROUP_NORM,
      x_group_norm,
      1e-4,
      3,
      { IN(F32, 4, 2, 8, 5, 3), IN(F32, 1, 8), IN(F32, 1, 8) } },
    { LM_OP_LAYER_NORM,
      x_layer_norm,
      1e-4,
      3,
      { IN(F32, 2, 9, 77), IN(F32, 1, 77), IN(F32, 1, 77) } },
    { LM_OP_RMS_NORM, x_rms_norm, 1e-4, 2, { IN(F32, 2, 9, 80), IN(LM_DTYPE_F8_E4M3, 1, 80) } },
    { LM_OP_SOFTMAX, x_softmax, 1e-5, 1, { IN(F32, 2, 7, 301) } },
    { LM_OP_GELU, x_gelu, 1e-5, 1, { IN(F32, 1, 999) } },
    { LM_OP_GELU_TANH, x_gelu_tanh, 1e-5, 1, { IN(F32, 1, 999) } },
    { LM_OP_QUICK_GELU, x_quick_gelu, 1e-5, 1, { IN(F32, 1, 999) } },
    { LM_OP_SILU, x_silu, 1e-5, 1, { IN(F32, 1, 999) } },
    { LM_OP_EXP, x_exp, 1e-5, 1, { IN(F32, 1, 999) } },
    { LM_OP_ADD, x_add, 1e-6, 2, { IN(F32, 3, 2, 5, 7), IN(F32, 1, 7) } },
    { LM_OP_SUB, x_sub, 1e-6, 2, { IN(F32, 3, 2, 5, 7), IN(F32, 3, 2, 1, 7) } },
    { LM_OP_MUL, x_mul, 1e-6, 2, { IN(F32, 3, 2, 5, 7), IN(F32, 2, 5, 1) } },
    { LM_OP_SCALE, x_scale, 1e-6, 1, { IN(F32, 1, 100) } },
    { LM_OP_CLAMP, x_clamp, 0, 1, { IN(F32, 1, 100) } },
    { LM_OP_MODULATE,
      x_modulate,
      1e-6,
      3,
      { IN(F32, 3, 2, 9, 16), IN(F32, 2, 2, 16), IN(F32, 2, 2, 16) } },
    { LM_OP_GATED_ADD,
      x_gated_add,
      1e-6,
      3,
      { IN(F32, 3, 2, 9, 16), IN(F32, 2, 2, 16), IN(F32, 3, 2, 9, 16) } },
    { LM_OP_CONCAT,
      x_concat,
      0,
      3,
      { IN(F32, 3, 2, 3, 4), IN(F32, 3, 2, 1, 4), IN(F32, 3, 2, 6, 4) } },
    { LM_OP_PAD, x_pad, 0, 1, { IN(F32, 4, 1, 2, 5, 6) } },
    { LM_OP_UPSAMPLE_NEAREST2X, x_upsample, 0, 1, { IN(F32, 4, 1, 3, 5, 6) } },
    { LM_OP_PATCHIFY, x_patchify, 0, 1, { IN(F32, 4, 2, 16, 6, 8) } },
    { LM_OP_UNPATCHIFY, x_unpatchify, 0, 1, { IN(F32, 3, 2, 12, 64) } },
    { LM_OP_EMBEDDING,
      x_embedding,
      0,
      2,
      { IN(LM_DTYPE_F16, 2, 100, 24), { LM_DTYPE_I64, 2, { 2, 9 }, 0, 99 } } },
    { LM_OP_TIMESTEP_EMBEDDING, x_timestep, 1e-5, 1, { { F32, 1, { 3 }, 0, 1000 } } },
    { LM_OP_T5_BUCKETS, x_t5_buckets, 0, 0, { { 0 } } },
};

void test_tensor_cross__every_op_has_a_row(void)
{
    bool seen[LM_OP_COUNT] = { false };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        seen[rows[r].op] = true;
    for (int op = 0; op < LM_OP_COUNT; op++)
        if (!seen[op])
            test__fail(__FILE__, __LINE__, "op %s has no row in tests/tensor/test_cross.c",
                       lm_op_name((lm_op)op));
}

/* Runs row r on backend be (inputs copied there) and returns a host F32 result. */
static lm_tensor *run_row(const xrow *r, lm_backend *be, lm_tensor *const *cpu_in)
{
    lm_error err;
    lm_tensor *in[XIN] = { NULL }, *out = NULL, *host = NULL;
    bool ok = true;
    for (int i = 0; i < r->n_in && ok; i++)
        ok = lm_tensor_to(&in[i], cpu_in[i], be, &err) == LM_OK;
    if (ok && r->run(&out, be, in, &err) == LM_OK)
        ok = lm_tensor_to_f32_host(&host, out, &err) == LM_OK;
    else
        ok = false;
    if (!ok)
        test__fail(__FILE__, __LINE__, "op %s on %s: %s", lm_op_name(r->op), lm_backend_name(be),
                   err.msg);
    lm_tensor_free(out);
    for (int i = 0; i < XIN; i++)
        lm_tensor_free(in[i]);
    return host;
}

void test_tensor_cross__cpu_vs_cuda(void)
{
    lm_backend *cuda = NULL;
    lm_error err;
    if (lm_cuda_backend_new(&cuda, 0, &err) != LM_OK) {
        test_note("no CUDA backend (%s): rows run on the CPU only", err.msg);
        cuda = NULL;
    }
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        const xrow *row = &rows[r];
        lm_tensor *in[XIN] = { NULL };
        for (int i = 0; i < row->n_in; i++) {
            const xin_spec *s = &row->in[i];
            in[i] =
                tt_rand(NULL, s->dt, 1000 + r * 10 + (size_t)i, s->lo, s->hi, s->ndim, s->shape);
        }
        lm_tensor *cpu = run_row(row, lm_backend_cpu(), in);
        lm_tensor *dev = cuda && cpu ? run_row(row, cuda, in) : NULL;
        if (cpu && dev)
            tt_check(lm_op_name(row->op), dev, lm_tensor_data(cpu), lm_tensor_numel(cpu), row->tol,
                     row->tol);
        lm_tensor_free(cpu);
        lm_tensor_free(dev);
        for (int i = 0; i < XIN; i++)
            lm_tensor_free(in[i]);
    }
}
