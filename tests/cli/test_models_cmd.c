/* tests/cli/test_models_cmd.c — `loom models`: a models directory of the tiny checkpoints of
 * ../shared/golden (all-in-one, without encoders, the split CLIP-L/CLIP-G/T5 and VAE files),
 * a damaged file, a file that is not a checkpoint, and header-only CLIP files of the released
 * widths, listed as text and as JSON; the missing directory, the FOLDER filter, and that
 * describing a file loads nothing. */
#include "core/base/str.h"
#include "nodes/sd3/models.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SD3M_ALL   "sd3_medium_incl_clips_t5xxlfp8.safetensors"
#define SD3M_NOENC "sd3_medium.safetensors"
#define SD35M_ALL  "sd3.5_medium.safetensors"

#define SD3M_MMDIT  "MMDiT (SD3 Medium: depth 2, width 128)"
#define SD35M_MMDIT "MMDiT-X (SD3.5 Medium: depth 3, width 192, x self-attention in 2 blocks)"

/* ---- the models directory ---- */

static bool link_shared(const char *rel, const char *dir, const char *name)
{
    const char *src = test_shared(rel);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return src && symlink(src, path) == 0;
}

/* A standalone CLIP file holding only its token embedding [49408, width] (F16): all the
 * header a probe reads. The data is a hole, so a 768-wide one costs no disk. */
static bool write_clip_header(const char *path, int width)
{
    long long bytes = 49408LL * width * 2;
    char header[256];
    int n = snprintf(header, sizeof(header),
                     "{\"text_model.embeddings.token_embedding.weight\": {\"dtype\": \"F16\", "
                     "\"shape\": [49408, %d], \"data_offsets\": [0, %lld]}}",
                     width, bytes);
    while (n % 8 != 0)
        header[n++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((unsigned long long)n >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = fd >= 0 && write(fd, len, 8) == 8 && write(fd, header, (size_t)n) == n &&
              ftruncate(fd, 8 + n + bytes) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* models/ with checkpoints/ (the sd3m all-in-one file, sd3m without encoders, the sd35m
 * all-in-one file, a damaged file, a text file), text_encoders/ (the sd3m split CLIP-L,
 * CLIP-G and T5), clip/ (header-only CLIPs 768 and 1280 wide) and vae/. */
static bool make_models(void)
{
    lm_error err;
    const char *dirs[] = { "models/checkpoints", "models/text_encoders", "models/clip",
                           "models/vae" };
    for (size_t i = 0; i < LM_COUNTOF(dirs); i++)
        if (lm_mkdirs(dirs[i], &err) != LM_OK)
            return false;
    return link_shared("golden/sd3m_tiny.safetensors", "models/checkpoints", SD3M_ALL) &&
           link_shared("golden/split/sd3m/sd3m_tiny_noenc.safetensors", "models/checkpoints",
                       SD3M_NOENC) &&
           link_shared("golden/sd35m_tiny.safetensors", "models/checkpoints", SD35M_ALL) &&
           link_shared("golden/split/sd3m/clip_l.safetensors", "models/text_encoders",
                       "clip_l.safetensors") &&
           link_shared("golden/split/sd3m/clip_g.safetensors", "models/text_encoders",
                       "clip_g.safetensors") &&
           link_shared("golden/split/sd3m/t5xxl_fp8_e4m3fn.safetensors", "models/text_encoders",
                       "t5xxl_fp8_e4m3fn.safetensors") &&
           link_shared("golden/split/sd3m/vae.safetensors", "models/vae", "vae.safetensors") &&
           test_write_file("models/checkpoints/broken.safetensors", "{\"x\"") &&
           test_write_file("models/checkpoints/notes.txt", "not a model\n") &&
           write_clip_header("models/clip/clip_l_full.safetensors", 768) &&
           write_clip_header("models/clip/clip_g_full.safetensors", 1280);
}

/* The output line that lists `name`, copied into line (empty when there is none). */
static const char *row_of(const char *out, const char *name, char *line, size_t size)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "  %s ", name);
    const char *at = out ? strstr(out, needle) : NULL;
    line[0] = '\0';
    if (at) {
        size_t n = strcspn(at, "\n");
        snprintf(line, size, "%.*s", (int)LM_MIN(n, size - 1), at);
    }
    return line;
}

/* ---- text ---- */

void test_cli_models_cmd__text_lists_every_model_with_what_it_holds(void)
{
    REQUIRE(make_models());
    char *out = NULL, line[2048];
    CHECK_INT(cli_loom("models --models models", &out), 0);
    char abs[4096];
    snprintf(abs, sizeof(abs), "models: %s/models\n", test_tmpdir());
    CHECK_CONTAINS(out, abs);
    CHECK_CONTAINS(out, "tokenizers: /");
    CHECK_CONTAINS(out, "checkpoints/\n");
    CHECK_CONTAINS(out, "diffusion_models/\n  (no .safetensors files)\n");
    row_of(out, SD3M_ALL, line, sizeof(line));
    CHECK_CONTAINS(line, "24.9 MB  " SD3M_MMDIT ", VAE, CLIP-L, CLIP-G, T5-XXL (F8_E4M3)");
    CHECK_CONTAINS(row_of(out, SD3M_NOENC, line, sizeof(line)), SD3M_MMDIT ", VAE");
    CHECK(!strstr(line, "CLIP"));
    CHECK_CONTAINS(row_of(out, SD35M_ALL, line, sizeof(line)),
                   SD35M_MMDIT ", VAE, CLIP-L, CLIP-G, T5-XXL");
    CHECK_CONTAINS(row_of(out, "clip_l.safetensors", line, sizeof(line)), "CLIP (width 24)");
    CHECK_CONTAINS(row_of(out, "clip_g.safetensors", line, sizeof(line)), "CLIP (width 40)");
    CHECK_CONTAINS(row_of(out, "clip_l_full.safetensors", line, sizeof(line)), "  CLIP-L");
    CHECK_CONTAINS(row_of(out, "clip_g_full.safetensors", line, sizeof(line)), "  CLIP-G");
    CHECK_CONTAINS(row_of(out, "t5xxl_fp8_e4m3fn.safetensors", line, sizeof(line)),
                   "T5-XXL (F8_E4M3)");
    CHECK_CONTAINS(row_of(out, "vae.safetensors", line, sizeof(line)), "10.6 MB  VAE");
    CHECK_CONTAINS(row_of(out, "broken.safetensors", line, sizeof(line)), "4 B  error: ");
    CHECK_CONTAINS(line, "broken.safetensors: ");
    CHECK(!strstr(out, "notes.txt"));
    /* The clip/ files are listed under text_encoders/, as the loaders offer them. */
    const char *te = out ? strstr(out, "text_encoders/\n") : NULL, *vae = strstr(out, "vae/\n");
    const char *full = out ? strstr(out, "clip_l_full") : NULL;
    CHECK(te && vae && full && te < full && full < vae);
    free(out);
}

/* ---- JSON ---- */

static cJSON *models_json(const char *args)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof(cmd), "models --models models --json %s", args);
    int rc = cli_loom(cmd, &out);
    cJSON *root = out ? cJSON_Parse(out) : NULL;
    if (rc != 0 || !root)
        test__fail(__FILE__, __LINE__, "loom %s: exit %d, output %s", cmd, rc,
                   out ? out : "(null)");
    free(out);
    return root;
}

