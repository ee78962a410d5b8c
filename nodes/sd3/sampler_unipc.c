/* nodes/sd3/sampler_unipc.c — UniPC (Zhao et al. 2023, "UniPC: A Unified
 * Predictor-Corrector Framework"), multistep, data prediction, as ComfyUI runs it: order
 * min(3, steps-1), lower orders on the first steps (warm-up) and on the last ones
 * (lower_order_final), the corrector UniC after every predictor UniP-p except the last, and
 * a schedule ending at 0 ended at sigma 0.001 instead. B(h) = h (`uni_pc`, bh1) or
 * e^h - 1 (`uni_pc_bh2`).
 *
 * It is the paper's algorithm for x = x0 + sigma*noise with lambda = -log sigma (ComfyUI
 * feeds UniPC the model's sigmas through a variance-exploding conversion; the VP scaling it
 * applies cancels out of every update, so the state stays in the sampler's space). The
 * model's prediction at the corrected point is never needed: the prediction at the
 * predictor's point serves the next step, so there is one evaluation per step.
 *
 * Each update is a linear combination of the state and the kept predictions; its weights
 * are computed in double, then applied with float32 ops. */
#include "core/tensor/ops.h"
#include "nodes/sd3/sampler_impl.h"

#include <math.h>

#define UNIPC_ORDER   3
#define UNIPC_SIG_END 0.001f /* ComfyUI's stand-in for a final sigma of 0 */

typedef struct {
    lm_tensor *m[UNIPC_ORDER]; /* predictions, m[0] the newest */
    double sigma[UNIPC_ORDER]; /* where they were made */
    int n;
} unipc_hist;

static void hist_push(unipc_hist *h, lm_tensor *m, double sigma)
{
    if (h->n == UNIPC_ORDER)
        lm_tensor_free(h->m[UNIPC_ORDER - 1]);
    for (int k = UNIPC_ORDER - 1; k > 0; k--) {
        h->m[k] = h->m[k - 1];
        h->sigma[k] = h->sigma[k - 1];
    }
    h->m[0] = m;
    h->sigma[0] = sigma;
    h->n = LM_MIN(h->n + 1, UNIPC_ORDER);
}

