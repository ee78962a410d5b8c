/* nodes/sd3/vae_tiled.c — decode and encode in overlapping tiles, for images too large to
 * run whole.
 *
 * Tiles are planned in latent pixels, one axis at a time: a tile of t = tile_size / f latent
 * pixels, n = ceil((L - ov) / (t - ov)) tiles spread evenly so the first starts at 0 and
 * the last ends at L (every tile has the full length, neighbours overlap by >= ov). Each
 * tile runs through the ordinary encoder or decoder, so GroupNorm statistics and the mid
 * attention see only that tile: the result differs from the untiled one, mostly inside the
 * overlaps, which is why they are blended. Blending is linear feathering: along an axis a
 * tile's weight rises from 0 to 1 over `ov` (in output pixels) from each side that has a
 * neighbour, and stays 1 at the image border. Weights are normalised per axis (divided by
 * the sum over the tiles covering that coordinate); the 2-D weight is the product of the two
 * axes' weights, which then sums to exactly 1 at every pixel, so tiles are accumulated into
 * the output with no second pass.
 *
 * Memory: one tile's activations plus the output (and, for decode, the whole raw latent,
 * which is 1/(f*f*3/16) of the image), whatever the image size. The decoder's output tiles
 * are in image pixels (feathered over `overlap` pixels); the encoder's in latent pixels
 * (over overlap / f).
 *
 * Devices: the input is moved to the VAE's backend once, the blend masks are computed on
 * the host and moved there per tile, the output is accumulated there and brought back to
 * the host whole at the end (vae_impl.h). */
#include "core/base/alloc.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/vae_impl.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    int64_t total; /* latent pixels along the axis */
    int64_t tile;  /* latent pixels per tile (<= total) */
    int64_t ov;    /* planned overlap in latent pixels */
    int n;         /* tiles */
} axis;

static axis plan_axis(int64_t total, int64_t tile, int64_t ov)
{
    axis a = { .total = total, .tile = LM_MIN(tile, total), .ov = ov, .n = 1 };
    if (a.tile < total)
        a.n = (int)((total - ov + (a.tile - ov) - 1) / (a.tile - ov));
    return a;
}

static int64_t axis_start(const axis *a, int i)
{
    return a->n == 1 ? 0 : (int64_t)i * (a->total - a->tile) / (a->n - 1);
}

/* Unnormalised weight of tile i at local position x, in units of 1/u latent pixel. */
static float ramp(const axis *a, int i, int64_t x, int u)
{
    float r = (float)(a->ov * u), w = 1.0f;
    if (r <= 0)
        return w;
    if (i > 0)
        w = fminf(w, ((float)x + 0.5f) / r);
    if (i < a->n - 1)
        w = fminf(w, ((float)(a->tile * u - x) - 0.5f) / r);
    return w;
}

/* Weight of tile i at local x divided by the sum over every tile covering that place. */
static float weight(const axis *a, int i, int64_t x, int u)
{
    int64_t g = axis_start(a, i) * u + x;
    float sum = 0;
    for (int k = 0; k < a->n; k++) {
        int64_t lo = axis_start(a, k) * u;
        if (g >= lo && g < lo + a->tile * u)
            sum += ramp(a, k, g - lo, u);
    }
    return ramp(a, i, x, u) / sum;
}

/* The blending mask [1, 1, tile_y*u, tile_x*u] of tile (ty, tx), on backend be. */
static lm_status make_mask(const axis *ay, const axis *ax, int ty, int tx, int u, lm_backend *be,
                           lm_tensor **out, lm_error *err)
{
    int64_t ph = ay->tile * u, pw = ax->tile * u, shape[4] = { 1, 1, ph, pw };
    lm_tensor *m = NULL;
    float *wx = lm_malloc((size_t)pw * sizeof(float));
    lm_status st = wx ? lm_tensor_new(&m, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err)
                      : lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a tile mask");
    if (st == LM_OK) {
        float *p = lm_tensor_data(m);
        for (int64_t x = 0; x < pw; x++)
            wx[x] = weight(ax, tx, x, u);
        for (int64_t y = 0; y < ph; y++) {
            float wy = weight(ay, ty, y, u);
            for (int64_t x = 0; x < pw; x++)
                p[y * pw + x] = wy * wx[x];
        }
    }
    lm_free(wx);
    if (st == LM_OK)
        st = lm_tensor_move(&m, be, err);
    *out = m;
    return st;
}

/* dst[.., y0:, x0:] += tile * mask. */
static lm_status blend(lm_vae__run *r, lm_tensor *dst, const lm_tensor *tile, const lm_tensor *mask,
                       int64_t y0, int64_t x0, lm_error *err)
{
    lm_tensor *rows = NULL, *win = NULL, *wt = NULL, *sum = NULL;
    lm_status st = lm_tensor_view_slice(&rows, dst, 2, y0, y0 + tile->shape[2], err);
    if (st == LM_OK)
        st = lm_tensor_view_slice(&win, rows, 3, x0, x0 + tile->shape[3], err); // [B, C, th, tw]
    if (st == LM_OK)
        st = lm_mul(&wt, tile, mask, err); // [B, C, th, tw]
    if (st == LM_OK)
        st = lm_add(&sum, win, wt, err); // [B, C, th, tw]
    if (st == LM_OK)
        st = lm_tensor_copy(win, sum, err);
    lm_vae__track(r, wt);
    lm_tensor *all[4] = { rows, win, wt, sum };
    for (int i = 0; i < 4; i++)
        lm_tensor_free(all[i]);
    return st;
}

