/* tests/nodes/test_model_policy.c — where the model manager puts each model on a device
 * (nodes/sd3/models.h, "Memory policy"), checked on the loopback device with a set size:
 * parts are keyed by the backend asked for, a part that does not fit goes to the CPU, unused
 * parts on the device are unloaded (least recently used first) to make room but held ones
 * never are, and text encoders leave room for a denoiser not loaded yet.
 * Tiny sd3m sizes: MMDiT 2.4 MiB, VAE 10.1, CLIP-L 2.3, CLIP-G 3.9, T5 2.6 (its weights,
 * without the duplicate embedding); tiny sd35m MMDiT 8.5 MiB. */
#include "core/tensor/tensor.h"
#include "nodes/sd3/models.h"
#include "tests/test.h"

#include <stdlib.h>

static void sized_loopback(const char *size, const char *reserve, const char *denoiser)
{
    setenv("LOOM_LOOPBACK_MEMORY", size, 1);
    setenv("LOOM_DEVICE_RESERVE", reserve, 1);
    setenv("LOOM_DENOISER_RESERVE", denoiser, 1);
}

static lm_sd3_part *get(const char *file, lm_sd3_part_kind kind, lm_backend *be)
{
    lm_sd3_part *p = NULL;
    lm_error err;
    const char *path = test_shared(file);
    if (!path)
        return NULL;
    CHECK_OK(lm_sd3_models_acquire(&p, path, kind, be, &err), &err);
    return p;
}

void test_nodes_model_policy__parts_are_keyed_by_backend(void)
{
    lm_backend *lb = lm_backend_loopback(), *cpu = lm_backend_cpu();
    lm_sd3_part *a = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, cpu);
    lm_sd3_part *b = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lb);
    lm_sd3_part *c = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lb);
    REQUIRE(a && b && c);
    CHECK(a != b);
    CHECK(b == c); /* loaded once per backend */
    CHECK(lm_sd3_part_backend(a) == cpu);
    CHECK(lm_sd3_part_backend(b) == lb);
    lm_sd3_models_stats st;
    lm_sd3_models_get_stats(&st);
    CHECK_INT(st.component_loads, 2);
    CHECK_INT(st.device_bytes, lm_vae_device_bytes(lm_sd3_part_vae(b)));
    CHECK(st.device_bytes >= 10000000); /* the VAE's weights, in their stored dtype */
    lm_sd3_part_release(a);
    lm_sd3_part_release(b);
    lm_sd3_part_release(c);
    CHECK_INT(lm_sd3_models_free_unused(), 2);
    lm_sd3_models_get_stats(&st);
    CHECK_INT(st.device_bytes, 0);
    CHECK_INT(st.resident_parts, 0);
}

void test_nodes_model_policy__unused_parts_make_room(void)
{
    sized_loopback("16M", "1M", "0");
    lm_backend *lb = lm_backend_loopback();
    lm_sd3_part *vae = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lb);
    REQUIRE(vae);
    CHECK(lm_sd3_part_backend(vae) == lb);
    lm_sd3_part_release(vae); /* unused now, still loaded */
    lm_sd3_models_stats st;
    lm_sd3_models_get_stats(&st);
    CHECK_INT(st.resident_parts, 1);
    /* 9 MB + 1 MB reserve do not fit beside the VAE's 10.6 MB in 16 MiB: the VAE goes. */
    lm_sd3_part *m = get("golden/sd35m_tiny.safetensors", LM_SD3_PART_MMDIT, lb);
    REQUIRE(m);
    CHECK(lm_sd3_part_backend(m) == lb);
    lm_sd3_models_get_stats(&st);
    CHECK_INT(st.resident_parts, 1);
    CHECK_INT(st.device_bytes, lm_mmdit_device_bytes(lm_sd3_part_mmdit(m)));
    lm_sd3_part_release(m);
}

void test_nodes_model_policy__held_parts_stay_and_the_newcomer_goes_to_the_cpu(void)
{
    sized_loopback("16M", "1M", "0");
    lm_backend *lb = lm_backend_loopback();
    lm_sd3_part *vae = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lb);
    lm_sd3_part *m = get("golden/sd35m_tiny.safetensors", LM_SD3_PART_MMDIT, lb);
    REQUIRE(vae && m);
    CHECK(lm_sd3_part_backend(vae) == lb);
    CHECK(lm_sd3_part_backend(m) == lm_backend_cpu()); /* did not fit; the VAE is in use */
    CHECK_INT(lm_mmdit_device_bytes(lm_sd3_part_mmdit(m)), 0);
    /* Asked again for the loopback, the same (CPU) part is handed out. */
    lm_sd3_part *again = get("golden/sd35m_tiny.safetensors", LM_SD3_PART_MMDIT, lb);
    CHECK(again == m);
    lm_sd3_part_release(again);
    lm_sd3_part_release(m);
    lm_sd3_part_release(vae);
}

void test_nodes_model_policy__text_encoders_leave_room_for_the_denoiser(void)
{
    sized_loopback("40M", "1M", "25M");
    lm_backend *lb = lm_backend_loopback();
    /* No MMDiT on the device yet: CLIP-L (2.3 MiB) + 1 + 25 MiB fit in 40 MiB, and so does
     * the VAE (10.1 + 1); T5 then does not (2.6 + 26 > 40 - 12.4), so it stays on the CPU. */
    lm_sd3_part *l = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_CLIP_L, lb);
    lm_sd3_part *v = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lb);
    lm_sd3_part *t5 = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_T5, lb);
    REQUIRE(l && v && t5);
    CHECK(lm_sd3_part_backend(l) == lb);
    CHECK(lm_sd3_part_backend(v) == lb);
    CHECK(lm_sd3_part_backend(t5) == lm_backend_cpu());
    /* With the MMDiT on the device the extra room is no longer kept: CLIP-G goes there. */
    lm_sd3_part *m = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_MMDIT, lb);
    lm_sd3_part *g = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_CLIP_G, lb);
    REQUIRE(m && g);
    CHECK(lm_sd3_part_backend(m) == lb);
    CHECK(lm_sd3_part_backend(g) == lb);
    lm_sd3_part *all[] = { l, v, t5, m, g };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_sd3_part_release(all[i]);
}

void test_nodes_model_policy__idle_parts_go_after_their_time(void)
{
    lm_sd3_part *v = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_VAE, lm_backend_loopback());
    lm_sd3_part *m = get("golden/sd3m_tiny.safetensors", LM_SD3_PART_MMDIT, lm_backend_cpu());
    REQUIRE(v && m);
    lm_sd3_part_release(v);
    CHECK_INT(lm_sd3_models_free_idle(3600.0), 0); /* unused, but not for an hour */
    CHECK_INT(lm_sd3_models_free_idle(0.0), 1);    /* the VAE; the MMDiT is held */
    lm_sd3_models_stats st;
    lm_sd3_models_get_stats(&st);
    CHECK_INT(st.resident_parts, 1);
    CHECK_INT(st.device_bytes, 0);
    lm_sd3_part_release(m);
}