static const cJSON *find_row(const cJSON *folder, const char *name)
{
    const cJSON *row;
    cJSON_ArrayForEach(row, folder)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(row, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return row;
    }
    test__fail(__FILE__, __LINE__, "no row named %s", name);
    return NULL;
}

/* holds as "A,B,C" */
static const char *holds_of(const cJSON *row, char *buf, size_t size)
{
    const cJSON *h;
    buf[0] = '\0';
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(row, "holds"))
    {
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s", len ? "," : "",
                 cJSON_IsString(h) ? h->valuestring : "?");
    }
    return buf;
}

static const char *str_of(const cJSON *row, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void test_cli_models_cmd__json_names_every_model_and_error(void)
{
    REQUIRE(make_models());
    cJSON *root = models_json("");
    REQUIRE(root);
    char abs[4096], holds[256];
    snprintf(abs, sizeof(abs), "%s/models", test_tmpdir());
    CHECK_STR(str_of(root, "models_dir"), abs);
    CHECK(str_of(root, "tokenizers") != NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "tokenizers_error")));
    const cJSON *folders = cJSON_GetObjectItemCaseSensitive(root, "folders");
    const cJSON *ckpt = cJSON_GetObjectItemCaseSensitive(folders, "checkpoints");
    const cJSON *te = cJSON_GetObjectItemCaseSensitive(folders, "text_encoders");
    CHECK_INT(cJSON_GetArraySize(ckpt), 4); /* not notes.txt */
    CHECK_INT(cJSON_GetArraySize(te), 5);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(folders, "vae")), 1);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(folders, "diffusion_models")), 0);
    const cJSON *all = find_row(ckpt, SD3M_ALL);
    CHECK_STR(holds_of(all, holds, sizeof(holds)), "MMDiT,VAE,CLIP-L,CLIP-G,T5-XXL");
    CHECK_STR(str_of(all, "description"), SD3M_MMDIT ", VAE, CLIP-L, CLIP-G, T5-XXL (F8_E4M3)");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(all, "error")));
    struct stat sb;
    REQUIRE(stat(test_shared("golden/sd3m_tiny.safetensors"), &sb) == 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(all, "bytes")),
               (double)sb.st_size, 0);
    CHECK_STR(holds_of(find_row(ckpt, SD3M_NOENC), holds, sizeof(holds)), "MMDiT,VAE");
    const cJSON *x = find_row(ckpt, SD35M_ALL);
    CHECK_STR(holds_of(x, holds, sizeof(holds)), "MMDiT,VAE,CLIP-L,CLIP-G,T5-XXL");
    CHECK_CONTAINS(str_of(x, "description"), SD35M_MMDIT);
    const cJSON *broken = find_row(ckpt, "broken.safetensors");
    CHECK_STR(holds_of(broken, holds, sizeof(holds)), "");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(broken, "description")));
    CHECK_CONTAINS(str_of(broken, "error"), "broken.safetensors: ");
    CHECK_STR(holds_of(find_row(te, "clip_l.safetensors"), holds, sizeof(holds)), "CLIP");
    CHECK_STR(holds_of(find_row(te, "clip_l_full.safetensors"), holds, sizeof(holds)), "CLIP-L");
    CHECK_STR(holds_of(find_row(te, "clip_g_full.safetensors"), holds, sizeof(holds)), "CLIP-G");
    CHECK_STR(holds_of(find_row(te, "t5xxl_fp8_e4m3fn.safetensors"), holds, sizeof(holds)),
              "T5-XXL");
    cJSON_Delete(root);
}