/* t[.., y0:y1, x0:x1] as a view. */
static lm_status window(const lm_tensor *t, int64_t y0, int64_t y1, int64_t x0, int64_t x1,
                        lm_tensor **out, lm_error *err)
{
    lm_tensor *rows = NULL;
    lm_status st = lm_tensor_view_slice(&rows, t, 2, y0, y1, err);
    if (st == LM_OK)
        st = lm_tensor_view_slice(out, rows, 3, x0, x1, err);
    lm_tensor_free(rows);
    return st;
}

/* Tile and overlap in latent pixels, with ComfyUI's rule that the overlap is at most a
 * quarter of the tile. */
static lm_status tile_sizes(const lm_vae_config *cfg, const lm_vae_tile_opts *opts, int64_t *tile,
                            int64_t *ov, lm_error *err)
{
    lm_vae_tile_opts o = opts ? *opts : LM_VAE_TILE_OPTS_DEFAULT;
    if (o.tile_size < 2 * cfg->factor || o.overlap < 0)
        return lm_errorf(err, LM_ERANGE, "value_out_of_range",
                         "VAE tiles: tile_size %d must be >= %d and overlap %d >= 0", o.tile_size,
                         2 * cfg->factor, o.overlap);
    if (o.tile_size < 4 * o.overlap)
        o.overlap = o.tile_size / 4;
    *tile = o.tile_size / cfg->factor;
    *ov = o.overlap / cfg->factor;
    return LM_OK;
}

typedef struct {
    axis ay, ax;
    lm_tensor *acc; /* the blended result */
} tiling;

static lm_status decode_tile(const lm_vae *vae, lm_vae__run *r, tiling *tl, const lm_tensor *raw,
                             int ty, int tx, lm_error *err)
{
    int f = lm_vae_config_of(vae)->factor;
    int64_t y0 = axis_start(&tl->ay, ty), x0 = axis_start(&tl->ax, tx);
    lm_tensor *in = NULL, *img = NULL, *mask = NULL;
    lm_status st = window(raw, y0, y0 + tl->ay.tile, x0, x0 + tl->ax.tile, &in, err);
    if (st == LM_OK)
        st = lm_vae__decoder(vae, r, in, &img, err); // [B, 3, fth, ftw]
    if (st == LM_OK)
        st = make_mask(&tl->ay, &tl->ax, ty, tx, f, lm_vae_backend(vae), &mask, err);
    if (st == LM_OK)
        st = blend(r, tl->acc, img, mask, y0 * f, x0 * f, err);
    lm_tensor_free(mask);
    lm_tensor_free(img);
    lm_tensor_free(in);
    return st;
}

/* Runs fn on every tile, row by row, keeping the run's tile index. */
typedef lm_status (*tile_fn)(const lm_vae *vae, lm_vae__run *r, tiling *tl, const lm_tensor *src,
                             int ty, int tx, lm_error *err);

static lm_status each_tile(const lm_vae *vae, lm_vae__run *r, tiling *tl, const lm_tensor *src,
                           tile_fn fn, lm_error *err)
{
    lm_status st = LM_OK;
    for (int ty = 0; ty < tl->ay.n && st == LM_OK; ty++) {
        for (int tx = 0; tx < tl->ax.n && st == LM_OK; tx++) {
            r->tile = ty * tl->ax.n + tx;
            st = fn(vae, r, tl, src, ty, tx, err);
        }
    }
    return st;
}

