/* tests/daemon/test_cmd_tensors.c — `loom tensors` called in-process, stdout and stderr
 * captured into files. Expected listings are checked against the loader's view of other
 * files (split/ checkpoints) and against the JSON output parsed back with cJSON. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/safetensors.h"
#include "daemon/cmd_tensors.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    int rc;
    char *out, *err; /* lm_free(); NULL when the capture could not be read */
} run_result;

/* Runs lm_cmd_tensors on copies of args with stdout/stderr redirected to temp files. */
static run_result run_cmd(int argc, const char *const *args)
{
    run_result r = { -1, NULL, NULL };
    fflush(stdout);
    fflush(stderr);
    int out = open("cmd.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open("cmd.err", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int saved_out = dup(1), saved_err = dup(2);
    if (out < 0 || err < 0 || saved_out < 0 || saved_err < 0)
        return r;
    char *argv[8] = { 0 };
    for (int i = 0; i < argc && i < 7; i++)
        argv[i] = strdup(args[i]);
    dup2(out, 1);
    dup2(err, 2);
    r.rc = lm_cmd_tensors(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(out);
    close(err);
    close(saved_out);
    close(saved_err);
    for (int i = 0; i < argc && i < 7; i++)
        free(argv[i]);
    lm_error e;
    lm_file_read("cmd.out", 64u << 20, &r.out, NULL, &e);
    lm_file_read("cmd.err", 64u << 20, &r.err, NULL, &e);
    return r;
}

static void free_result(run_result *r)
{
    lm_free(r->out);
    lm_free(r->err);
}

/* The tensor count the "by prefix" table gives for group `name`, or -1. */
static long group_count(const char *out, const char *name)
{
    const char *table = strstr(out, "by prefix:\n");
    char pattern[200];
    snprintf(pattern, sizeof(pattern), "\n  %s ", name);
    const char *line = table ? strstr(table, pattern) : NULL;
    long n = -1;
    if (line && sscanf(line + strlen(pattern), " %ld tensors", &n) != 1)
        n = -1;
    return n;
}

static size_t count_in(const char *split)
{
    const char *path = test_shared(split);
    lm_safetensors *st;
    lm_error err;
    if (!path || lm_safetensors_open(&st, path, &err) != LM_OK)
        return 0;
    size_t n = lm_safetensors_count(st);
    lm_safetensors_close(st);
    return n;
}

void test_daemon_cmd_tensors__text_listing(void)
{
    const char *path = test_shared("golden/sd3m_tiny.safetensors");
    REQUIRE(path);
    const char *argv[] = { "tensors", path, NULL };
    run_result r = run_cmd(2, argv);
    REQUIRE(r.out && r.err);
    CHECK_INT(r.rc, 0);
    CHECK_STR(r.err, "");
    CHECK_CONTAINS(r.out, "  format: pt\n");
    CHECK_CONTAINS(r.out, "text_encoders.t5xxl.transformer.shared.weight");
    CHECK_CONTAINS(r.out, "F8_E4M3");
    CHECK_INT(group_count(r.out, "text_encoders.clip_l"),
              count_in("golden/split/sd3m/clip_l.safetensors"));
    CHECK_INT(group_count(r.out, "text_encoders.clip_g"),
              count_in("golden/split/sd3m/clip_g.safetensors"));
    CHECK_INT(group_count(r.out, "first_stage_model"),
              count_in("golden/split/sd3m/vae.safetensors"));
    CHECK_INT(group_count(r.out, "text_encoders.t5xxl"),
              count_in("golden/split/sd3m/t5xxl_fp8_e4m3fn.safetensors"));
    long mmdit = group_count(r.out, "model.diffusion_model");
    size_t noenc = count_in("golden/split/sd3m/sd3m_tiny_noenc.safetensors");
    CHECK_INT(mmdit + group_count(r.out, "first_stage_model"), noenc);
    free_result(&r);
}

void test_daemon_cmd_tensors__json_listing(void)
{
    const char *path = test_shared("golden/split/sd3m/clip_l.safetensors");
    REQUIRE(path);
    const char *argv[] = { "tensors", "--json", path, NULL };
    run_result r = run_cmd(3, argv);
    REQUIRE(r.out);
    CHECK_INT(r.rc, 0);
    cJSON *root = cJSON_Parse(r.out);
    REQUIRE(root);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    cJSON *tensors = cJSON_GetObjectItem(root, "tensors");
    CHECK_INT(cJSON_GetArraySize(tensors), lm_safetensors_count(st));
    int bad = 0;
    for (cJSON *t = tensors ? tensors->child : NULL; t; t = t->next) {
        const lm_safetensors_entry *e =
            lm_safetensors_find(st, cJSON_GetStringValue(cJSON_GetObjectItem(t, "name")));
        cJSON *shape = cJSON_GetObjectItem(t, "shape");
        if (!e || strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(t, "dtype")), "F16") != 0 ||
            cJSON_GetArraySize(shape) != e->ndim ||
            cJSON_GetArrayItem(shape, 0)->valuedouble != (double)e->shape[0])
            bad++;
    }
    CHECK_INT(bad, 0);
    cJSON *meta = cJSON_GetObjectItem(root, "metadata");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(meta, "format")), "pt");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(meta, "num_attention_heads")),
              lm_safetensors_metadata(st, "num_attention_heads"));
    lm_safetensors_close(st);
    cJSON_Delete(root);
    free_result(&r);
}