/* Solves a (n <= 3) by Gaussian elimination with partial pivoting; b becomes the solution. */
static void solve_small(int n, double a[UNIPC_ORDER][UNIPC_ORDER], double *b)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        for (int k = 0; k < n; k++) {
            double t = a[c][k];
            a[c][k] = a[p][k];
            a[p][k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < n; r++) {
            double f = a[r][c] / a[c][c];
            for (int k = c; k < n; k++)
                a[r][k] -= f * a[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        for (int k = c + 1; k < n; k++)
            b[c] -= a[c][k] * b[k];
        b[c] /= a[c][c];
    }
}

/* The weights of one update of `order` to sigma_t: rks (r_k, then 1), B(h), the
 * predictor's rho_p (order-1 values) and the corrector's rho_c (order values). */
typedef struct {
    double r[UNIPC_ORDER], ratio, phi1, bh;
    double rho_p[UNIPC_ORDER], rho_c[UNIPC_ORDER];
} unipc_weights;

static void unipc_weights_make(unipc_weights *w, const unipc_hist *hist, int order, double sig_t,
                               bool bh2)
{
    double h = log(hist->sigma[0] / sig_t), hh = -h;
    double mat[UNIPC_ORDER][UNIPC_ORDER], sub[UNIPC_ORDER][UNIPC_ORDER], b[UNIPC_ORDER];
    for (int k = 1; k < order; k++)
        w->r[k - 1] = log(hist->sigma[0] / hist->sigma[k]) / h;
    w->r[order - 1] = 1.0;
    w->ratio = sig_t / hist->sigma[0];
    w->phi1 = expm1(hh);
    w->bh = bh2 ? expm1(hh) : hh;
    double phi_k = w->phi1 / hh - 1.0, fact = 1.0;
    for (int i = 1; i <= order; i++) {
        for (int k = 0; k < order; k++)
            mat[i - 1][k] = sub[i - 1][k] = pow(w->r[k], i - 1);
        b[i - 1] = phi_k * fact / w->bh;
        fact *= i + 1;
        phi_k = phi_k / hh - 1.0 / fact;
    }
    for (int k = 0; k < order; k++)
        w->rho_p[k] = w->rho_c[k] = b[k];
    if (order == 2)
        w->rho_p[0] = 0.5;
    else if (order > 2)
        solve_small(order - 1, sub, w->rho_p);
    if (order == 1)
        w->rho_c[0] = 0.5;
    else
        solve_small(order, mat, w->rho_c);
}

/* sum_k coef[k] * t[k] over n terms (n >= 1), float32 ops left to right. */
static lm_status lincomb(lm_tensor **out, int n, const double *coef, const lm_tensor *const *t,
                         lm_error *err)
{
    lm_tensor *acc = NULL, *next = NULL;
    lm_status st = lm_scale(&acc, t[0], (float)coef[0], 0.0f, err);
    for (int k = 1; k < n && st == LM_OK; k++) {
        st = lm_sampler__axpby(&next, 1.0f, acc, (float)coef[k], t[k], err);
        lm_sampler__replace(&acc, next);
        next = NULL;
    }
    if (st != LM_OK) {
        lm_tensor_free(acc);
        acc = NULL;
    }
    *out = acc;
    return st;
}

/* x_t = ratio*x - phi1*m0 - B(h) * (sum_k rho[k] (m_{k+1} - m0)/r[k] + rho_t (m_t - m0)),
 * written as weights on x, m0, m1…, m_t (m_t NULL: the predictor). */
static lm_status unipc_combine(lm_tensor **out, const unipc_weights *w, const unipc_hist *hist,
                               int order, const lm_tensor *x, lm_tensor *m_t, lm_error *err)
{
    const double *rho = m_t ? w->rho_c : w->rho_p;
    double coef[UNIPC_ORDER + 2];
    const lm_tensor *t[UNIPC_ORDER + 2];
    int n = 0;
    coef[n] = w->ratio, t[n++] = x;
    coef[n] = -w->phi1, t[n++] = hist->m[0];
    for (int k = 1; k < order; k++) {
        double c = -w->bh * rho[k - 1] / w->r[k - 1];
        coef[1] -= c;
        coef[n] = c, t[n++] = hist->m[k];
    }
    if (m_t) {
        double c = -w->bh * rho[order - 1];
        coef[1] -= c;
        coef[n] = c, t[n++] = m_t;
    }
    return lincomb(out, n, coef, t, err);
}

/* One step to sigma_t: the predictor, then (use_corrector) the evaluation there, reported as
 * step `eval_step`, and the corrector; the evaluation joins the history. */
static lm_status unipc_update(lm_sampler_run_state *rs, lm_tensor **x, unipc_hist *hist, int order,
                              double sig_t, int eval_step, bool bh2, lm_error *err)
{
    unipc_weights w;
    lm_tensor *pred = NULL, *m_t = NULL, *corr = NULL;
    unipc_weights_make(&w, hist, order, sig_t, bh2);
    lm_status st = unipc_combine(&pred, &w, hist, order, *x, NULL, err);
    if (st != LM_OK || eval_step < 0) {
        if (st == LM_OK)
            lm_sampler__replace(x, pred);
        return st;
    }
    st = lm_sampler__step_denoise(rs, eval_step, pred, &m_t, err);
    if (st == LM_OK)
        st = unipc_combine(&corr, &w, hist, order, *x, m_t, err);
    lm_tensor_free(pred);
    if (st != LM_OK) {
        lm_tensor_free(m_t);
        return st;
    }
    lm_sampler__replace(x, corr);
    hist_push(hist, m_t, sig_t);
    return LM_OK;
}

lm_status lm_sampler__uni_pc(lm_sampler_run_state *rs, lm_tensor **x, bool bh2, lm_error *err)
{
    const float *s = rs->o->sigmas;
    int n = rs->steps, order = LM_MAX(LM_MIN(UNIPC_ORDER, n - 1), 1);
    unipc_hist hist = { .n = 0 };
    lm_tensor *m0 = NULL;
    lm_status st = lm_sampler__step_denoise(rs, 0, *x, &m0, err);
    if (st == LM_OK)
        hist_push(&hist, m0, (double)s[0]);
    for (int step = 1; step <= n && st == LM_OK; step++) {
        int step_order = step < order ? step : LM_MIN(order, n + 1 - step);
        double sig_t = (double)(step == n && s[n] == 0.0f ? UNIPC_SIG_END : s[step]);
        st = unipc_update(rs, x, &hist, step_order, sig_t, step < n ? step : -1, bh2, err);
    }
    for (int k = 0; k < hist.n; k++)
        lm_tensor_free(hist.m[k]);
    return st;
}