lm_status lm_vae_decode_tiled(const lm_vae *vae, const lm_tensor *latent,
                              const lm_vae_tile_opts *opts, lm_tensor **image_out,
                              lm_vae_callback cb, void *user, lm_error *err)
{
    const lm_vae_config *cfg = lm_vae_config_of(vae);
    int64_t tile = 0, ov = 0;
    *image_out = NULL;
    lm_status st = lm_vae__check_input(latent, cfg->z_channels, 1, "latent", err);
    if (st == LM_OK)
        st = tile_sizes(cfg, opts, &tile, &ov, err);
    if (st != LM_OK)
        return st;
    tiling tl = { .ay = plan_axis(latent->shape[2], tile, ov),
                  .ax = plan_axis(latent->shape[3], tile, ov) };
    if (tl.ay.n * tl.ax.n == 1)
        return lm_vae_decode(vae, latent, image_out, cb, user, err);
    lm_vae__run r = { .cb = cb, .user = user, .what = "decode", .tiles = tl.ay.n * tl.ax.n };
    r.steps = 1 + r.tiles * lm_vae__decoder_steps(cfg);
    int64_t f = cfg->factor;
    int64_t shape[4] = { latent->shape[0], cfg->image_channels, f * latent->shape[2],
                         f * latent->shape[3] };
    lm_tensor *raw = NULL, *moved = NULL;
    st = lm_tensor_on(&moved, latent, lm_vae_backend(vae), "the VAE latent", err);
    if (st == LM_OK)
        st = lm_vae_process_out(cfg, moved ? moved : latent, &raw, err); // [B, z, h, w]
    lm_tensor_free(moved);
    if (st == LM_OK) /* blended on the VAE's backend, brought back whole at the end */
        st = lm_tensor_zeros(&tl.acc, lm_vae_backend(vae), LM_DTYPE_F32, 4, shape, err);
    if (st == LM_OK)
        st = lm_vae__emit(&r, "latent_raw", raw, err);
    if (st == LM_OK)
        st = each_tile(vae, &r, &tl, raw, decode_tile, err); // [B, 3, fh, fw]
    lm_tensor_free(raw);
    if (st == LM_OK)
        st = lm_tensor_move(&tl.acc, lm_backend_cpu(), err);
    if (st != LM_OK) {
        lm_tensor_free(tl.acc);
        return st;
    }
    *image_out = tl.acc;
    return LM_OK;
}

static lm_status encode_tile(const lm_vae *vae, lm_vae__run *r, tiling *tl, const lm_tensor *image,
                             int ty, int tx, lm_error *err)
{
    int64_t f = lm_vae_config_of(vae)->factor;
    int64_t y0 = axis_start(&tl->ay, ty), x0 = axis_start(&tl->ax, tx);
    int64_t y1 = y0 + tl->ay.tile, x1 = x0 + tl->ax.tile;
    /* The last tile takes the pixels that do not fill a latent pixel, as the whole image
     * would: the encoder rounds sizes down. */
    int64_t py1 = y1 == tl->ay.total ? image->shape[2] : f * y1;
    int64_t px1 = x1 == tl->ax.total ? image->shape[3] : f * x1;
    lm_tensor *in = NULL, *mom = NULL, *mask = NULL;
    lm_status st = window(image, f * y0, py1, f * x0, px1, &in, err); // [B, 3, ., .]
    if (st == LM_OK)
        st = lm_vae__encoder(vae, r, in, &mom, err); // [B, 2z, th, tw]
    if (st == LM_OK)
        st = make_mask(&tl->ay, &tl->ax, ty, tx, 1, lm_vae_backend(vae), &mask, err);
    if (st == LM_OK)
        st = blend(r, tl->acc, mom, mask, y0, x0, err);
    lm_tensor_free(mask);
    lm_tensor_free(mom);
    lm_tensor_free(in);
    return st;
}

lm_status lm_vae_encode_tiled(const lm_vae *vae, const lm_tensor *image,
                              const lm_vae_tile_opts *opts, lm_rng *rng, lm_tensor **mean_out,
                              lm_tensor **sample_out, lm_vae_callback cb, void *user, lm_error *err)
{
    const lm_vae_config *cfg = lm_vae_config_of(vae);
    int64_t tile = 0, ov = 0, f = cfg->factor;
    *mean_out = NULL;
    lm_status st = lm_vae__check_input(image, cfg->image_channels, (int)f, "image", err);
    if (st == LM_OK)
        st = tile_sizes(cfg, opts, &tile, &ov, err);
    if (st != LM_OK)
        return st;
    tiling tl = { .ay = plan_axis(image->shape[2] / f, tile, ov),
                  .ax = plan_axis(image->shape[3] / f, tile, ov) };
    if (tl.ay.n * tl.ax.n == 1)
        return lm_vae_encode(vae, image, rng, mean_out, sample_out, cb, user, err);
    if (sample_out)
        *sample_out = NULL;
    if (rng && !sample_out)
        return lm_errorf(err, LM_EINVAL, "bad_vae_input",
                         "lm_vae_encode_tiled: a generator was given but no place for the sample");
    lm_vae__run r = { .cb = cb, .user = user, .what = "encode", .tiles = tl.ay.n * tl.ax.n };
    r.steps = r.tiles * lm_vae__encoder_steps(cfg) + (rng ? 4 : 3);
    int64_t shape[4] = { image->shape[0], 2 * cfg->z_channels, tl.ay.total, tl.ax.total };
    lm_tensor *moved = NULL;
    st = lm_tensor_on(&moved, image, lm_vae_backend(vae), "the VAE image", err);
    if (st == LM_OK)
        st = lm_tensor_zeros(&tl.acc, lm_vae_backend(vae), LM_DTYPE_F32, 4, shape, err);
    if (st == LM_OK)
        st = each_tile(vae, &r, &tl, moved ? moved : image, encode_tile, err); // [B, 2z, h, w]
    if (st == LM_OK)
        st = lm_vae__finish_encode(vae, &r, tl.acc, rng, mean_out, sample_out, err);
    lm_tensor_free(tl.acc);
    lm_tensor_free(moved);
    return st == LM_OK ? lm_vae__encoded_to_host(mean_out, sample_out, err) : st;
}