void test_daemon_cmd_tensors__damaged_file(void)
{
    /* Header says 40 bytes of data, the file has 4. */
    const char *path = test_write_file("cut.safetensors", "");
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    const char header[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0,40]}}";
    unsigned char len[8] = { (unsigned char)(sizeof(header) - 1) };
    fwrite(len, 1, 8, f);
    fwrite(header, 1, sizeof(header) - 1, f);
    fwrite("abcd", 1, 4, f);
    fclose(f);
    const char *argv[] = { "tensors", path, NULL };
    run_result r = run_cmd(2, argv);
    REQUIRE(r.out && r.err);
    CHECK(r.rc != 0);
    CHECK_STR(r.out, "");
    CHECK_CONTAINS(r.err, "cut.safetensors: tensor \"w\": needs bytes up to");
    CHECK(strchr(r.err, '\n') == r.err + strlen(r.err) - 1); /* exactly one line */
    free_result(&r);
}

void test_daemon_cmd_tensors__usage_errors(void)
{
    const char *none[] = { "tensors", NULL };
    run_result r = run_cmd(1, none);
    CHECK_INT(r.rc, 2);
    CHECK_CONTAINS(r.err, "usage: loom tensors");
    free_result(&r);
    const char *bad[] = { "tensors", "--bogus", "x.safetensors", NULL };
    r = run_cmd(3, bad);
    CHECK_INT(r.rc, 2);
    CHECK_CONTAINS(r.err, "--bogus");
    free_result(&r);
    const char *missing[] = { "tensors", "missing.safetensors", NULL };
    r = run_cmd(2, missing);
    CHECK(r.rc != 0);
    CHECK_CONTAINS(r.err, "missing.safetensors: cannot open");
    free_result(&r);
}

void test_daemon_cmd_tensors__sharded_index(void)
{
    const char *shard = test_shared("golden/split/sd3m/clip_l.safetensors");
    REQUIRE(shard);
    char link[600];
    snprintf(link, sizeof(link), "%s/clip_l.safetensors", test_tmpdir());
    REQUIRE(symlink(shard, link) == 0);
    const char *index =
        test_write_file("clip.safetensors.index.json",
                        "{\"metadata\":{\"total_size\":1},\"weight_map\":{"
                        "\"text_projection.weight\":\"clip_l.safetensors\","
                        "\"text_model.final_layer_norm.bias\":\"clip_l.safetensors\"}}");
    const char *argv[] = { "tensors", "--json", index, NULL };
    run_result r = run_cmd(3, argv);
    REQUIRE(r.out);
    CHECK_INT(r.rc, 0);
    cJSON *root = cJSON_Parse(r.out);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "tensors")), 2);
    CHECK_STR(cJSON_GetStringValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size")),
              "1");
    cJSON_Delete(root);
    free_result(&r);
}