/* ---- the directory and the folder argument ---- */

void test_cli_models_cmd__missing_directory_says_where_and_exits_4(void)
{
    char *out = NULL, where[4096];
    snprintf(where, sizeof(where), "%s/nowhere", test_tmpdir());
    CHECK_INT(cli_loom("models --models nowhere", &out), 4);
    CHECK_CONTAINS(out, where);
    CHECK_CONTAINS(out, "from --models");
    CHECK_CONTAINS(out, "create it with checkpoints/");
    free(out);
    /* From the configuration file (the environment would beat it): its place is named. */
    REQUIRE(test_write_file("cfg.yaml", "models: gone\n"));
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "env -u LOOM_MODELS '%s' models --config cfg.yaml --json",
             test_loom_bin());
    CHECK_INT(test_run_capture(cmd, &out), 4);
    CHECK_CONTAINS(out, "cfg.yaml:1:");
    free(out);
}

void test_cli_models_cmd__folder_argument_lists_one_folder(void)
{
    REQUIRE(make_models());
    char *out = NULL;
    CHECK_INT(cli_loom("models --models models text_encoders", &out), 0);
    CHECK_CONTAINS(out, "text_encoders/\n");
    CHECK_CONTAINS(out, "clip_g.safetensors");
    CHECK(!strstr(out, "checkpoints/") && !strstr(out, SD3M_ALL) && !strstr(out, "vae/"));
    free(out);
    CHECK_INT(cli_loom("models --models models clip/", &out), 0); /* ComfyUI's other name */
    CHECK_CONTAINS(out, "text_encoders/\n");
    free(out);
    cJSON *root = models_json("vae");
    REQUIRE(root);
    const cJSON *folders = cJSON_GetObjectItemCaseSensitive(root, "folders");
    CHECK_INT(cJSON_GetArraySize(folders), 1);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(folders, "vae")), 1);
    cJSON_Delete(root);
}

void test_cli_models_cmd__unknown_folder_exits_2_with_the_folders(void)
{
    REQUIRE(make_models());
    char *out = NULL;
    CHECK_INT(cli_loom("models --models models loras", &out), 2);
    CHECK_CONTAINS(out, "unknown folder \"loras\"");
    CHECK_CONTAINS(out, "checkpoints, text_encoders, vae or diffusion_models");
    free(out);
}

/* ---- in-process: describing reads headers only ---- */

void test_cli_models_cmd__describe_loads_no_component(void)
{
    const char *path = test_shared("golden/sd35m_tiny.safetensors");
    REQUIRE(path);
    char line[512];
    lm_error err;
    REQUIRE_OK(lm_sd3_models_describe(path, line, sizeof(line), &err), &err);
    CHECK_STR(line, SD35M_MMDIT ", VAE, CLIP-L, CLIP-G, T5-XXL");
    lm_sd3_file_info info;
    REQUIRE_OK(lm_sd3_models_probe(path, &info, &err), &err);
    lm_sd3_models_stats stats;
    lm_sd3_models_get_stats(&stats);
    CHECK_INT(stats.component_loads, 0);
    CHECK_INT(stats.file_opens, 1); /* probe found the file describe opened */
    REQUIRE(test_write_file("broken.safetensors", "{\"x\""));
    CHECK(lm_sd3_models_describe("broken.safetensors", line, sizeof(line), &err) != LM_OK);
    CHECK_CONTAINS(err.msg, "too few for a safetensors file");
}
