/* daemon/golden_rng.c — `loom golden` for rng goldens: torch.manual_seed + torch.randn.
 *
 * A file is an rng golden when its `cases` metadata is an array of {tensor, seed, …}. Each
 * case names its tensor, the seed, and `draw`: how many randn calls of the case's `shape`
 * came before the one stored. Loom's generator (core/tensor/rng.h) replays them and the
 * result is compared under the "rng" group: bit-exact, else its fallback tolerance. */
#include "core/base/alloc.h"
#include "core/tensor/rng.h"
#include "daemon/golden_impl.h"

#include <math.h>
#include <string.h>

bool lm_golden__is_rng(const lm_golden_file *f)
{
    const cJSON *c;
    if (!cJSON_IsArray(f->cases) || cJSON_GetArraySize(f->cases) == 0)
        return false;
    cJSON_ArrayForEach(c, f->cases)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "tensor")) ||
            !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "seed")))
            return false;
    }
    return true;
}

/* Elements of a JSON shape array (1 for []); 0 when it is not one. */
static size_t shape_numel(const cJSON *shape)
{
    const cJSON *d;
    size_t n = 1;
    if (!cJSON_IsArray(shape))
        return 0;
    cJSON_ArrayForEach(d, shape)
    {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0)
            return 0;
        n *= (size_t)d->valuedouble;
    }
    return n;
}

static lm_status replay(const cJSON *c, const lm_safetensors_entry *e, lm_tensor **out,
                        lm_error *err)
{
    const cJSON *draw = cJSON_GetObjectItemCaseSensitive(c, "draw");
    int64_t shape[LM_MAX_DIMS];
    int ndim = e->ndim;
    if (ndim > LM_MAX_DIMS)
        return lm_errorf(err, LM_EUNSUPPORTED, "rank", "%s has %d dimensions (at most %d)", e->name,
                         ndim, LM_MAX_DIMS);
    memcpy(shape, e->shape, (size_t)ndim * sizeof(int64_t));
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, err);
    if (st != LM_OK)
        return st;
    lm_rng *rng = NULL;
    st = lm_rng_new(&rng, lm_golden__seed(cJSON_GetObjectItemCaseSensitive(c, "seed")->valuedouble),
                    err);
    size_t n = (size_t)lm_tensor_numel(*out);
    size_t before = shape_numel(cJSON_GetObjectItemCaseSensitive(c, "shape"));
    int earlier = cJSON_IsNumber(draw) ? draw->valueint : 0;
    float *scratch = earlier > 0 ? lm_malloc((before ? before : n) * sizeof(float) + 1) : NULL;
    if (st == LM_OK && earlier > 0 && !scratch)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for %zu values", before);
    for (int k = 0; st == LM_OK && k < earlier; k++)
        lm_rng_randn(rng, scratch, before ? before : n);
    if (st == LM_OK)
        lm_rng_randn(rng, lm_tensor_data(*out), n);
    lm_free(scratch);
    lm_rng_free(rng);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

void lm_golden__check_rng(lm_golden_file *f)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, f->cases)
    {
        lm_error err;
        lm_tensor *got = NULL;
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "tensor")->valuestring;
        const lm_safetensors_entry *e = lm_safetensors_find(f->st, name);
        if (!e) {
            lm_golden__report(f->run, name, "rng", -1, -1, false,
                              "the case names a tensor the file does not hold");
            continue;
        }
        if (replay(c, e, &got, &err) == LM_OK)
            lm_golden__check(f, name, "rng", got);
        else
            lm_golden__fail(f, name, "rng", &err);
        lm_tensor_free(got);
    }
}
